// `kind-tunnel proxy` flags -> a checked, frozen ProxyConfig (pure).

import { InvalidArgumentError } from '../errors.js'
import type { DataplaneOptions } from '../dataplane/listener-manager.js'
import type { UdpOptions } from '../dataplane/udp/plane.js'
import type { BalancePolicy, Endpoint, HostRoute, ListenerSpec, ProxyProtocolVersion, RouteTable, UpstreamSpec } from '../routing/types.js'
import { parseEndpointList, parseHostPort, parseIntOption, parsePoolSize, parseRouteArg, splitProtocol } from './parse.js'

export interface ProxyArgs {
  listen: string[]
  backend?: string | undefined
  route?: string[] | undefined
  proxyProtocol?: string | undefined
  poolSize?: unknown
  connectTimeout?: unknown
  idleTimeout?: unknown
  peekTimeout?: unknown
  drainTimeout?: unknown
  maxConnections?: unknown
  maxConnectionsPerListener?: unknown
  policy?: string | undefined
  metrics?: string | undefined
  allowWildcard?: boolean | undefined
  accessLog?: boolean | undefined
  udpIdleTimeout?: unknown
  udpMaxFlows?: unknown
}

export interface ProxyConfig {
  readonly table: RouteTable
  readonly dataplane: Partial<DataplaneOptions>
  /** UDP listeners' idle timeout and flow cap. */
  readonly udp: Partial<UdpOptions>
  readonly metrics: Endpoint | undefined
}

const POLICIES: readonly BalancePolicy[] = ['round-robin', 'least-connections', 'random', 'client-ip-hash']

/** The default connection cap: min(10,000, (fd limit - 64) / 2), two fds per proxied connection. */
export function defaultMaxConnections (fdLimit: number | undefined): number {
  if (fdLimit === undefined || !Number.isFinite(fdLimit)) return 10_000
  return Math.max(1, Math.min(10_000, Math.floor((fdLimit - 64) / 2)))
}

export function buildProxyConfig (a: ProxyArgs, fdLimit?: number): ProxyConfig {
  if (a.listen.length === 0) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', '--listen: at least one HOST:PORT is required')
  const allowWildcard = a.allowWildcard === true
  const listens = a.listen.flatMap((l) => l.split(',')).map((l) => {
    const { address, protocol } = splitProtocol(l)
    return { ...parseHostPort(address, { what: '--listen', allowWildcard, allowPortZero: true }), protocol }
  })
  const anyUdp = listens.some((l) => l.protocol === 'udp')

  let proxyProtocol: ProxyProtocolVersion | undefined
  if (a.proxyProtocol !== undefined) {
    if (a.proxyProtocol !== 'v1' && a.proxyProtocol !== 'v2') throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `--proxy-protocol: ${JSON.stringify(a.proxyProtocol)} is not v1 or v2`)
    proxyProtocol = a.proxyProtocol
  }
  let policy: BalancePolicy | undefined
  if (a.policy !== undefined) {
    if (!(POLICIES as readonly string[]).includes(a.policy)) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `--policy: ${JSON.stringify(a.policy)} is not one of ${POLICIES.join(', ')}`)
    policy = a.policy as BalancePolicy
  }
  const poolSize = a.poolSize === undefined ? undefined : parsePoolSize(a.poolSize, 1000)

  // --pool-size goes to the data plane's default (dataplane.poolSize below);
  // `auto` is resolved per upstream there (pool.ts effectivePoolSize).
  const upstream = (id: string, endpoints: Endpoint[], pp: ProxyProtocolVersion | undefined): UpstreamSpec => {
    return {
      id,
      endpoints,
      ...(policy === undefined ? {} : { policy }),
      ...(pp === undefined ? {} : { proxyProtocol: pp }),
    }
  }

  const def = a.backend === undefined ? undefined : upstream('default', parseEndpointList(a.backend, '--backend'), proxyProtocol)
  const routes: HostRoute[] = []
  const seenNames = new Set<string>()
  for (const raw of a.route ?? []) {
    // Per-route PROXY protocol: `NAME=HOST:PORT;proxy-protocol=v2`.
    const [main, ...opts] = raw.split(';')
    let pp = proxyProtocol
    for (const o of opts) {
      const m = /^proxy-protocol=(v1|v2|none)$/.exec(o.trim())
      if (m === null) throw new InvalidArgumentError('KT_ERR_INVALID_ROUTE', `--route: unknown option ${JSON.stringify(o)} (expected proxy-protocol=v1|v2|none)`)
      pp = m[1] === 'none' ? undefined : m[1] as ProxyProtocolVersion
    }
    const r = parseRouteArg(main as string)
    for (const n of r.names) {
      if (seenNames.has(n)) throw new InvalidArgumentError('KT_ERR_INVALID_ROUTE', `--route: ${n} is routed twice`)
      seenNames.add(n)
    }
    routes.push({ names: r.names, upstream: upstream(`route:${r.names.join('|')}`, r.endpoints, pp) })
  }
  if (anyUdp) checkUdpArgs(a, def !== undefined)
  if (def === undefined && routes.length === 0) {
    throw new InvalidArgumentError('KT_ERR_INVALID_ARG', 'nothing to proxy to: give --backend HOST:PORT and/or --route NAME=HOST:PORT')
  }

  const maxConnections = a.maxConnections === undefined ? defaultMaxConnections(fdLimit) : parseIntOption(a.maxConnections, '--max-connections', 1)
  const perListener = a.maxConnectionsPerListener === undefined ? maxConnections : parseIntOption(a.maxConnectionsPerListener, '--max-connections-per-listener', 1)
  const listeners: ListenerSpec[] = listens.map((e) => e.protocol === 'udp'
    // A UDP listener's backends are the --backend ones under their own upstream id (own balancing state and metrics).
    ? { host: e.host, port: e.port, protocol: 'udp' as const, routes: [], ...(def === undefined ? {} : { default: { ...def, id: 'default/udp' } }), maxConnections: perListener }
    : {
        host: e.host,
        port: e.port,
        routes,
        ...(def === undefined ? {} : { default: def }),
        maxConnections: perListener,
      })

  const dataplane: Partial<DataplaneOptions> = { maxConnections, maxConnectionsPerListener: perListener }
  if (a.connectTimeout !== undefined) dataplane.connectTimeoutMs = parseIntOption(a.connectTimeout, '--connect-timeout', 1, 600_000)
  if (a.idleTimeout !== undefined) dataplane.idleTimeoutMs = parseIntOption(a.idleTimeout, '--idle-timeout', 0)
  if (a.peekTimeout !== undefined) dataplane.peekTimeoutMs = parseIntOption(a.peekTimeout, '--peek-timeout', 1, 600_000)
  if (a.drainTimeout !== undefined) dataplane.drainTimeoutMs = parseIntOption(a.drainTimeout, '--drain-timeout', 0, 3_600_000)
  if (poolSize !== undefined) dataplane.poolSize = poolSize
  if (policy !== undefined) dataplane.policy = policy
  if (a.accessLog !== undefined) dataplane.accessLog = a.accessLog

  const udp: Partial<UdpOptions> = {}
  if (a.udpIdleTimeout !== undefined) udp.idleTimeoutMs = parseIntOption(a.udpIdleTimeout, '--udp-idle-timeout', 0, 86_400_000)
  udp.maxFlowsPerListener = a.udpMaxFlows === undefined ? perListener : parseIntOption(a.udpMaxFlows, '--udp-max-flows', 1)

  const metrics = a.metrics === undefined ? undefined : parseHostPort(a.metrics, { what: '--metrics', allowWildcard, allowPortZero: true })
  return Object.freeze({ table: Object.freeze({ version: 1, listeners }), dataplane: Object.freeze(dataplane), udp: Object.freeze(udp), metrics })
}

/** What a UDP listener cannot take: hostname routes (a datagram has no SNI or Host) and a PROXY header. */
function checkUdpArgs (a: ProxyArgs, hasBackend: boolean): void {
  if ((a.route ?? []).length > 0) throw new InvalidArgumentError('KT_ERR_INVALID_ROUTE', '--route: a UDP listener has no hostnames to route by; use --backend (and a separate proxy for routed TCP listeners)')
  if (a.proxyProtocol !== undefined) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', '--proxy-protocol: not supported on UDP listeners')
  if (!hasBackend) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', 'a UDP listener needs --backend HOST:PORT[,HOST:PORT...]')
}
