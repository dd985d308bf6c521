// `up` flags → a checked, frozen UpConfig. Pure apart from nothing: no I/O.

import { homedir } from 'node:os'
import { join } from 'node:path'
import { InvalidArgumentError } from '../errors.js'
import { parseHostPort, parseIntOption, parsePoolSize } from '../config/parse.js'
import { defaultMaxConnections } from '../config/proxy.js'
import type { DataplaneOptions } from '../dataplane/listener-manager.js'
import { canonicalIp, parseCidr, parseIp } from '../routing/cidr.js'
import { DEFAULT_IP_POOL, type AddressingMode } from '../routing/compute.js'
import type { Endpoint } from '../routing/types.js'

export type ModeOption = 'auto' | 'direct' | 'relay' | 'sidecar'

export interface UpConfig {
  /** Serve only this cluster (`--cluster`); also the cluster name for a `--kubeconfig`. */
  readonly cluster?: string
  readonly mode: ModeOption
  readonly address: AddressingMode
  readonly kubeconfigPath?: string
  /** The demo's in-memory kubeconfig (its API server lives and dies with the process). */
  readonly kubeconfigText?: string
  /** `--ip-pool`; undefined means DEFAULT_IP_POOL, or the top of the subnet in sidecar mode. */
  readonly ipPool?: string
  readonly httpPort: number
  readonly httpsPort: number
  /** Address of the shared hostname listeners (default 127.0.0.1; the container's address in sidecar mode). */
  readonly listenHost?: string
  /** Sidecar: the interface LB IPs go on (default: eth0 / the first non-internal one). */
  readonly device?: string
  readonly metrics?: Endpoint
  readonly stateDir: string
  /** Base image of the relay (offline machines build one: docker/build-base.sh). */
  readonly relayBase?: string
  /** How the host reaches the relay: streams over long-lived connections (mux), a connection per client (pool), or auto. */
  readonly relayTransport?: 'auto' | 'mux' | 'pool'
  /** Use Docker for discovery (default true); `--no-docker` with `--kubeconfig` never touches it. */
  readonly docker: boolean
  readonly dataplane: Partial<DataplaneOptions>
  readonly drainMs: number
  /** How long to wait for every controller's first sync before showing the table anyway. */
  readonly syncTimeoutMs: number
}

export interface UpArgs {
  cluster?: string | undefined
  mode?: string | undefined
  address?: string | undefined
  kubeconfig?: string | undefined
  ipPool?: string | undefined
  httpPort?: unknown
  httpsPort?: unknown
  listenHost?: string | undefined
  interface?: string | undefined
  metrics?: string | undefined
  stateDir: string
  relayBase?: string | undefined
  relayTransport?: string | undefined
  docker?: boolean | undefined
  drainTimeout?: unknown
  syncTimeout?: unknown
  poolSize?: unknown
  accessLog?: boolean | undefined
}

const MODES: readonly ModeOption[] = ['auto', 'direct', 'relay', 'sidecar']
const ADDRESSES: readonly AddressingMode[] = ['ip', 'hostname', 'both']

/** kind names clusters with DNS-label-ish names; keep the same rule (it ends up in container names). */
/**
 * A leading `~` or `~/` is the home directory: `--kubeconfig=~/.kube/x`
 * reaches us unexpanded (shells expand `~` only at the start of a word).
 * `~user` forms are left as they are.
 */
export function expandHome (path: string): string {
  if (path === '~') return homedir()
  if (path.startsWith('~/')) return join(homedir(), path.slice(2))
  return path
}

export function checkClusterName (name: string, what = '--cluster'): string {
  if (!/^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/i.test(name)) {
    throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `${what}: ${JSON.stringify(name)} is not a cluster name (letters, digits, . _ -)`)
  }
  return name
}

function relayTransport (v: string): 'auto' | 'mux' | 'pool' {
  if (v === 'auto' || v === 'mux' || v === 'pool') return v
  throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `--relay-transport: ${JSON.stringify(v)} is not auto, mux or pool`)
}

export function buildUpConfig (a: UpArgs, fdLimit?: number): UpConfig {
  const mode = (a.mode ?? 'auto') as ModeOption
  if (!MODES.includes(mode)) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `--mode: ${JSON.stringify(a.mode)} is not auto, direct, relay or sidecar`)
  const address = (a.address ?? (mode === 'sidecar' ? 'ip' : 'hostname')) as AddressingMode
  if (!ADDRESSES.includes(address)) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `--address: ${JSON.stringify(a.address)} is not ip, hostname or both`)
  const port = (v: unknown, d: number, what: string): number => (v === undefined ? d : parseIntOption(v, what, 1, 65535))
  let ipPool: string | undefined
  if (a.ipPool !== undefined) ipPool = parseCidr(a.ipPool, { strict: true, what: '--ip-pool' }).text
  let listenHost: string | undefined
  if (a.listenHost !== undefined) {
    const c = canonicalIp(a.listenHost)
    const p = parseIp(a.listenHost)
    if (c === null || p === null) throw new InvalidArgumentError('KT_ERR_INVALID_ADDRESS', `--listen-host: ${JSON.stringify(a.listenHost)} is not an IP address`)
    if (p.value === 0n) throw new InvalidArgumentError('KT_ERR_WILDCARD_BIND', `--listen-host: refusing wildcard address ${a.listenHost}`)
    listenHost = c
  }
  let metrics: Endpoint | undefined
  if (a.metrics !== undefined) {
    metrics = parseHostPort(a.metrics, { what: '--metrics', allowPortZero: true })
  }
  const dataplane: Partial<DataplaneOptions> = {
    maxConnections: defaultMaxConnections(fdLimit),
    maxConnectionsPerListener: defaultMaxConnections(fdLimit),
    ...(a.poolSize !== undefined ? { poolSize: parsePoolSize(a.poolSize, 1024) } : {}),
    ...(a.accessLog !== undefined ? { accessLog: a.accessLog } : {}),
  }
  return Object.freeze({
    ...(a.cluster !== undefined ? { cluster: checkClusterName(a.cluster) } : {}),
    mode,
    address,
    ...(a.kubeconfig !== undefined ? { kubeconfigPath: expandHome(a.kubeconfig) } : {}),
    ...(ipPool !== undefined ? { ipPool } : {}),
    httpPort: port(a.httpPort, 8080, '--http-port'),
    httpsPort: port(a.httpsPort, 8443, '--https-port'),
    ...(listenHost !== undefined ? { listenHost } : {}),
    ...(a.interface !== undefined ? { device: a.interface } : {}),
    ...(metrics !== undefined ? { metrics } : {}),
    stateDir: a.stateDir,
    ...(a.relayBase !== undefined ? { relayBase: a.relayBase } : {}),
    ...(a.relayTransport !== undefined ? { relayTransport: relayTransport(a.relayTransport) } : {}),
    docker: a.docker ?? true,
    dataplane: Object.freeze(dataplane),
    drainMs: a.drainTimeout === undefined ? 10_000 : parseIntOption(a.drainTimeout, '--drain-timeout', 0, 3_600_000),
    syncTimeoutMs: a.syncTimeout === undefined ? 30_000 : parseIntOption(a.syncTimeout, '--sync-timeout', 100, 600_000),
  })
}

export { DEFAULT_IP_POOL }
