// kind cluster discovery from the container engine: kind labels every node
// container with io.x-k8s.kind.cluster=<name> and io.x-k8s.kind.role=<role>,
// attaches them to the `kind` network (or KIND_EXPERIMENTAL_DOCKER_NETWORK),
// and publishes the API server's 6443 on the host (on the control-plane node,
// or on the external load balancer of an HA cluster).

import type Docker from 'dockerode'
import { KtError } from '../errors.js'
import { collect, dockerMessage, dockerStatus, type DockerClient, type Env } from './engine.js'
import { firstFile } from './tar.js'

export const KIND_CLUSTER_LABEL = 'io.x-k8s.kind.cluster'
export const KIND_ROLE_LABEL = 'io.x-k8s.kind.role'
export const API_SERVER_PORT = 6443
export const ADMIN_CONF = '/etc/kubernetes/admin.conf'

export type KindRole = 'control-plane' | 'worker' | 'external-load-balancer' | (string & {})

export interface KindNode {
  /** Container name, which kind makes the node name (`<cluster>-control-plane`). */
  readonly name: string
  readonly id: string
  readonly role: KindRole
  /** `running`, `exited`, ... as the engine reports it. */
  readonly state: string
  readonly ipv4?: string
  readonly ipv6?: string
}

export interface KindCluster {
  readonly name: string
  /** The network the nodes' addresses are on. */
  readonly network: string
  /** Sorted by name; includes the external load balancer of HA clusters, whose role says so. */
  readonly nodes: readonly KindNode[]
  /** The API server as published on the host, when it is. */
  readonly apiServer?: { readonly host: string, readonly port: number }
}

export interface DiscoverOptions {
  readonly docker: DockerClient
  /** Default: KIND_EXPERIMENTAL_DOCKER_NETWORK, else `kind`. */
  readonly network?: string
  readonly env?: Env
}

export function kindNetwork (opts: { network?: string, env?: Env }): string {
  const env = opts.env ?? process.env
  const fromEnv = env.KIND_EXPERIMENTAL_DOCKER_NETWORK
  return opts.network ?? (fromEnv !== undefined && fromEnv !== '' ? fromEnv : 'kind')
}

function nameOf (c: Docker.ContainerInfo): string {
  return (c.Names[0] ?? c.Id).replace(/^\//, '')
}

/** Docker Desktop names the API server's address in this label; kind reads it before the published port. */
export const DESKTOP_API_LABEL = `desktop.docker.io/ports/${API_SERVER_PORT}/tcp`

/** `host:port` or `[v6]:port`, as the Docker Desktop label gives it. */
function splitHostPort (v: string): { host: string, port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(v) ?? /^([^:]+):(\d+)$/.exec(v)
  const port = Number(m?.[2])
  if (m === null || !Number.isInteger(port) || port < 1 || port > 65535) return undefined
  return { host: m[1] as string, port }
}

/**
 * The API server's address as kind's GetAPIServerEndpoint finds it: the
 * Docker Desktop label when it is set, else the published HostIp and
 * HostPort, kept as they are. A wildcard publish (`networking.apiServerAddress:
 * 0.0.0.0` or `::`) stays a wildcard: kind's certificate names `localhost`
 * and that address (kubeadm certSANs), never 127.0.0.1, so rewriting it would
 * fail TLS (ERR_TLS_CERT_ALTNAME_INVALID). Connecting to 0.0.0.0 or ::
 * reaches this host, as it does for kubectl with kind's own kubeconfig.
 */
function apiServerOf (c: Docker.ContainerInfo): { host: string, port: number } | undefined {
  const desktop = c.Labels?.[DESKTOP_API_LABEL]
  if (desktop !== undefined && desktop !== '') {
    const hp = splitHostPort(desktop.trim())
    if (hp !== undefined) return hp
  }
  const ports = (c.Ports ?? []).filter((p) => p.PrivatePort === API_SERVER_PORT && p.Type === 'tcp' && typeof p.PublicPort === 'number' && p.PublicPort > 0)
  // Prefer an IPv4 binding: every kubeconfig consumer handles it.
  const p = ports.find((x) => !(x.IP ?? '').includes(':')) ?? ports[0]
  // No address at all: `localhost` is in every kind API-server certificate.
  return p === undefined ? undefined : { host: p.IP === undefined || p.IP === '' ? 'localhost' : p.IP, port: p.PublicPort }
}

/** Every kind cluster the engine knows, running or not, sorted by name. */
export async function discoverClusters (opts: DiscoverOptions): Promise<KindCluster[]> {
  const wanted = kindNetwork(opts)
  let list: Docker.ContainerInfo[]
  try {
    list = await opts.docker.listContainers({ all: true, filters: { label: [KIND_CLUSTER_LABEL] } })
  } catch (err) {
    throw new KtError('KT_ERR_DOCKER_UNAVAILABLE', `listing containers failed: ${dockerMessage(err)}`, { cause: err })
  }
  const byCluster = new Map<string, Docker.ContainerInfo[]>()
  for (const c of list) {
    const cluster = c.Labels?.[KIND_CLUSTER_LABEL]
    if (cluster === undefined || cluster === '') continue
    let arr = byCluster.get(cluster)
    if (arr === undefined) byCluster.set(cluster, arr = [])
    arr.push(c)
  }
  const out: KindCluster[] = []
  for (const [name, containers] of [...byCluster].sort((a, b) => a[0].localeCompare(b[0]))) {
    const nets = new Map<string, number>()
    for (const c of containers) for (const n of Object.keys(c.NetworkSettings?.Networks ?? {})) nets.set(n, (nets.get(n) ?? 0) + 1)
    // The configured network when the nodes are on it; otherwise the one network
    // they all share (a cluster made with another KIND_EXPERIMENTAL_DOCKER_NETWORK).
    let network = wanted
    if (!nets.has(wanted)) {
      const shared = [...nets].filter(([, count]) => count === containers.length).map(([n]) => n)
      if (shared.length === 1) network = shared[0] as string
    }
    const nodes: KindNode[] = containers.map((c) => {
      const net = c.NetworkSettings?.Networks?.[network]
      const n: { -readonly [K in keyof KindNode]: KindNode[K] } = {
        name: nameOf(c),
        id: c.Id,
        role: c.Labels?.[KIND_ROLE_LABEL] ?? 'unknown',
        state: c.State,
      }
      if (net?.IPAddress !== undefined && net.IPAddress !== '') n.ipv4 = net.IPAddress
      if (net?.GlobalIPv6Address !== undefined && net.GlobalIPv6Address !== '') n.ipv6 = net.GlobalIPv6Address
      return n
    }).sort((a, b) => a.name.localeCompare(b.name))
    const lb = containers.find((c) => c.Labels?.[KIND_ROLE_LABEL] === 'external-load-balancer')
    const cps = containers.filter((c) => c.Labels?.[KIND_ROLE_LABEL] === 'control-plane').sort((a, b) => nameOf(a).localeCompare(nameOf(b)))
    let api: { host: string, port: number } | undefined
    for (const c of lb !== undefined ? [lb] : cps) {
      api = apiServerOf(c)
      if (api !== undefined) break
    }
    const cluster: { -readonly [K in keyof KindCluster]: KindCluster[K] } = { name, network, nodes }
    if (api !== undefined) cluster.apiServer = api
    out.push(cluster)
  }
  return out
}

/**
 * The named cluster, or the only one. KT_ERR_NO_CLUSTER when there is none
 * (or the name is unknown); KT_ERR_CLUSTER_AMBIGUOUS when several exist and
 * no name was given.
 */
export async function findCluster (opts: DiscoverOptions & { name?: string }): Promise<KindCluster> {
  const all = await discoverClusters(opts)
  const names = all.map((c) => c.name)
  if (opts.name !== undefined) {
    const c = all.find((x) => x.name === opts.name)
    if (c === undefined) {
      throw new KtError('KT_ERR_NO_CLUSTER', `no kind cluster named ${JSON.stringify(opts.name)}${names.length > 0 ? ` (found: ${names.join(', ')})` : ''}; create it with \`kind create cluster --name ${opts.name}\``)
    }
    return c
  }
  if (all.length === 0) throw new KtError('KT_ERR_NO_CLUSTER', 'no kind cluster found; create one with `kind create cluster`')
  if (all.length > 1) throw new KtError('KT_ERR_CLUSTER_AMBIGUOUS', `several kind clusters (${names.join(', ')}); pass --cluster NAME`)
  return all[0] as KindCluster
}

/** The node kind reads admin.conf from: `<cluster>-control-plane`, else the first control plane. */
export function primaryControlPlane (cluster: KindCluster): KindNode | undefined {
  const cps = cluster.nodes.filter((n) => n.role === 'control-plane')
  return cps.find((n) => n.name === `${cluster.name}-control-plane`) ?? cps[0]
}

/** Read one small file from a container (running or stopped) through the archive API. */
export async function readContainerFile (docker: DockerClient, container: string, path: string, maxBytes = 1 << 20): Promise<Buffer> {
  const stream = await docker.getContainer(container).getArchive({ path })
  const tar = await collect(stream, maxBytes + 64 * 1024)
  const f = firstFile(tar)
  if (f === undefined) throw new Error(`${path} is not a regular file`)
  return f.data
}

function urlHost (h: string): string {
  return h.includes(':') ? `[${h}]` : h
}

/**
 * The cluster's admin kubeconfig, read from the control-plane container with
 * every `server:` pointed at the API server's published host port, as
 * `kind get kubeconfig` does. Returned as text; nothing is written to disk
 * (~/.kube/config stays untouched).
 */
export async function getKubeconfig (docker: DockerClient, cluster: KindCluster): Promise<string> {
  const cp = primaryControlPlane(cluster)
  if (cp === undefined) throw new KtError('KT_ERR_KUBECONFIG', `kind cluster ${cluster.name} has no control-plane node`)
  if (cluster.apiServer === undefined) {
    throw new KtError('KT_ERR_KUBECONFIG', `kind cluster ${cluster.name}: the API server port ${API_SERVER_PORT} is not published on the host (is the cluster running?)`)
  }
  let raw: Buffer
  try {
    raw = await readContainerFile(docker, cp.id, ADMIN_CONF)
  } catch (err) {
    const status = dockerStatus(err)
    const why = status === 404 ? `${ADMIN_CONF} does not exist (was the cluster created by kind?)` : dockerMessage(err)
    throw new KtError('KT_ERR_KUBECONFIG', `cannot read the kubeconfig of kind cluster ${cluster.name} from ${cp.name}: ${why}`, { cause: err })
  }
  const server = `https://${urlHost(cluster.apiServer.host)}:${cluster.apiServer.port}`
  const text = raw.toString('utf8')
  if (!/^\s*server:/m.test(text)) throw new KtError('KT_ERR_KUBECONFIG', `${ADMIN_CONF} in ${cp.name} has no server: entry`)
  return text.replace(/^(\s*server:\s*)\S.*$/gm, (_m, lead: string) => `${lead}${server}`)
}
