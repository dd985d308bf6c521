// `kind-tunnel doctor`: gather what is known (state file, the running up,
// Docker's kind clusters, each cluster's API), run every check, one line
// each. Every source and probe is a parameter, so tests point the checks at
// fixtures: a network namespace, a test API server, a hosts file.

import { readFile } from 'node:fs/promises'
import { backendFor, type AddressBackend, type LoopbackAddress } from '../addresses/backends.js'
import { listAliases } from '../addresses/manager.js'
import { systemRunner, type CommandRunner } from '../addresses/runner.js'
import { controlRequest } from '../app/control.js'
import type { DockerAccess } from '../app/docker.js'
import { clusterFromKubeconfig } from '../app/up.js'
import { controlPath, readState, type UpState } from '../app/state.js'
import type { UpStatus } from '../app/status.js'
import { fdLimit as processFdLimit } from '../cli/run.js'
import type { KindCluster } from '../docker/discover.js'
import { errorCode } from '../errors.js'
import { cidrContainsIp, parseCidr, type Cidr } from '../routing/cidr.js'
import { DEFAULT_IP_POOL } from '../routing/compute.js'
import type { Endpoint } from '../routing/types.js'
import {
  checkAliases, checkCoreDns, checkDataplane, checkEndpoints, checkFdLimit, checkHosts, checkPorts, checkRoute, checkState, checkTls,
  endpointTargets, guessKindNet, hostnamesToResolve, readHostsFile, servedKeys, tlsTargetsFromServices, udpLines,
  type CheckLine, type DataPath, type EndpointTarget, type TlsTarget,
} from './checks.js'
import { checkGateways, gatewayHostnamesToResolve } from './gateways.js'
import { defaultHostsFile } from './hosts.js'
// ./kube.js (the Kubernetes client) is loaded only when a cluster is read.
import type { ClusterFacts } from './kube.js'
import { healthCheck, portOwner, tcpConnect, tlsHandshake, tryBind } from './probes.js'

export type { CheckLine } from './checks.js'
export { formatLine } from './checks.js'

export interface DoctorOptions {
  readonly stateDir: string
  readonly platform?: string
  /** Loopback backend whose listing is read (default: this platform's). */
  readonly backend?: AddressBackend
  /** Runs the listing command (tests: inside a network namespace). */
  readonly runner?: CommandRunner
  /** kind-tunnel's pools (default DEFAULT_IP_POOL). */
  readonly ipPools?: readonly string[]
  readonly listenHost?: string
  readonly httpPort?: number
  readonly httpsPort?: number
  /** More ports that must be free. */
  readonly extraPorts?: readonly Endpoint[]
  readonly hostsFile?: string
  readonly fdLimit?: () => Promise<number | undefined>
  /** Undefined: no Docker checks (and no discovery). */
  readonly docker?: DockerAccess
  readonly cluster?: string
  /** A kubeconfig file: read this cluster's API. */
  readonly kubeconfig?: string
  /** Facts given directly (tests); skips reading any API. */
  readonly facts?: readonly ClusterFacts[]
  readonly tlsTargets?: readonly TlsTarget[]
  readonly endpointTargets?: readonly EndpointTarget[]
  /** Per probe (default 2000 ms). */
  readonly timeoutMs?: number
  /** /proc root, for finding who holds a port. */
  readonly proc?: string
  /** The data path this install gets (default: ask the native loader). */
  readonly dataplane?: () => DataPath
}

export interface DoctorReport {
  readonly lines: CheckLine[]
  readonly failed: boolean
}

/** The native loader, imported only when doctor runs. */
async function nativeDataPathFn (): Promise<() => DataPath> {
  return (await import('../dataplane/native/index.js')).nativeDataPath
}

async function runningUp (stateDir: string, state: UpState | undefined): Promise<UpStatus | undefined> {
  try {
    return await controlRequest(state?.controlSocket ?? controlPath(stateDir), 'GET', '/status', 3000) as unknown as UpStatus
  } catch {
    return undefined
  }
}

export async function runDoctor (o: DoctorOptions): Promise<DoctorReport> {
  const platform = o.platform ?? process.platform
  const timeoutMs = o.timeoutMs ?? 2000
  const lines: CheckLine[] = []
  const listenHost = o.listenHost ?? '127.0.0.1'
  const httpPort = o.httpPort ?? 8080
  const httpsPort = o.httpsPort ?? 8443

  // What is running, and what a dead run left.
  let state: UpState | undefined
  try {
    state = await readState(o.stateDir)
  } catch (err) {
    lines.push({ check: 'state', status: 'FAIL', message: (err as Error).message, fix: `inspect, then remove ${o.stateDir}/state.json` })
  }
  const up = await runningUp(o.stateDir, state)
  if (!lines.some((l) => l.check === 'state')) lines.push(...checkState(state, up !== undefined))

  lines.push(...checkFdLimit(await (o.fdLimit ?? processFdLimit)(), platform))
  lines.push(...checkDataplane((o.dataplane ?? await nativeDataPathFn())(), process.env['KT_REQUIRE_NATIVE'] === '1'))

  // Docker's kind clusters.
  let clusters: KindCluster[] = []
  if (o.docker !== undefined) {
    try {
      clusters = (await o.docker.clusters()).filter((c) => o.cluster === undefined || c.name === o.cluster)
      const running = clusters.filter((c) => c.nodes.some((n) => n.state === 'running'))
      lines.push({ check: 'docker', status: 'ok', message: `${running.length} running kind cluster${running.length === 1 ? '' : 's'}${running.length > 0 ? `: ${running.map((c) => c.name).join(', ')}` : ''}` })
    } catch (err) {
      lines.push({ check: 'docker', status: 'warn', message: `cannot list kind clusters: ${(err as Error).message}` })
    }
  } else {
    lines.push({ check: 'docker', status: 'skip', message: 'Docker not consulted (--no-docker)' })
  }

  // Stale aliases: ours (pool, state file) and cloud-provider-kind's (kind networks).
  const pools: Cidr[] = []
  for (const p of [...(o.ipPools ?? [DEFAULT_IP_POOL]), ...(state?.clusters.map((c) => c.ipPool) ?? [])]) {
    try { pools.push(parseCidr(p)) } catch {}
  }
  const kindNets: Array<{ cluster: string, net: Cidr }> = []
  for (const c of clusters) {
    for (const n of c.nodes) {
      const net = n.ipv4 !== undefined ? guessKindNet(n.ipv4) : undefined
      if (net !== undefined && !kindNets.some((k) => k.net.text === net.text)) kindNets.push({ cluster: c.name, net })
    }
  }
  const backend = o.backend ?? (platform === 'linux' || platform === 'darwin' || platform === 'win32' ? backendFor(platform) : undefined)
  if (backend === undefined) {
    lines.push({ check: 'stale-alias', status: 'skip', message: `no loopback backend for ${platform}` })
  } else {
    let aliases: LoopbackAddress[] | Error
    try {
      aliases = await listAliases(backend, o.runner ?? systemRunner())
    } catch (err) {
      aliases = err as Error
    }
    const inUse = new Set((up?.listeners ?? []).map((l) => l.key.replace(/^\[?([^\]]*?)\]?:\d+$/, '$1')))
    // A state file's addresses are ours only while its up runs; stale ones are reported.
    lines.push(...checkAliases({ aliases, backend, pools, kindNets, inUse }))
  }

  // Facts from each cluster's API.
  let facts: ClusterFacts[] = [...(o.facts ?? [])]
  if (o.facts === undefined) {
    const sources: Array<{ cluster: string, kubeconfig: string }> = []
    if (o.kubeconfig !== undefined) {
      try {
        const text = await readFile(o.kubeconfig, 'utf8')
        sources.push({ cluster: o.cluster ?? clusterFromKubeconfig(text) ?? 'default', kubeconfig: text })
      } catch (err) {
        lines.push({ check: 'kubeconfig', status: 'FAIL', message: `cannot read ${o.kubeconfig} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, fix: 'pass a readable --kubeconfig, e.g. `kind get kubeconfig > kc.yaml`' })
      }
    } else if (o.docker !== undefined) {
      for (const c of clusters.filter((x) => x.nodes.some((n) => n.state === 'running'))) {
        try {
          const kc = await o.docker.kubeconfig(c.name)
          if (kc !== undefined) sources.push({ cluster: c.name, kubeconfig: kc })
        } catch (err) {
          lines.push({ check: 'kubeconfig', status: 'warn', message: `cluster ${c.name}: ${(err as Error).message}` })
        }
      }
    }
    facts = await Promise.all(sources.map(async (s) => {
      try {
        const { readClusterFacts } = await import('./kube.js')
        return await readClusterFacts(s.cluster, s.kubeconfig, Math.max(timeoutMs, 5000))
      } catch (err) {
        const e = { ok: false as const, message: `${errorCode(err)}: ${(err as Error).message}` }
        return { cluster: s.cluster, server: '', services: e, nodes: e, ingresses: e, coreDns: { pods: e, endpoints: e } }
      }
    }))
    for (const f of facts) {
      if (!f.services.ok) lines.push({ check: 'api', status: 'FAIL', message: `cluster ${f.cluster}: cannot list Services (${f.services.message})`, fix: 'check the cluster is running (`kubectl get nodes`) and the kubeconfig' })
    }
  }

  // Ports that must be free (or be ours).
  const ports: Array<{ endpoint: Endpoint, what: string, fix: string }> = [
    { endpoint: { host: listenHost, port: httpPort }, what: 'shared HTTP port', fix: `stop that process, or run \`kind-tunnel up --http-port ${httpPort === 8080 ? 18080 : httpPort + 1}\`` },
    { endpoint: { host: listenHost, port: httpsPort }, what: 'shared TLS port', fix: `stop that process, or run \`kind-tunnel up --https-port ${httpsPort === 8443 ? 18443 : httpsPort + 1}\`` },
    ...(o.extraPorts ?? []).map((e) => ({ endpoint: e, what: 'requested port', fix: 'stop that process, or pick another port' })),
  ]
  for (const f of facts) {
    if (!f.services.ok) continue
    for (const s of f.services.value) {
      for (const ing of s.status?.loadBalancer?.ingress ?? []) {
        const ip = ing.ip
        if (ip === undefined || !pools.some((p) => cidrContainsIp(p, ip))) continue
        for (const p of s.spec?.ports ?? []) {
          if (typeof p.port === 'number' && (p.protocol ?? 'TCP') === 'TCP') ports.push({ endpoint: { host: ip, port: p.port }, what: `Service ${s.metadata?.namespace ?? 'default'}/${s.metadata?.name ?? ''}`, fix: 'stop that process; kind-tunnel binds this address and port for the Service' })
        }
      }
    }
  }
  lines.push(...await checkPorts({
    ports,
    served: servedKeys(up),
    bind: tryBind,
    owner: (port) => platform === 'linux' ? portOwner(port, o.proc) : Promise.resolve(undefined),
  }))

  // Routes to the kind networks.
  const routeMode = new Map<string, 'direct' | 'relay'>()
  if (o.docker !== undefined) {
    for (const c of clusters.filter((x) => x.nodes.some((n) => n.state === 'running'))) {
      try {
        const choice = await o.docker.chooseMode(c)
        routeMode.set(c.name, choice.mode)
        const upMode = up?.clusters.find((x) => x.name === c.name)?.mode
        lines.push(...checkRoute({ cluster: c.name, network: c.network, mode: choice.mode, reason: choice.reason, ...(upMode !== undefined ? { upMode } : {}) }))
      } catch (err) {
        lines.push({ check: 'kind-route', status: 'warn', message: `cluster ${c.name}: cannot probe (${errorCode(err)})` })
      }
    }
  }

  // Per cluster: CoreDNS, NodePort backends.
  for (const f of facts) {
    lines.push(...checkCoreDns(f))
    lines.push(...udpLines(f, undefined))
    if (routeMode.get(f.cluster) === 'relay') {
      lines.push({ check: 'endpoints', status: 'skip', message: `cluster ${f.cluster} is reached through the relay; its NodePorts are not probed from the host` })
      continue
    }
    lines.push(...await checkEndpoints(f.cluster, endpointTargets(f), {
      health: (e, check) => healthCheck(e, check, timeoutMs),
      connect: (e) => tcpConnect(e.host, e.port, timeoutMs),
    }))
  }
  if (o.endpointTargets !== undefined) {
    lines.push(...await checkEndpoints('(given)', o.endpointTargets, {
      health: (e, check) => healthCheck(e, check, timeoutMs),
      connect: (e) => tcpConnect(e.host, e.port, timeoutMs),
    }))
  }

  lines.push(...udpLines(undefined, up))

  // TLS addresses that reset.
  const tlsTargets: TlsTarget[] = [...(o.tlsTargets ?? [])]
  for (const f of facts) if (f.services.ok) tlsTargets.push(...tlsTargetsFromServices(f.services.value, up !== undefined ? { host: listenHost, port: httpsPort } : undefined))
  if (up !== undefined) {
    for (const s of up.services) {
      for (const h of s.hostnames) {
        const m = /^https:\/\/([^/:]+)(?::(\d+))?$/.exec(h)
        if (m !== null && !tlsTargets.some((t) => t.servername === m[1])) tlsTargets.push({ label: `Service ${s.namespace}/${s.name}`, host: up.listenHost, port: Number(m[2] ?? 443), servername: m[1] as string })
      }
    }
  }
  lines.push(...await checkTls(tlsTargets, (t) => tlsHandshake(t.host, t.port, t.servername, timeoutMs)))

  // /etc/hosts for Ingress hostnames.
  const hostsPath = o.hostsFile ?? defaultHostsFile(platform)
  const names = facts.flatMap((f) => hostnamesToResolve(f))
  for (const n of gatewayHostnamesToResolve(up)) if (!names.some((x) => x.name === n.name)) names.push(n)
  const expected = new Set<string>()
  for (const f of facts) if (f.services.ok) for (const s of f.services.value) for (const i of s.status?.loadBalancer?.ingress ?? []) if (i.ip !== undefined) expected.add(i.ip)
  lines.push(...checkHosts({ path: hostsPath, text: names.length > 0 ? await readHostsFile(hostsPath) : '', names, expected, platform }))

  // Gateways: an address, a Service, names that meet a listener.
  lines.push(...checkGateways(up))

  return { lines, failed: lines.some((l) => l.status === 'FAIL') }
}
