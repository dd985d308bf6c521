// The doctor's checks. Each takes plain data and injectable probes, and
// returns lines: `ok`, `warn`, `FAIL` (with the exact fix) or `skip`.
// docs/troubleshooting.md maps every symptom to the check that finds it.

import { readFile } from 'node:fs/promises'
import type { AddressBackend, LoopbackAddress } from '../addresses/backends.js'
import { cleanupCommand } from '../addresses/backends.js'
import { cidrContainsIp, parseCidr, type Cidr } from '../routing/cidr.js'
import { computeRoutes, ANNOTATION_HOSTNAMES, DEFAULT_IP_POOL } from '../routing/compute.js'
import type { KubeService } from '../routing/kube.js'
import { parseHostnameList } from '../routing/names.js'
import { endpointKey, listenerKey, type Endpoint, type HealthCheckSpec } from '../routing/types.js'
import type { UpState } from '../app/state.js'
import type { UpStatus } from '../app/status.js'
import type { ClusterFacts } from './kube.js'
import { isLoopbackIp, parseHosts } from './hosts.js'
import type { BindOutcome, TlsOutcome } from './probes.js'
import type { ProbeOutcome } from '../dataplane/probe.js'

export type CheckStatus = 'ok' | 'warn' | 'FAIL' | 'skip'

export interface CheckLine {
  readonly check: string
  readonly status: CheckStatus
  readonly message: string
  readonly fix?: string
}

const line = (check: string, status: CheckStatus, message: string, fix?: string | undefined): CheckLine => ({ check, status, message, ...(fix !== undefined ? { fix } : {}) })

// ------------------------------------------------------------ fd limit

export function checkFdLimit (limit: number | undefined, platform: string): CheckLine[] {
  if (limit === undefined) return [line('fd-limit', 'skip', 'this platform does not tell the open-file limit')]
  if (limit === Infinity || limit >= 1024) return [line('fd-limit', 'ok', `${limit === Infinity ? 'unlimited' : limit} open files allowed (two per proxied connection)`)]
  const launchd = platform === 'darwin' && limit <= 256
  return [line('fd-limit', 'warn',
    `only ${limit} open files allowed${launchd ? ' (macOS launchd default)' : ''}: about ${Math.max(0, Math.floor((limit - 64) / 2))} connections at once`,
    platform === 'darwin'
      ? 'ulimit -n 65536 in this shell; for every shell: sudo launchctl limit maxfiles 65536 200000'
      : 'ulimit -n 65536 in this shell (or LimitNOFILE= in a systemd unit)')]
}

// ------------------------------------------------------------ data path

/** What the native loader found (nativeDataPath()); `required` is KT_REQUIRE_NATIVE=1. */
export type DataPath = { native: true, how: string } | { native: false, why: string }

export function checkDataplane (dp: DataPath, required: boolean): CheckLine[] {
  if (dp.native) return [line('dataplane', 'ok', `native (${dp.how})`)]
  if (/KT_NATIVE=0/.test(dp.why)) return [line('dataplane', 'warn', `pure JS (${dp.why})`, 'unset KT_NATIVE for the native data path')]
  return [line('dataplane', required ? 'FAIL' : 'warn', `pure JS (${dp.why})`,
    /Linux only/.test(dp.why) ? undefined : 'install a C compiler (cc) and run kind-tunnel again: it builds the addon once from the shipped sources')]
}

// ------------------------------------------------------------ state file

export function checkState (state: UpState | undefined, running: boolean): CheckLine[] {
  if (state === undefined || running) return [line('state', 'ok', running ? `kind-tunnel up is running (pid ${state?.pid ?? '?'})` : 'no kind-tunnel up is running and none left changes behind')]
  const left = state.clusters.map((c) => {
    const parts = [
      c.addresses.length > 0 ? `${c.addresses.length} address${c.addresses.length === 1 ? '' : 'es'}` : '',
      c.relay !== undefined ? `relay ${c.relay.name}` : '',
      c.kubeconfig.kind !== 'ephemeral' ? 'Service statuses' : '',
    ].filter((p) => p !== '')
    return parts.length > 0 ? `${c.name} (${parts.join(', ')})` : ''
  }).filter((x) => x !== '')
  const kept = state.clusters.reduce((n, c) => n + Object.keys(c.allocations ?? {}).length, 0)
  if (left.length === 0 && kept > 0) return [line('state', 'ok', `no kind-tunnel up is running; the LB IPs of ${kept} Service${kept === 1 ? '' : 's'} are kept for the next up (\`kind-tunnel down\` forgets them)`)]
  if (left.length === 0) return [line('state', 'warn', `a kind-tunnel up (pid ${state.pid}) died; its state file is left but names nothing to undo`, 'kind-tunnel down')]
  return [line('state', 'FAIL', `a kind-tunnel up (pid ${state.pid}) died and left changes: ${left.join('; ')}`, 'kind-tunnel down')]
}

// ------------------------------------------------------------ stale aliases

export interface AliasInput {
  /** Aliases on loopback (system addresses excluded), or the error listing them. */
  readonly aliases: readonly LoopbackAddress[] | Error
  readonly backend: AddressBackend
  /** kind-tunnel's pools: the configured one, and the ones in the state file. */
  readonly pools: readonly Cidr[]
  /** Kind networks (as /16 of the node addresses when Docker does not say), with the cluster name. */
  readonly kindNets: ReadonlyArray<{ readonly cluster: string, readonly net: Cidr }>
  /** Addresses a running up serves right now. */
  readonly inUse: ReadonlySet<string>
  readonly device?: string
}

export function checkAliases (i: AliasInput): CheckLine[] {
  if (i.aliases instanceof Error) return [line('stale-alias', 'warn', `cannot list the loopback addresses: ${i.aliases.message}`)]
  const out: CheckLine[] = []
  for (const a of i.aliases) {
    if (i.inUse.has(a.ip)) continue
    const pool = i.pools.find((p) => cidrContainsIp(p, a.ip))
    if (pool !== undefined) {
      out.push(line('stale-alias', 'FAIL', `${a.ip} on ${i.device ?? 'loopback'} is in kind-tunnel's pool ${pool.text} but no kind-tunnel up serves it (left by a crashed run)`, cleanupCommand(a.ip, i.backend)))
      continue
    }
    const kind = i.kindNets.find((k) => cidrContainsIp(k.net, a.ip))
    if (kind !== undefined) {
      out.push(line('stale-alias', 'FAIL', `${a.ip} on ${i.device ?? 'loopback'} is an address of kind network ${kind.net.text} (cluster ${kind.cluster}): cloud-provider-kind aliases its Envoy containers' IPs on loopback and leaves them behind; the host now answers that IP itself instead of reaching the cluster`, cleanupCommand(a.ip, i.backend)))
    }
  }
  if (out.length === 0) out.push(line('stale-alias', 'ok', `no stale loopback alias (${i.aliases.length} alias${i.aliases.length === 1 ? '' : 'es'} checked)`))
  return out
}

// ------------------------------------------------------------ ports

export interface PortInput {
  readonly ports: ReadonlyArray<{ readonly endpoint: Endpoint, readonly what: string, readonly fix: string }>
  /** Listener keys a running up serves. */
  readonly served: ReadonlySet<string>
  readonly bind: (host: string, port: number) => Promise<{ outcome: BindOutcome, code?: string }>
  readonly owner: (port: number) => Promise<{ pid: number, command: string } | undefined>
}

export async function checkPorts (i: PortInput): Promise<CheckLine[]> {
  const out: CheckLine[] = []
  const free: string[] = []
  for (const p of i.ports) {
    const key = listenerKey(p.endpoint)
    if (i.served.has(key)) { free.push(`${key} (kind-tunnel up)`); continue }
    const r = await i.bind(p.endpoint.host, p.endpoint.port)
    if (r.outcome === 'free') { free.push(key); continue }
    if (r.outcome === 'taken') {
      const who = await i.owner(p.endpoint.port).catch(() => undefined)
      out.push(line('ports', 'FAIL', `${key} (${p.what}) is taken${who !== undefined ? ` by pid ${who.pid} (${who.command})` : ' by another process'}`, p.fix))
    } else if (r.outcome === 'denied') {
      out.push(line('ports', 'warn', `${key} (${p.what}) needs privileges to bind (${r.code ?? 'EACCES'})`, 'run up with sudo, or on Linux: sudo sysctl net.ipv4.ip_unprivileged_port_start=80, or use --address hostname'))
    } else if (r.outcome === 'no-address') {
      out.push(line('ports', 'skip', `${key} (${p.what}): the address is not on this host yet (up binds it when it starts)`))
    } else {
      out.push(line('ports', 'warn', `${key} (${p.what}): cannot test (${r.code ?? 'error'})`))
    }
  }
  if (free.length > 0) out.unshift(line('ports', 'ok', `free or ours: ${free.join(', ')}`))
  return out
}

// ------------------------------------------------------------ route to the kind network

export interface RouteInput {
  readonly cluster: string
  readonly network: string
  readonly mode: 'direct' | 'relay'
  readonly reason: string
  /** The mode a running up uses for this cluster, if any. */
  readonly upMode?: string
}

export function checkRoute (i: RouteInput): CheckLine[] {
  if (i.mode === 'direct') return [line('kind-route', 'ok', `cluster ${i.cluster}: ${i.reason}`)]
  if (i.upMode === 'direct') {
    return [line('kind-route', 'FAIL', `cluster ${i.cluster}: the running up uses direct mode, but ${i.reason}`, 'restart with `kind-tunnel up --mode relay` (or --mode auto)')]
  }
  return [line('kind-route', 'warn', `cluster ${i.cluster}: no route from the host to network ${i.network}; up uses the relay container (normal with Docker Desktop, Podman machine, colima, OrbStack)`,
    'nothing to do for kind-tunnel (`up --mode auto` picks the relay); on Linux with Docker Engine, check `ip route get <node IP>`, VPN routes and firewall rules for the bridge')]
}

// ------------------------------------------------------------ CoreDNS

export function checkCoreDns (f: ClusterFacts): CheckLine[] {
  const out: CheckLine[] = []
  const c = f.cluster
  const pods = f.coreDns.pods
  const fix = 'kubectl -n kube-system get pods -l k8s-app=kube-dns -o wide; kubectl -n kube-system logs -l k8s-app=kube-dns; kubectl -n kube-system rollout restart deployment coredns'
  if (!pods.ok) {
    out.push(line('coredns', 'skip', `cluster ${c}: cannot list the CoreDNS pods (${pods.message})`))
  } else if (pods.value.total === 0) {
    out.push(line('coredns', 'warn', `cluster ${c}: no pod labelled k8s-app=kube-dns in kube-system (another DNS add-on?)`))
  } else if (pods.value.ready === 0) {
    out.push(line('coredns', 'FAIL', `cluster ${c}: none of ${pods.value.total} CoreDNS pods is Ready: Service names (and headless Services) do not resolve inside the cluster`, fix))
  } else {
    out.push(line('coredns', 'ok', `cluster ${c}: ${pods.value.ready}/${pods.value.total} CoreDNS pods Ready`))
  }
  const eps = f.coreDns.endpoints
  if (!eps.ok) {
    out.push(line('coredns', 'skip', `cluster ${c}: cannot read the kube-dns Service's endpoints (${eps.message})`))
  } else if (!eps.value.service) {
    out.push(line('coredns', 'skip', `cluster ${c}: no kube-dns Service in kube-system`))
  } else if (eps.value.ready === 0) {
    out.push(line('coredns', 'FAIL', `cluster ${c}: the kube-dns Service has no ready endpoint: pods' DNS queries (and headless Service lookups) go nowhere`, fix))
  } else {
    out.push(line('coredns', 'ok', `cluster ${c}: kube-dns has ${eps.value.ready} ready endpoint${eps.value.ready === 1 ? '' : 's'}`))
  }
  return out
}

// ------------------------------------------------------------ endpoints behind NodePorts

export interface EndpointTarget {
  /** `namespace/name`, for display. */
  readonly service: string
  readonly namespace: string
  readonly name: string
  readonly port: number
  readonly node: string
  readonly endpoint: Endpoint
  readonly health: HealthCheckSpec
}

/** Backends per Service port, as the data plane would use them (computeRoutes over the API's objects). */
export function endpointTargets (f: ClusterFacts): EndpointTarget[] {
  if (!f.services.ok || !f.nodes.ok) return []
  const res = computeRoutes({ cluster: f.cluster, services: f.services.value, nodes: f.nodes.value }, { mode: 'ip', ipPool: DEFAULT_IP_POOL, excludedNodeFallback: true })
  const nodeByIp = new Map<string, string>()
  for (const n of f.nodes.value) for (const a of n.status?.addresses ?? []) if (a.type === 'InternalIP' && a.address !== undefined && n.metadata?.name !== undefined) nodeByIp.set(a.address, n.metadata.name)
  const out: EndpointTarget[] = []
  const seen = new Set<string>()
  for (const plan of res.services) {
    for (const p of plan.ports) {
      if (p.upstream === undefined) continue
      const up = res.table.listeners.flatMap((l) => [l.default, ...l.routes.map((r) => r.upstream)]).find((u) => u?.id === p.upstream)
      // A UDP NodePort has nothing to connect to: udpLines says how it is checked.
      if (up === undefined || p.protocol === 'UDP') continue
      for (const e of up.endpoints) {
        const k = `${plan.key}:${p.port}@${endpointKey(e)}`
        if (seen.has(k)) continue
        seen.add(k)
        out.push({ service: plan.key, namespace: plan.namespace, name: plan.name, port: p.port, node: nodeByIp.get(e.host) ?? e.host, endpoint: e, health: up.health ?? { kind: 'tcp' } })
      }
    }
  }
  return out
}

/**
 * UDP: the Service ports a cluster has, and the UDP listeners a running up
 * serves (flows open). UDP has no connect check; its health is the node's
 * (kube-proxy /healthz, or the healthCheckNodePort under ETP Local).
 */
export function udpLines (f: ClusterFacts | undefined, st: UpStatus | undefined): CheckLine[] {
  const out: CheckLine[] = []
  if (f !== undefined && f.services.ok) {
    const ports = f.services.value.filter((s) => s.spec?.type === 'LoadBalancer').flatMap((s) => (s.spec?.ports ?? []).filter((p) => p.protocol === 'UDP').map((p) => `${s.metadata?.namespace ?? 'default'}/${s.metadata?.name ?? ''} ${String(p.port)}/UDP (NodePort ${String(p.nodePort ?? '-')})`))
    if (ports.length > 0) out.push(line('udp', 'ok', `cluster ${f.cluster}: ${ports.join(', ')}; UDP NodePorts are not connect-probed, their health is the node's (kube-proxy /healthz or healthCheckNodePort)`))
  }
  const ls = (st?.listeners ?? []).filter((l) => l.key.endsWith('/udp'))
  if (ls.length > 0) out.push(line('udp', 'ok', `up serves ${ls.length} UDP listener${ls.length === 1 ? '' : 's'}: ${ls.map((l) => `${l.name} (${l.active} flow${l.active === 1 ? '' : 's'})`).join(', ')}`))
  return out
}

export interface EndpointProbes {
  readonly health: (e: Endpoint, check: HealthCheckSpec) => Promise<{ ok: boolean, cause: string }>
  readonly connect: (e: Endpoint) => Promise<{ outcome: ProbeOutcome, code?: string }>
}

export async function checkEndpoints (cluster: string, targets: readonly EndpointTarget[], probes: EndpointProbes): Promise<CheckLine[]> {
  if (targets.length === 0) return [line('endpoints', 'ok', `cluster ${cluster}: no LoadBalancer Service backend to probe`)]
  const out: CheckLine[] = []
  let good = 0
  const results = await Promise.all(targets.map(async (t) => ({ t, h: await probes.health(t.endpoint, t.health), c: await probes.connect(t.endpoint) })))
  for (const { t, h, c } of results) {
    const where = `Service ${t.service} port ${t.port}: node ${t.node} (${endpointKey(t.endpoint)})`
    if (c.outcome === 'open') { good++; continue }
    if (c.outcome === 'refused' && h.ok) {
      out.push(line('endpoints', 'FAIL', `${where} is healthy, but its NodePort refuses connections: the pods answer on 127.0.0.1 only (or not on the Service's targetPort)`,
        `make the app listen on 0.0.0.0 (e.g. --host 0.0.0.0, server.address=0.0.0.0, HOST=0.0.0.0), and check \`kubectl get endpointslices -l kubernetes.io/service-name=${t.name} -n ${t.namespace}\` against the targetPort`))
    } else if (c.outcome === 'refused') {
      out.push(line('endpoints', 'warn', `${where} refuses connections and its health check fails (${h.cause}): the node has no ready pod for it`, `kubectl get pods -o wide -n ${t.namespace}; kubectl describe svc -n ${t.namespace} ${t.name}`))
    } else {
      out.push(line('endpoints', 'warn', `${where} does not answer from this host (${c.outcome}${c.code !== undefined ? ` ${c.code}` : ''}); see kind-route`))
    }
  }
  if (good > 0) out.unshift(line('endpoints', 'ok', `cluster ${cluster}: ${good} of ${targets.length} NodePort backends accept connections`))
  return out
}

// ------------------------------------------------------------ TLS that resets

export interface TlsTarget {
  readonly label: string
  readonly host: string
  readonly port: number
  readonly servername?: string
}

/** TLS ports: appProtocol https/tls, a port named https/tls(-*), or 443. */
export function isTlsPort (p: { port?: number, name?: string, appProtocol?: string }): boolean {
  const ap = p.appProtocol?.toLowerCase()
  if (ap === 'https' || ap === 'tls') return true
  if (ap !== undefined && ap !== '') return false
  const n = p.name?.toLowerCase() ?? ''
  if (n === 'https' || n === 'tls' || n.startsWith('https-') || n.startsWith('tls-')) return true
  return p.port === 443
}

/** External addresses of TLS ports, from the Services' status (ours or anyone's, e.g. cloud-provider-kind). */
export function tlsTargetsFromServices (services: readonly KubeService[], hostnamePort: { host: string, port: number } | undefined): TlsTarget[] {
  const out: TlsTarget[] = []
  for (const s of services) {
    if (s.spec?.type !== 'LoadBalancer') continue
    const key = `${s.metadata?.namespace ?? 'default'}/${s.metadata?.name ?? ''}`
    const tls = (s.spec.ports ?? []).filter((p) => isTlsPort(p) && (p.protocol ?? 'TCP') === 'TCP')
    if (tls.length === 0) continue
    for (const ing of s.status?.loadBalancer?.ingress ?? []) {
      if (ing.ip !== undefined) {
        for (const p of tls) if (typeof p.port === 'number') out.push({ label: `Service ${key}`, host: ing.ip, port: p.port })
      } else if (ing.hostname !== undefined && hostnamePort !== undefined) {
        out.push({ label: `Service ${key}`, host: hostnamePort.host, port: hostnamePort.port, servername: ing.hostname })
      }
    }
  }
  return out
}

export async function checkTls (targets: readonly TlsTarget[], handshake: (t: TlsTarget) => Promise<{ outcome: TlsOutcome, code?: string, tcp: boolean }>): Promise<CheckLine[]> {
  if (targets.length === 0) return [line('tls', 'ok', 'no TLS LoadBalancer address to test')]
  const out: CheckLine[] = []
  let good = 0
  for (const t of targets) {
    const r = await handshake(t)
    const where = `${t.label} at ${listenerKey(t)}${t.servername !== undefined ? ` (SNI ${t.servername})` : ''}`
    if (r.outcome === 'ok') { good++; continue }
    if (r.outcome === 'reset') {
      out.push(line('tls', 'FAIL', `${where} accepts TCP but resets the TLS handshake (curl: SSL_ERROR_SYSCALL, "unexpected eof")`,
        'the backend does not speak TLS on that port: check the Service\'s targetPort and that the pod terminates TLS; if the address is a stale cloud-provider-kind alias, see stale-alias'))
    } else if (r.outcome === 'refused') {
      out.push(line('tls', 'warn', `${where} refuses connections`, 'is kind-tunnel up running? (`kind-tunnel status`)'))
    } else {
      out.push(line('tls', 'warn', `${where}: ${r.outcome}${r.code !== undefined ? ` (${r.code})` : ''}`))
    }
  }
  if (good > 0) out.unshift(line('tls', 'ok', `${good} of ${targets.length} TLS addresses complete a handshake`))
  return out
}

// ------------------------------------------------------------ /etc/hosts

export interface HostsInput {
  readonly path: string
  /** The hosts file text, or the error reading it. */
  readonly text: string | Error
  /** Hostnames that must resolve to kind-tunnel, with where they come from. */
  readonly names: ReadonlyArray<{ readonly name: string, readonly from: string }>
  /** Addresses that count as "points at kind-tunnel": loopback, the LB IPs. */
  readonly expected: ReadonlySet<string>
  readonly platform: string
}

/** Ingress rule hosts and `kind-tunnel.dev/hostnames`, minus *.localhost and wildcards (they need no entry). */
export function hostnamesToResolve (f: ClusterFacts): Array<{ name: string, from: string }> {
  const out = new Map<string, string>()
  const add = (n: string, from: string): void => {
    const name = n.toLowerCase().replace(/\.$/, '')
    if (name === '' || name.startsWith('*.') || name === 'localhost' || name.endsWith('.localhost')) return
    if (!out.has(name)) out.set(name, from)
  }
  if (f.ingresses.ok) {
    for (const ing of f.ingresses.value) {
      for (const r of ing.spec?.rules ?? []) if (r.host !== undefined) add(r.host, `Ingress ${ing.metadata?.namespace ?? 'default'}/${ing.metadata?.name ?? ''}`)
    }
  }
  if (f.services.ok) {
    for (const s of f.services.value) {
      for (const n of parseHostnameList(s.metadata?.annotations?.[ANNOTATION_HOSTNAMES]).names) add(n, `Service ${s.metadata?.namespace ?? 'default'}/${s.metadata?.name ?? ''}`)
    }
  }
  return [...out].map(([name, from]) => ({ name, from })).sort((a, b) => (a.name < b.name ? -1 : 1))
}

export function checkHosts (i: HostsInput): CheckLine[] {
  if (i.names.length === 0) return [line('hosts-file', 'ok', 'no Ingress hostname needs a hosts entry (*.localhost names resolve by themselves)')]
  if (i.text instanceof Error) return [line('hosts-file', 'warn', `cannot read ${i.path}: ${(i.text as NodeJS.ErrnoException).code ?? i.text.message}`)]
  const hosts = parseHosts(i.text)
  const out: CheckLine[] = []
  const add = (name: string): string => i.platform === 'win32'
    ? `Add-Content -Path "${i.path}" -Value "127.0.0.1 ${name}"   (in an Administrator PowerShell)`
    : `echo "127.0.0.1 ${name}" | sudo tee -a ${i.path}`
  let good = 0
  for (const { name, from } of i.names) {
    const addrs = hosts.get(name)
    if (addrs === undefined || addrs.length === 0) {
      out.push(line('hosts-file', 'warn', `${name} (${from}) has no entry in ${i.path}; it resolves only if DNS knows it (or use ${name.split('.')[0] ?? name}.localhost)`, add(name)))
      continue
    }
    const first = addrs[0] as string
    if (i.expected.has(first) || isLoopbackIp(first)) { good++; continue }
    out.push(line('hosts-file', 'FAIL', `${name} (${from}) points to ${first} in ${i.path}, not to kind-tunnel (127.0.0.1 or its LB IP)`,
      `edit ${i.path}: replace "${first} ${name}" with "127.0.0.1 ${name}"${i.platform === 'win32' ? ' (as Administrator)' : ' (sudo)'}`))
  }
  if (good > 0) out.unshift(line('hosts-file', 'ok', `${good} Ingress hostname${good === 1 ? '' : 's'} point at kind-tunnel in ${i.path}`))
  return out
}

export async function readHostsFile (path: string): Promise<string | Error> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    return err as Error
  }
}

/** The /16 of a node address: Docker's default size for the kind network. */
export function guessKindNet (ip: string): Cidr | undefined {
  const m = /^(\d+)\.(\d+)\./.exec(ip)
  if (m === null) return undefined
  return parseCidr(`${m[1] as string}.${m[2] as string}.0.0/16`)
}

export function formatLine (l: CheckLine): string {
  return `${l.status.padEnd(4)} ${l.check}: ${l.message}${l.fix !== undefined ? ` → fix: ${l.fix}` : ''}`
}

/** The status of the running up, for checks that skip what it serves. */
export function servedKeys (st: UpStatus | undefined): Set<string> {
  return new Set((st?.listeners ?? []).map((l) => l.key))
}
