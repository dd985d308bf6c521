// `kind-tunnel demo`: the whole product on a machine with no Docker and no
// cluster. The test API server (src/sim) plays Kubernetes; two simulated
// nodes on loopback addresses serve HTTP on the NodePort the API server
// allocated for one LoadBalancer Service, answering with their names; and
// then the SAME `up` code path runs against it, in direct mode.

import { createServer, type Server } from 'node:http'
import { createSocket, type Socket as DgramSocket } from 'node:dgram'
import { randomInt } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import type { Socket } from 'node:net'
import type { Logger } from '../observe/logger.js'
import { startApiServer, type ApiServer } from '../sim/apiserver.js'
import { KUBE_PROXY_HEALTH_PORT } from '../routing/compute.js'
import { SIM_GATEWAY_CLASS, SIM_GATEWAY_CONTROLLER, SimGatewayController, gatewayApiCrds } from '../sim/gateway-impl.js'
import { gatewaysOf } from './gateways.js'
import type { UpStatus } from './status.js'

export const DEMO_NAMESPACE = 'demo'
export const DEMO_SERVICE = 'hello'
export const DEMO_CLUSTER = 'demo'
/** The demo's Gateway (namespace `demo`) and the name its HTTPRoute gives it. */
export const DEMO_GATEWAY = 'app'
export const DEMO_GATEWAY_HOSTNAME = 'app.demo.localhost'

export interface DemoClusterOptions {
  /** The Service's port (ip mode binds it on the external IP). Default: 80 when it can be bound, else 8000. */
  readonly servicePort?: number
  readonly nodes?: number
  /** The Service's name (default `hello`), in namespace `demo`. */
  readonly service?: string
  /** Node names are `<cluster>-worker`, `<cluster>-worker2`...; default `demo`. */
  readonly cluster?: string
  readonly logger?: Logger
  /** Also a Gateway with an HTTPRoute named DEMO_GATEWAY_HOSTNAME, served by a simulated implementation (the `demo` command). Default false. */
  readonly gateway?: boolean
}

export interface DemoCluster {
  readonly api: ApiServer
  readonly nodes: ReadonlyArray<{ readonly name: string, readonly ip: string }>
  readonly nodePort: number
  readonly servicePort: number
  kubeconfig (): string
  close (): Promise<void>
}

/** Ports below 1024 need root on Linux unless the sysctl lowers the bar. */
export function defaultServicePort (): number {
  if (typeof process.getuid === 'function' && process.getuid() === 0) return 80
  // macOS (since 10.14) and Windows let any user bind ports below 1024.
  if (process.platform !== 'linux') return 80
  try {
    const start = Number(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim())
    return Number.isFinite(start) && start <= 80 ? 80 : 8000
  } catch {
    return 8000
  }
}

interface NodeServers { servers: Server[], sockets: Set<Socket>, udp?: DgramSocket[] }

function listen (s: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    s.once('error', reject)
    s.listen({ host, port, exclusive: true }, () => { s.off('error', reject); resolve() })
  })
}

async function startNode (name: string, ip: string, nodePort: number, all: NodeServers, via?: string): Promise<void> {
  const track = (s: Server): Server => {
    s.on('connection', (c: Socket) => { all.sockets.add(c); c.on('close', () => all.sockets.delete(c)) })
    all.servers.push(s)
    return s
  }
  // The "pod" behind the NodePort: says which node answered.
  const app = track(createServer((req, res) => {
    const body = `hello from ${name} (${ip})${via !== undefined ? ` through ${via}` : ''}, ${req.method ?? 'GET'} ${req.url ?? '/'} for host ${req.headers.host ?? '-'}\n`
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'x-kind-tunnel-demo-node': name, 'content-length': Buffer.byteLength(body) })
    res.end(body)
  }))
  await listen(app, ip, nodePort)
  // The UDP side of the same pod (the Service's UDP port shares the NodePort): answers each datagram.
  const udp = createSocket('udp4')
  ;(all.udp ??= []).push(udp)
  udp.on('message', (m, r) => { udp.send(Buffer.from(`hello from ${name} (${ip}) over UDP: ${m.toString('utf8', 0, Math.min(m.length, 200)).trim()}\n`), r.port, r.address) })
  await new Promise<void>((resolve, reject) => { udp.once('error', reject); udp.bind(nodePort, ip, () => { udp.removeListener('error', reject); resolve() }) })
  // kube-proxy's health endpoint, which kind-tunnel's active checks ask.
  const health = track(createServer((req, res) => {
    res.writeHead(req.url === '/healthz' ? 200 : 404, { 'content-type': 'application/json' })
    res.end(req.url === '/healthz' ? '{"lastUpdated":"","currentTime":""}\n' : '')
  }))
  await listen(health, ip, KUBE_PROXY_HEALTH_PORT).catch(() => {
    // Taken on this address (another demo?): the checks then mark the node down,
    // and with every node down the data plane still tries them all.
    all.servers.pop()
  })
}

export async function startDemoCluster (o: DemoClusterOptions = {}): Promise<DemoCluster> {
  const clusterName = o.cluster ?? DEMO_CLUSTER
  const service = o.service ?? DEMO_SERVICE
  const api = await startApiServer({ clusterName, ...(o.logger !== undefined ? { logger: o.logger } : {}) })
  const servers: NodeServers = { servers: [], sockets: new Set() }
  // Labelled as implementations label a Gateway's Service (GEP-1762), so the
  // name routes from the first reconcile, before the Gateway's status has the address.
  const gateways = new SimGatewayController(api, { labels: (g) => ({ 'gateway.networking.k8s.io/gateway-name': g }) })
  const close = async (): Promise<void> => {
    gateways.stop()
    for (const s of servers.sockets) s.destroy()
    for (const u of servers.udp ?? []) u.close()
    await Promise.all(servers.servers.map((s) => new Promise<void>((resolve) => { s.close(() => resolve()) })))
    await api.close()
  }
  try {
    // Random node addresses in 127/8, away from the default LB pool
    // (127.240/16), so two demos (or a demo and the tests) never collide.
    const net = `127.${randomInt(100, 200)}.${randomInt(1, 255)}`
    const count = o.nodes ?? 2
    const nodes = Array.from({ length: count }, (_v, i) => ({ name: i === 0 ? `${clusterName}-worker` : `${clusterName}-worker${i + 1}`, ip: `${net}.${10 + i}` }))
    const servicePort = o.servicePort ?? defaultServicePort()
    api.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: DEMO_NAMESPACE } })
    for (const n of nodes) api.addNode({ name: n.name, internalIP: n.ip })
    // Created like `kubectl apply` would: the API server allocates the clusterIP and nodePort.
    const svc = api.create({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: service, namespace: DEMO_NAMESPACE, labels: { app: service } },
      spec: { type: 'LoadBalancer', selector: { app: service }, ports: [{ name: 'http', port: servicePort, targetPort: 8080, protocol: 'TCP' }, { name: 'udp', port: servicePort, targetPort: 8080, protocol: 'UDP' }] },
    }) as { spec?: { ports?: Array<{ nodePort?: number }> } }
    const nodePort = svc.spec?.ports?.[0]?.nodePort
    if (typeof nodePort !== 'number') throw new Error('the test API server allocated no nodePort')
    api.setServiceEndpoints({
      service,
      namespace: DEMO_NAMESPACE,
      endpoints: nodes.map((n, i) => ({ ip: `10.244.${i + 1}.2`, nodeName: n.name })),
    })
    for (const n of nodes) await startNode(n.name, n.ip, nodePort, servers)
    if (o.gateway === true) await startDemoGateway(api, gateways, nodes, servicePort, service, servers)
    return { api, nodes, nodePort, servicePort, kubeconfig: () => api.kubeconfig(), close }
  } catch (err) {
    await close()
    throw err
  }
}

async function startDemoGateway (api: ApiServer, gateways: SimGatewayController, nodes: ReadonlyArray<{ name: string, ip: string }>, servicePort: number, service: string, servers: NodeServers): Promise<void> {
  // Gateway API: the CRDs, a Gateway with an HTTPRoute, and a tiny simulated
  // implementation that gives the Gateway a LoadBalancer Service and copies
  // the address kind-tunnel gives it into the Gateway's status.
  for (const crd of gatewayApiCrds()) api.create(crd)
  api.create({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: SIM_GATEWAY_CLASS }, spec: { controllerName: SIM_GATEWAY_CONTROLLER } })
  api.create({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: DEMO_GATEWAY, namespace: DEMO_NAMESPACE },
    spec: { gatewayClassName: SIM_GATEWAY_CLASS, listeners: [{ name: 'http', protocol: 'HTTP', port: servicePort, allowedRoutes: { namespaces: { from: 'Same' } } }] },
  })
  api.create({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: DEMO_GATEWAY, namespace: DEMO_NAMESPACE },
    spec: { parentRefs: [{ name: DEMO_GATEWAY }], hostnames: [DEMO_GATEWAY_HOSTNAME], rules: [{ backendRefs: [{ name: service, port: servicePort }] }] },
  })
  gateways.reconcile()
  const gwSvc = gateways.service(DEMO_GATEWAY, DEMO_NAMESPACE) as { spec?: { ports?: Array<{ nodePort?: number }> } } | undefined
  const gwNodePort = gwSvc?.spec?.ports?.[0]?.nodePort
  if (typeof gwNodePort !== 'number') throw new Error('the test API server allocated no nodePort for the Gateway')
  for (const n of nodes) await startNode(n.name, n.ip, gwNodePort, servers, `Gateway ${DEMO_NAMESPACE}/${DEMO_GATEWAY}`)
  gateways.start()
}

export async function writeKubeconfig (path: string, text: string): Promise<void> {
  await writeFile(path, text, { mode: 0o600 })
}

/** What to curl, from the running up's status. */
export function demoLines (st: UpStatus, kubeconfigOut: string | undefined): string[] {
  const svc = st.services.find((s) => s.namespace === DEMO_NAMESPACE && s.name === DEMO_SERVICE)
  const out = ['', 'try it:']
  const udp: string[] = []
  const viaUdp = (a: string): boolean => {
    if (!a.endsWith('/udp')) return false
    const m = /^\[?(.*?)\]?:(\d+)\/udp$/.exec(a)
    if (m !== null) udp.push(`  echo hello | nc -u -w1 ${m[1] as string} ${m[2] as string}`)
    return true
  }
  for (const h of svc?.hostnames ?? []) if (!viaUdp(h)) out.push(`  curl ${h}/`)
  for (const a of svc?.addresses ?? []) {
    if (viaUdp(a)) continue
    const m = /^(\[?[^\]]*\]?):(\d+)$/.exec(a)
    const host = m?.[1] ?? a
    const port = Number(m?.[2] ?? 80)
    out.push(`  curl http://${host}${port === 80 ? '' : `:${port}`}/`)
  }
  for (const g of gatewaysOf(st)) {
    for (const h of g.hostnames) if (h.url !== undefined && h.served) out.push(`  curl ${h.url}   (${h.route} through Gateway ${g.key})`)
  }
  out.push(...udp)
  if (kubeconfigOut !== undefined) out.push(`  kubectl --kubeconfig ${kubeconfigOut} get svc -A`)
  if (kubeconfigOut !== undefined) out.push(`  kubectl --kubeconfig ${kubeconfigOut} get gateway,httproute -A`)
  out.push('Ctrl-C stops the demo and undoes everything.')
  return out
}
