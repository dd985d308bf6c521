// A Kubernetes API server for tests and `kind-tunnel demo`: plain node:http
// on loopback, JSON only, speaking the wire protocol real clients depend on
// (discovery, list/watch with resourceVersions, Status errors, the three
// patch types, server-side Tables for kubectl). Test hooks reach into it
// in-process: seed objects, cut watches, compact history, restart, forbid.
//
// Over 500 lines: the test API server is one HTTP surface (routing, list,
// watch, patch, Tables, the fault hooks); it is test equipment, not product.

import http from 'node:http'
import https from 'node:https'
import { createHash, timingSafeEqual } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { release as osRelease } from 'node:os'
import type { Socket } from 'node:net'
import { InvalidArgumentError, KtError } from '../errors.js'
import { silentLogger, type Logger } from '../observe/logger.js'
import {
  ApiStatusError, badRequest, forbidden, injected, internalError, methodNotAllowed, notAcceptable,
  pathNotFound, requestTooLarge, success, unauthorized, unsupportedMediaType, type StatusBody,
} from './status.js'
import {
  apiVersionOf, findByKind, findResource, resolveResource, resourceKey,
  type KubeObject, type ResourceDef,
} from './resources.js'
import { Store, type DeleteResult, type EventType } from './store.js'
import { parseCidr4, intToIpv4 } from './allocator.js'
import { parseFieldSelector, parseLabelSelector } from './selectors.js'
import { PATCH_CONTENT_TYPES, type Json, type PatchType } from './patch.js'
import { aggregatedDiscovery, apiGroup, apiGroupList, apiResourceList, apiVersions } from './discovery.js'
import { renderTable, type IncludeObject } from './tables.js'
import { renderKubeconfig } from './kubeconfig.js'
import { openapiV3ForSegments, openapiV3Root } from './openapi.js'
import { Catalog } from './crds.js'

export type { KubeObject, ResourceDef } from './resources.js'
export { ApiStatusError } from './status.js'

export interface ApiServerOptions {
  /** Loopback only (127.0.0.0/8 or ::1). Default 127.0.0.1. */
  host?: string
  /** Default 0: an ephemeral port, kept across restart(). */
  port?: number
  /** When set, every API request needs `Authorization: Bearer <token>`; /healthz, /readyz, /livez and /version stay open. */
  token?: string
  logger?: Logger
  /** Events kept for watch resumption; older RVs get 410 Expired. Default 1000. */
  historySize?: number
  /** BOOKMARK period for watches with allowWatchBookmarks. Default 60000 ms (kube sends about one a minute). */
  bookmarkIntervalMs?: number
  /** Watch length when the client gives no timeoutSeconds. Default 1800 s (kube's --min-request-timeout). */
  defaultWatchSeconds?: number
  /** Names the kubeconfig's cluster, context and user `kind-<clusterName>`. Default `sim`. */
  clusterName?: string
  /** Create default, kube-system, kube-public, kube-node-lease and the `kubernetes` Service. Default true. */
  seedDefaults?: boolean
  /** Default 10.96.0.0/12, kind's. */
  serviceCIDR?: string
  /** Default [30000, 32767]. */
  nodePortRange?: readonly [number, number]
  /** Serve apidiscovery.k8s.io/v2 when asked. Default true; false exercises clients' legacy discovery. */
  aggregatedDiscovery?: boolean
  /** The user named in 403 messages. Default `kubernetes-admin`. */
  user?: string
  /**
   * Serve HTTPS with this certificate and key (PEM). Needed for token auth
   * with kubectl, which never sends credentials over plain HTTP
   * (kubernetes/kubectl#744). The kubeconfig then trusts `cert` as the CA,
   * so use a self-signed certificate with an IP SAN for the host.
   */
  tls?: { cert: string | Buffer, key: string | Buffer }
}

export type Verb = 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete' | 'deletecollection'

/** Matches requests; an omitted field matches anything. `resource` is a plural, optionally `plural.group`. */
export interface RequestMatch {
  verb?: Verb | Verb[]
  resource?: string
  /** '' matches the main resource only; omitted matches both. */
  subresource?: string
  namespace?: string
  name?: string
}

export interface FailRule extends RequestMatch {
  /** HTTP status to answer with (429, 500, 503, ...). */
  code: number
  /** How many matching requests fail; default unlimited until removed. */
  times?: number
  retryAfterSeconds?: number
}

export interface RequestRecord {
  method: string
  path: string
  verb: string
  /** Group-qualified plural (`services`, `endpointslices.discovery.k8s.io`), or '' for non-resource paths. */
  resource: string
  subresource: string
  namespace: string
  name: string
  code: number
  /** When it was answered (Date.now()). */
  at: number
}

export interface NodeOptions {
  name: string
  internalIP: string
  /** Ready condition: true, false, or 'Unknown' (node lease expired). Default true. */
  ready?: boolean | 'Unknown'
  /** e.g. ['control-plane']: labels node-role.kubernetes.io/<role>; control-plane also gets kind's taint and LB exclusion label. */
  roles?: string[]
  labels?: Record<string, string>
  unschedulable?: boolean
  kubeletVersion?: string
}

export interface EndpointOptions {
  ip: string
  ready?: boolean
  serving?: boolean
  terminating?: boolean
  nodeName?: string
}

export interface ServiceEndpointsOptions {
  service: string
  namespace?: string
  endpoints: EndpointOptions[]
  /** Default: the Service's ports, with numeric targetPorts as the endpoint ports. */
  ports?: Array<{ name?: string, port: number, protocol?: string }>
}

export interface ListHookOptions {
  labelSelector?: string
  fieldSelector?: string
}

interface ParsedRequest {
  def: ResourceDef
  verb: Verb
  namespace: string
  name: string
  subresource: string
}

interface ActiveWatch {
  res: http.ServerResponse
  def: ResourceDef
  stop: () => void
}

const MAX_BODY = 3 * 1024 * 1024
const GIT_VERSION = 'v1.32.0+kind-tunnel-sim'
const WATCH_HIGH_WATER = 16 * 1024 * 1024

function sha256 (s: string): Buffer {
  return createHash('sha256').update(s).digest()
}

function isLoopback (host: string): boolean {
  return host === '::1' || (isIP(host) === 4 && host.startsWith('127.'))
}

interface MediaRange { type: string, params: Record<string, string> }

function parseAccept (h: string | undefined): MediaRange[] {
  if (h === undefined || h.trim() === '') return [{ type: 'application/json', params: {} }]
  return h.split(',').map((part) => {
    const [type, ...ps] = part.split(';').map((x) => x.trim())
    const params: Record<string, string> = {}
    for (const p of ps) {
      const eq = p.indexOf('=')
      if (eq > 0) params[p.slice(0, eq).trim()] = p.slice(eq + 1).trim()
    }
    return { type: (type ?? '').toLowerCase(), params }
  })
}

function jsonish (t: string): boolean {
  return t === 'application/json' || t === '*/*' || t === 'application/*'
}

type Representation = { as: 'object' } | { as: 'table', apiVersion: string } | { as: 'partial' }

/** Picks the response form from Accept, in the client's order (kubectl lists Table first). */
function negotiate (accept: string | undefined): Representation {
  for (const m of parseAccept(accept)) {
    if (!jsonish(m.type)) continue
    const as = m.params.as
    if (as === undefined) return { as: 'object' }
    if (as === 'Table' && m.params.g === 'meta.k8s.io' && (m.params.v === 'v1' || m.params.v === 'v1beta1')) {
      return { as: 'table', apiVersion: `meta.k8s.io/${m.params.v}` }
    }
    if ((as === 'PartialObjectMetadata' || as === 'PartialObjectMetadataList') && m.params.g === 'meta.k8s.io' && m.params.v === 'v1') return { as: 'partial' }
  }
  throw notAcceptable()
}

function truthy (v: string | null): boolean {
  return v === 'true' || v === '1'
}

export class ApiServer {
  readonly host: string
  token: string | undefined
  private readonly server: http.Server
  private readonly caData: string | undefined
  private readonly store: Store
  /** Built-in resources and those of the CRDs written so far. */
  private readonly catalog = new Catalog()
  private readonly log: Logger
  private readonly sockets = new Set<Socket>()
  private readonly watches = new Set<ActiveWatch>()
  private readonly forbids = new Set<RequestMatch>()
  private readonly fails = new Set<FailRule & { left: number }>()
  private readonly befores = new Set<{ rule: RequestMatch, fn: () => void }>()
  private readonly counts = new Map<string, { rec: Omit<RequestRecord, 'method' | 'path' | 'at'>, n: number }>()
  private readonly recent: RequestRecord[] = []
  private readonly opts: Required<Pick<ApiServerOptions, 'bookmarkIntervalMs' | 'defaultWatchSeconds' | 'clusterName' | 'aggregatedDiscovery' | 'user'>>
  private tokenHash: Buffer | undefined
  private boundPort = 0
  private closed = false

  /** @internal use startApiServer() */
  constructor (opts: ApiServerOptions) {
    this.host = opts.host ?? '127.0.0.1'
    if (this.host === '0.0.0.0' || this.host === '::' || this.host === '') {
      throw new InvalidArgumentError('KT_ERR_WILDCARD_BIND', `the test API server binds loopback only, not ${JSON.stringify(this.host)}`)
    }
    if (!isLoopback(this.host)) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `the test API server binds loopback only (127.0.0.0/8 or ::1), not ${JSON.stringify(this.host)}`)
    const port = opts.port ?? 0
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `port must be an integer 0-65535, got ${String(port)}`)
    this.boundPort = port
    if (opts.token !== undefined && opts.token === '') throw new InvalidArgumentError('KT_ERR_INVALID_ARG', 'token must not be empty')
    this.token = opts.token
    this.tokenHash = opts.token === undefined ? undefined : sha256(opts.token)
    const historySize = opts.historySize ?? 1000
    if (!Number.isInteger(historySize) || historySize < 1) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', 'historySize must be a positive integer')
    const range = opts.nodePortRange ?? [30000, 32767]
    if (!(Number.isInteger(range[0]) && Number.isInteger(range[1]) && range[0] >= 1 && range[1] <= 65535 && range[0] < range[1])) {
      throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `nodePortRange must be two ports, low < high, got ${JSON.stringify(range)}`)
    }
    const cidr = parseCidr4(opts.serviceCIDR ?? '10.96.0.0/12')
    this.opts = {
      bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 60_000,
      defaultWatchSeconds: opts.defaultWatchSeconds ?? 1800,
      clusterName: opts.clusterName ?? 'sim',
      aggregatedDiscovery: opts.aggregatedDiscovery ?? true,
      user: opts.user ?? 'kubernetes-admin',
    }
    this.log = (opts.logger ?? silentLogger()).child({ module: 'apisim' })
    this.store = new Store({ historySize, network: { cidr, nodePortRange: range }, catalog: () => this.catalog.all })
    // CRDs take effect as they are written: a synchronous, internal watch.
    const crdDef = findResource('apiextensions.k8s.io', 'v1', 'customresourcedefinitions') as ResourceDef
    this.store.watch(crdDef, { label: parseLabelSelector(''), field: parseFieldSelector('', crdDef) }, (type, crd) => {
      const gone = this.catalog.apply(type, crd)
      if (gone === undefined) return
      this.store.dropStorage(gone)
      for (const w of [...this.watches]) {
        if (w.def.storage !== gone) continue
        w.stop()
        w.res.end()
      }
    })
    if (opts.seedDefaults ?? true) {
      for (const ns of ['default', 'kube-node-lease', 'kube-public', 'kube-system']) this.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } })
      this.create({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'kubernetes', namespace: 'default', labels: { component: 'apiserver', provider: 'kubernetes' } },
        spec: { clusterIP: intToIpv4(cidr.base + 1), ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: 6443 }] },
      })
    }
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => { this.handle(req, res) }
    this.server = opts.tls === undefined ? http.createServer(handler) : https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, handler)
    this.caData = opts.tls === undefined ? undefined : Buffer.from(opts.tls.cert).toString('base64')
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s)
      s.on('close', () => this.sockets.delete(s))
    })
    this.server.on('clientError', (_err, socket) => { socket.destroy() })
  }

  get port (): number {
    return this.boundPort
  }

  get url (): string {
    const scheme = this.caData === undefined ? 'http' : 'https'
    return `${scheme}://${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.boundPort}`
  }

  /** The store's global resourceVersion (bumped by every write). */
  get resourceVersion (): string {
    return String(this.store.resourceVersion)
  }

  /** @internal */
  async listen (): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        this.server.off('listening', onListening)
        reject(new KtError('KT_ERR_LISTEN', `test API server cannot listen on ${this.host}:${this.boundPort}: ${err.message}`, { cause: err }))
      }
      const onListening = (): void => {
        this.server.off('error', onError)
        resolve()
      }
      this.server.once('error', onError)
      this.server.once('listening', onListening)
      this.server.listen({ host: this.host, port: this.boundPort, exclusive: true })
    })
    const addr = this.server.address()
    if (addr !== null && typeof addr === 'object') this.boundPort = addr.port
    this.log.info({ url: this.url }, 'test API server listening')
  }

  private async stopListening (): Promise<void> {
    for (const w of [...this.watches]) w.stop()
    const closed = new Promise<void>((resolve) => {
      if (!this.server.listening) { resolve(); return }
      this.server.close(() => { resolve() })
    })
    for (const s of this.sockets) s.destroy()
    await closed
  }

  /** Stops listening and closes every connection (open watches included). Idempotent. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.stopListening()
  }

  /**
   * An API server restart as clients see it: the listener closes, every
   * connection (watches too) is cut, and after `downMs` it listens again on
   * the same port with the same store and resourceVersions.
   */
  async restart (opts: { downMs?: number } = {}): Promise<void> {
    if (this.closed) throw new KtError('KT_ERR_SIM_REQUEST', 'the test API server is closed')
    await this.stopListening()
    if (opts.downMs !== undefined && opts.downMs > 0) await new Promise((resolve) => setTimeout(resolve, opts.downMs))
    await this.listen()
  }

  /**
   * Ends every open watch. 'destroy' (default) resets the connection
   * mid-stream; 'end' finishes the chunked response cleanly, as a server-side
   * watch timeout does. Returns how many were cut.
   */
  cutWatches (opts: { mode?: 'destroy' | 'end', resource?: string } = {}): number {
    const def = opts.resource === undefined ? undefined : this.def(opts.resource)
    let n = 0
    for (const w of [...this.watches]) {
      if (def !== undefined && w.def.storage !== def.storage) continue
      n++
      w.stop()
      if (opts.mode === 'end') w.res.end()
      else w.res.socket?.destroy()
    }
    return n
  }

  /** Drops the event history: a watch from any earlier resourceVersion now gets 410 Expired. */
  compact (): void {
    this.store.compact()
  }

  /** Sends a BOOKMARK now on every watch that allows bookmarks. */
  bookmarkNow (): void {
    for (const w of this.watches) (w as ActiveWatch & { bookmark?: () => void }).bookmark?.()
  }

  /** Open watches, optionally of one resource. */
  watchCount (resource?: string): number {
    const def = resource === undefined ? undefined : this.def(resource)
    let n = 0
    for (const w of this.watches) if (def === undefined || w.def.storage === def.storage) n++
    return n
  }

  /** Resolves once at least `count` watches on `resource` are open; rejects after `timeoutMs` (default 5000). */
  async waitForWatches (resource: string, count = 1, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (let i = 0; i < Math.ceil(timeoutMs / 10) + 1; i++) {
      if (this.watchCount(resource) >= count) return
      if (Date.now() >= deadline) break
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    throw new KtError('KT_ERR_SIM_REQUEST', `fewer than ${count} watch(es) on ${resource} after ${timeoutMs} ms`)
  }

  /** Answer 403 Forbidden (with a real Status) to matching requests. Returns the function that lifts the rule. */
  forbid (rule: RequestMatch): () => void {
    const r = { ...rule }
    this.forbids.add(r)
    return () => { this.forbids.delete(r) }
  }

  /** Answer matching requests with `code` (429/500/503...), `times` times or until lifted. */
  fail (rule: FailRule): () => void {
    const r = { ...rule, left: rule.times ?? Infinity }
    this.fails.add(r)
    return () => { this.fails.delete(r) }
  }

  /**
   * Run `fn` once, just before the first matching request is served (after
   * authorization): a race made exact, e.g. a type change landing between a
   * controller's cache and its status patch.
   */
  beforeRequest (rule: RequestMatch, fn: () => void): () => void {
    const b = { rule: { ...rule }, fn }
    this.befores.add(b)
    return () => { this.befores.delete(b) }
  }

  /** Accept only this bearer token from now on (a token that expired or was revoked); open watches keep running, as on a real server. */
  setToken (token: string): void {
    this.token = token
    this.tokenHash = sha256(token)
  }

  clearRules (): void {
    this.forbids.clear()
    this.fails.clear()
    this.befores.clear()
  }

  /** How many requests matched (all codes unless `code` is given). */
  requestCount (match: RequestMatch & { code?: number } = {}): number {
    let n = 0
    for (const { rec, n: c } of this.counts.values()) if (this.matchRecord(match, rec) && (match.code === undefined || match.code === rec.code)) n += c
    return n
  }

  /** The last 1000 requests, oldest first. */
  get requests (): readonly RequestRecord[] {
    return this.recent
  }

  resetRequests (): void {
    this.counts.clear()
    this.recent.length = 0
  }

  kubeconfig (opts: { token?: string, namespace?: string } = {}): string {
    return renderKubeconfig({ server: this.url, name: `kind-${this.opts.clusterName}`, token: opts.token ?? this.token, namespace: opts.namespace, caData: this.caData })
  }

  async writeKubeconfig (path: string, opts: { token?: string, namespace?: string } = {}): Promise<void> {
    await writeFile(path, this.kubeconfig(opts), { mode: 0o600 })
  }

  // ---- in-process object hooks (no HTTP, no auth rules; events reach watches as usual) ----

  private def (resource: string): ResourceDef {
    const d = resolveResource(resource, this.catalog.all)
    if (d === undefined) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `unknown resource ${JSON.stringify(resource)}`)
    return d
  }

  private defOf (obj: KubeObject): ResourceDef {
    const d = findByKind(String(obj.apiVersion), String(obj.kind), this.catalog.all)
    if (d === undefined) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `unknown apiVersion/kind ${String(obj.apiVersion)}/${String(obj.kind)}`)
    return d
  }

  private nsFor (def: ResourceDef, namespace: string | undefined): string {
    return def.namespaced ? (namespace ?? 'default') : ''
  }

  /** Creates an object from its apiVersion and kind (namespace: metadata.namespace, else default). */
  create<T extends object> (obj: T): KubeObject & T {
    const o = obj as unknown as KubeObject
    const def = this.defOf(o)
    return this.store.create(def, this.nsFor(def, o.metadata?.namespace), o) as KubeObject & T
  }

  get (resource: string, name: string, namespace?: string): KubeObject {
    const def = this.def(resource)
    return this.store.get(def, this.nsFor(def, namespace), name)
  }

  tryGet (resource: string, name: string, namespace?: string): KubeObject | undefined {
    const def = this.def(resource)
    return this.store.tryGet(def, this.nsFor(def, namespace), name)
  }

  /** Lists across all namespaces unless `namespace` is given. */
  list (resource: string, namespace?: string, opts: ListHookOptions = {}): KubeObject[] {
    const def = this.def(resource)
    return this.store.list(def, def.namespaced ? namespace : undefined, {
      label: parseLabelSelector(opts.labelSelector),
      field: parseFieldSelector(opts.fieldSelector, def),
    }).items
  }

  /** PUT semantics: metadata.resourceVersion, when set, is a precondition. */
  update<T extends object> (obj: T, opts: { subresource?: 'status' } = {}): KubeObject & T {
    const o = obj as unknown as KubeObject
    const def = this.defOf(o)
    return this.store.update(def, this.nsFor(def, o.metadata?.namespace), String(o.metadata?.name), o, opts.subresource ?? '') as KubeObject & T
  }

  patch (resource: string, name: string, patch: unknown, opts: { namespace?: string, type?: PatchType, subresource?: 'status' } = {}): KubeObject {
    const def = this.def(resource)
    return this.store.patch(def, this.nsFor(def, opts.namespace), name, opts.type ?? 'merge', patch as Json, opts.subresource ?? '')
  }

  /** Read-modify-write: `fn` edits a copy (or returns a new object); written with the read RV as precondition. */
  mutate (resource: string, name: string, fn: (o: KubeObject) => KubeObject | undefined | void, opts: { namespace?: string, subresource?: 'status' } = {}): KubeObject {
    const def = this.def(resource)
    const ns = this.nsFor(def, opts.namespace)
    const cur = this.store.get(def, ns, name)
    const next = fn(cur) ?? cur
    return this.store.update(def, ns, name, next, opts.subresource ?? '')
  }

  delete (resource: string, name: string, namespace?: string): DeleteResult {
    const def = this.def(resource)
    return this.store.delete(def, this.nsFor(def, namespace), name)
  }

  /** A kind-like node: InternalIP and Hostname addresses, a Ready condition, kind's labels. */
  addNode (o: NodeOptions): KubeObject {
    return this.create(nodeObject(o, this.opts.clusterName))
  }

  setNodeReady (name: string, ready: boolean | 'Unknown'): KubeObject {
    return this.mutate('nodes', name, (n) => {
      const conds = ((n.status as { conditions?: Array<Record<string, unknown>> } | undefined)?.conditions) ?? []
      const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
      for (const c of conds) {
        if (c.type !== 'Ready') continue
        const status = ready === 'Unknown' ? 'Unknown' : ready ? 'True' : 'False'
        if (c.status !== status) {
          c.status = status
          c.lastTransitionTime = now
        }
        c.lastHeartbeatTime = now
        c.reason = ready === 'Unknown' ? 'NodeStatusUnknown' : ready ? 'KubeletReady' : 'KubeletNotReady'
        c.message = ready === 'Unknown' ? 'Kubelet stopped posting node status.' : ready ? 'kubelet is posting ready status' : 'container runtime is down'
      }
    }, { subresource: 'status' })
  }

  /**
   * The EndpointSlice the endpointslice controller would keep for a Service:
   * labelled kubernetes.io/service-name, owned by the Service (deleted with
   * it), created on first call and replaced after.
   */
  setServiceEndpoints (o: ServiceEndpointsOptions): KubeObject {
    const ns = o.namespace ?? 'default'
    const svc = this.get('services', o.service, ns)
    const spec = (svc.spec ?? {}) as { ports?: Array<{ name?: string, port: number, targetPort?: unknown, protocol?: string }> }
    const ports = o.ports ?? (spec.ports ?? []).map((p) => ({
      name: p.name ?? '',
      port: typeof p.targetPort === 'number' ? p.targetPort : p.port,
      protocol: p.protocol ?? 'TCP',
    }))
    const body: KubeObject = {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        generateName: `${o.service}-`,
        namespace: ns,
        labels: { 'kubernetes.io/service-name': o.service, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
        ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: o.service, uid: String(svc.metadata.uid), controller: true, blockOwnerDeletion: true }],
      },
      addressType: 'IPv4',
      endpoints: o.endpoints.map((e) => {
        const ep: Record<string, unknown> = {
          addresses: [e.ip],
          conditions: { ready: e.ready ?? true, serving: e.serving ?? e.ready ?? true, terminating: e.terminating ?? false },
        }
        if (e.nodeName !== undefined) ep.nodeName = e.nodeName
        return ep
      }),
      ports: ports.map((p) => ({ name: p.name ?? '', port: p.port, protocol: p.protocol ?? 'TCP' })),
    }
    const existing = this.list('endpointslices', ns, { labelSelector: `kubernetes.io/service-name=${o.service}` })[0]
    if (existing === undefined) return this.create(body)
    const { generateName: _g, ...meta } = body.metadata
    return this.update({ ...body, metadata: { ...existing.metadata, ...meta, name: existing.metadata.name as string } })
  }

  // ---- HTTP ----

  private record (req: http.IncomingMessage, p: { verb: string, resource: string, subresource: string, namespace: string, name: string }, code: number): void {
    const rec: RequestRecord = { method: req.method ?? '', path: (req.url ?? '').split('?')[0] ?? '', ...p, code, at: Date.now() }
    const key = `${rec.verb}\0${rec.resource}\0${rec.subresource}\0${rec.namespace}\0${rec.name}\0${code}`
    const c = this.counts.get(key)
    if (c === undefined) this.counts.set(key, { rec: { verb: rec.verb, resource: rec.resource, subresource: rec.subresource, namespace: rec.namespace, name: rec.name, code }, n: 1 })
    else c.n++
    this.recent.push(rec)
    if (this.recent.length > 1000) this.recent.shift()
    this.log.debug({ method: rec.method, path: rec.path, verb: rec.verb, code }, 'request')
  }

  private matchRecord (m: RequestMatch, r: { verb: string, resource: string, subresource: string, namespace: string, name: string }): boolean {
    if (m.verb !== undefined && !(Array.isArray(m.verb) ? m.verb as string[] : [m.verb as string]).includes(r.verb)) return false
    if (m.resource !== undefined) {
      const d = resolveResource(m.resource, this.catalog.all)
      if (d === undefined ? m.resource !== r.resource : resourceKey(d) !== r.resource) return false
    }
    if (m.subresource !== undefined && m.subresource !== r.subresource) return false
    if (m.namespace !== undefined && m.namespace !== r.namespace) return false
    if (m.name !== undefined && m.name !== r.name) return false
    return true
  }

  private authenticated (req: http.IncomingMessage): boolean {
    if (this.tokenHash === undefined) return true
    const h = req.headers.authorization
    const m = h === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(h)
    if (m === null) return false
    return timingSafeEqual(sha256(m[1] as string), this.tokenHash)
  }

  private handle (req: http.IncomingMessage, res: http.ServerResponse): void {
    const info = { verb: (req.method ?? '').toLowerCase(), resource: '', subresource: '', namespace: '', name: '' }
    const url = new URL(req.url ?? '/', 'http://sim.invalid')
    const pretty = url.searchParams.get('pretty') === 'true' || /^(curl|wget)\//i.test(req.headers['user-agent'] ?? '')
    const send = (code: number, body: unknown, contentType = 'application/json'): void => {
      if (res.headersSent || res.destroyed) return
      const text = typeof body === 'string' ? body : JSON.stringify(body, null, pretty ? 2 : undefined) + '\n'
      res.writeHead(code, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-cache, private' })
      res.end(text)
      this.record(req, info, code)
    }
    const fail = (err: unknown): void => {
      // Past the headers (a watch under way) no Status can be sent: cut the stream.
      if (res.headersSent) { res.destroy(); return }
      let status: StatusBody
      if (err instanceof ApiStatusError) status = err.body
      else {
        this.log.error({ err, path: url.pathname }, 'test API server handler failed')
        status = internalError(err instanceof Error ? err.message : String(err)).body
      }
      if (status.details?.retryAfterSeconds !== undefined && !res.headersSent) res.setHeader('Retry-After', String(status.details.retryAfterSeconds))
      send(status.code, status)
    }
    req.on('error', () => { res.destroy() })
    this.route(req, res, url, info, send).catch(fail)
  }

  private async route (
    req: http.IncomingMessage, res: http.ServerResponse, url: URL,
    info: { verb: string, resource: string, subresource: string, namespace: string, name: string },
    send: (code: number, body: unknown, contentType?: string) => void,
  ): Promise<void> {
    const segs = url.pathname.split('/').filter((s) => s !== '').map((s) => decodeURIComponent(s))
    const first = segs[0] ?? ''
    if (['healthz', 'livez', 'readyz'].includes(first)) {
      await drain(req)
      send(200, 'ok', 'text/plain; charset=utf-8')
      return
    }
    if (first === 'version' && segs.length === 1) {
      await drain(req)
      send(200, { major: '1', minor: '32', gitVersion: GIT_VERSION, gitCommit: '0000000000000000000000000000000000000000', gitTreeState: 'clean', buildDate: '2025-01-01T00:00:00Z', goVersion: 'go1.23.4', compiler: 'gc', platform: `${process.platform}/${process.arch === 'x64' ? 'amd64' : process.arch}` })
      return
    }
    if (!this.authenticated(req)) {
      // Name the resource in the request record even though the answer is 401.
      try {
        const off = first === 'api' ? 2 : 3
        if (segs.length > off) {
          const p = this.parseResourcePath(req.method ?? '', first === 'api' ? '' : segs[1] ?? '', segs[off - 1] ?? '', segs.slice(off), url)
          Object.assign(info, { verb: p.verb, resource: resourceKey(p.def), subresource: p.subresource, namespace: p.namespace, name: p.name })
        }
      } catch {}
      await drain(req)
      throw unauthorized()
    }
    if (first === 'openapi') {
      await drain(req)
      if (req.method !== 'GET') throw methodNotAllowed()
      const doc = segs[1] === 'v3' ? (segs.length === 2 ? openapiV3Root(this.catalog.all) : openapiV3ForSegments(segs.slice(2), this.catalog.all)) : undefined
      if (doc === undefined) throw pathNotFound()
      send(200, doc)
      return
    }
    if (first !== 'api' && first !== 'apis') {
      await drain(req)
      throw pathNotFound()
    }
    const legacy = first === 'api'
    let group: string
    let version: string | undefined
    let rest: string[]
    if (legacy) {
      group = ''
      version = segs[1]
      rest = segs.slice(2)
    } else {
      group = segs[1] ?? ''
      version = segs[2]
      rest = segs.slice(3)
    }
    // Discovery.
    if (segs.length === 1) {
      await drain(req)
      if (req.method !== 'GET') throw methodNotAllowed()
      const wanted = this.opts.aggregatedDiscovery ? parseAccept(req.headers.accept).find((m) => jsonish(m.type) && m.params.g === 'apidiscovery.k8s.io' && m.params.as === 'APIGroupDiscoveryList' && (m.params.v === 'v2' || m.params.v === 'v2beta1')) : undefined
      if (wanted !== undefined) {
        const v = wanted.params.v as string
        send(200, aggregatedDiscovery(legacy, `apidiscovery.k8s.io/${v}`, this.catalog.all), `application/json;g=apidiscovery.k8s.io;v=${v};as=APIGroupDiscoveryList`)
        return
      }
      send(200, legacy ? apiVersions(`${this.host}:${this.boundPort}`) : apiGroupList(this.catalog.all))
      return
    }
    if (version === undefined) {
      await drain(req)
      const g = apiGroup(group, this.catalog.all)
      if (g === undefined) throw pathNotFound()
      send(200, g)
      return
    }
    if (rest.length === 0) {
      await drain(req)
      const list = apiResourceList(group, version, this.catalog.all)
      if (list === undefined) throw pathNotFound()
      send(200, list)
      return
    }
    const p = this.parseResourcePath(req.method ?? '', group, version, rest, url)
    info.verb = p.verb
    info.resource = resourceKey(p.def)
    info.subresource = p.subresource
    info.namespace = p.namespace
    info.name = p.name
    this.authorize(p)
    for (const b of this.befores) {
      if (!this.matchRecord(b.rule, info)) continue
      this.befores.delete(b)
      b.fn()
    }
    for (const f of this.fails) {
      if (this.matchRecord(f, info) && f.left > 0) {
        f.left--
        if (f.left <= 0) this.fails.delete(f)
        await drain(req)
        throw injected(f.code, f.retryAfterSeconds)
      }
    }
    const dryRun = url.searchParams.getAll('dryRun').filter((v) => v !== '')
    if (dryRun.length > 0) {
      await drain(req)
      throw badRequest('dryRun is not supported by the kind-tunnel test API server')
    }
    await this.serve(req, res, url, p, send, info)
  }

  private parseResourcePath (method: string, group: string, version: string, segs: string[], url: URL): ParsedRequest {
    let rest = segs
    let watchPath = false
    if (rest[0] === 'watch') { watchPath = true; rest = rest.slice(1) }
    let def: ResourceDef | undefined
    let namespace = ''
    let name = ''
    let subresource = ''
    const nsDef = rest[0] === 'namespaces' && rest.length >= 3 ? findResource(group, version, rest[2] as string, this.catalog.all) : undefined
    if (nsDef !== undefined && nsDef.namespaced) {
      def = nsDef
      namespace = rest[1] as string
      name = rest[3] ?? ''
      subresource = rest[4] ?? ''
      if (rest.length > 5) throw pathNotFound()
    } else {
      def = findResource(group, version, rest[0] ?? '', this.catalog.all)
      if (def === undefined) throw pathNotFound()
      name = rest[1] ?? ''
      subresource = rest[2] ?? ''
      if (rest.length > 3) throw pathNotFound()
      if (def.namespaced && name !== '') throw pathNotFound()
    }
    if (def === undefined) throw pathNotFound()
    if (subresource !== '' && !(subresource === 'status' && def.statusSubresource)) throw pathNotFound()
    const watch = watchPath || truthy(url.searchParams.get('watch'))
    let verb: Verb
    switch (method) {
      case 'GET': verb = watch ? 'watch' : name === '' ? 'list' : 'get'; break
      case 'POST': if (name !== '' || watchPath) throw methodNotAllowed(); verb = 'create'; break
      case 'PUT': if (name === '' || watchPath) throw methodNotAllowed(); verb = 'update'; break
      case 'PATCH': if (name === '' || watchPath) throw methodNotAllowed(); verb = 'patch'; break
      case 'DELETE': if (watchPath) throw methodNotAllowed(); verb = name === '' ? 'deletecollection' : 'delete'; break
      default: throw methodNotAllowed()
    }
    if (subresource !== '' && !['get', 'update', 'patch'].includes(verb)) throw methodNotAllowed()
    if (verb === 'create' && def.namespaced && namespace === '') throw methodNotAllowed()
    if (verb === 'deletecollection' && def.namespaced && namespace === '') throw methodNotAllowed()
    return { def, verb, namespace, name, subresource }
  }

  private authorize (p: ParsedRequest): void {
    const info = { verb: p.verb, resource: resourceKey(p.def), subresource: p.subresource, namespace: p.namespace, name: p.name }
    for (const f of this.forbids) {
      if (!this.matchRecord(f, info)) continue
      const res = p.subresource === '' ? p.def.plural : `${p.def.plural}/${p.subresource}`
      const scope = p.def.namespaced && p.namespace !== '' ? `in the namespace "${p.namespace}"` : 'at the cluster scope'
      throw forbidden(p.def, p.name, `User "${this.opts.user}" cannot ${p.verb} resource "${res}" in API group "${p.def.group}" ${scope}`)
    }
  }

  private async serve (
    req: http.IncomingMessage, res: http.ServerResponse, url: URL, p: ParsedRequest,
    send: (code: number, body: unknown, contentType?: string) => void,
    info: { verb: string, resource: string, subresource: string, namespace: string, name: string },
  ): Promise<void> {
    const { def, namespace, name } = p
    const q = url.searchParams
    switch (p.verb) {
      case 'get': {
        await drain(req)
        const rep = negotiate(req.headers.accept)
        const o = this.store.get(def, namespace, name)
        if (rep.as === 'table') send(200, renderTable(def, resourceKey(def), [o], { apiVersion: rep.apiVersion, includeObject: includeObject(q), resourceVersion: o.metadata.resourceVersion ?? '' }))
        else if (rep.as === 'partial') send(200, { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata })
        else send(200, o)
        return
      }
      case 'list': {
        await drain(req)
        const rep = negotiate(req.headers.accept)
        const limit = q.get('limit')
        const r = this.store.list(def, def.namespaced && namespace !== '' ? namespace : undefined, {
          label: parseLabelSelector(q.get('labelSelector')),
          field: parseFieldSelector(q.get('fieldSelector'), def),
          limit: limit === null || limit === '' ? undefined : Number.parseInt(limit, 10),
          continue: q.get('continue') ?? undefined,
          resourceVersion: q.get('resourceVersion') ?? undefined,
          resourceVersionMatch: q.get('resourceVersionMatch') ?? undefined,
        })
        const metadata: Record<string, unknown> = { resourceVersion: r.resourceVersion }
        if (r.continue !== undefined) metadata.continue = r.continue
        if (r.remainingItemCount !== undefined) metadata.remainingItemCount = r.remainingItemCount
        if (rep.as === 'table') {
          send(200, renderTable(def, resourceKey(def), r.items, { apiVersion: rep.apiVersion, includeObject: includeObject(q), resourceVersion: r.resourceVersion, ...(r.continue === undefined ? {} : { continue: r.continue }), ...(r.remainingItemCount === undefined ? {} : { remainingItemCount: r.remainingItemCount }) }))
        } else if (rep.as === 'partial') {
          send(200, { kind: 'PartialObjectMetadataList', apiVersion: 'meta.k8s.io/v1', metadata, items: r.items.map((o) => ({ kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata })) })
        } else {
          // List items carry no kind/apiVersion, as the real server encodes them.
          send(200, { kind: `${def.kind}List`, apiVersion: apiVersionOf(def), metadata, items: r.items.map(({ kind: _k, apiVersion: _a, ...o }) => o) })
        }
        return
      }
      case 'watch':
        await drain(req)
        this.serveWatch(req, res, q, p, info)
        return
      case 'create': {
        const body = await readJson(req, ['application/json'])
        send(201, this.store.create(def, namespace, body as KubeObject))
        return
      }
      case 'update': {
        const body = await readJson(req, ['application/json'])
        send(200, this.store.update(def, namespace, name, body as KubeObject, p.subresource))
        return
      }
      case 'patch': {
        const ct = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
        const type = PATCH_CONTENT_TYPES[ct]
        if (type === undefined) {
          await drain(req)
          throw unsupportedMediaType(`the body of the request was in an unknown format - accepted media types include: ${Object.keys(PATCH_CONTENT_TYPES).join(', ')}`)
        }
        const body = await readJson(req, undefined)
        send(200, this.store.patch(def, namespace, name, type, body as Json, p.subresource))
        return
      }
      case 'delete': {
        const body = await readJson(req, undefined, true)
        const opts = deleteOptions(body)
        const r = this.store.delete(def, namespace, name, opts)
        if (!r.deleted || def.returnDeletedObject) send(200, r.obj)
        else {
          const d: Record<string, string> = { name, kind: def.plural }
          if (def.group !== '') d.group = def.group
          if (r.obj.metadata.uid !== undefined) d.uid = r.obj.metadata.uid
          send(200, success(d))
        }
        return
      }
      case 'deletecollection': {
        await readJson(req, undefined, true)
        const r = this.store.list(def, namespace === '' ? undefined : namespace, {
          label: parseLabelSelector(q.get('labelSelector')),
          field: parseFieldSelector(q.get('fieldSelector'), def),
        })
        const out: KubeObject[] = []
        for (const o of r.items) {
          try {
            out.push(this.store.delete(def, o.metadata.namespace ?? '', o.metadata.name ?? '').obj)
          } catch (err) {
            if (!(err instanceof ApiStatusError && err.statusCode === 404)) throw err
          }
        }
        send(200, { kind: `${def.kind}List`, apiVersion: apiVersionOf(def), metadata: { resourceVersion: this.resourceVersion }, items: out.map(({ kind: _k, apiVersion: _a, ...o }) => o) })
      }
    }
  }

  private serveWatch (
    req: http.IncomingMessage, res: http.ServerResponse, q: URLSearchParams, p: ParsedRequest,
    info: { verb: string, resource: string, subresource: string, namespace: string, name: string },
  ): void {
    const { def } = p
    const rep = negotiate(req.headers.accept)
    let fieldRaw = q.get('fieldSelector') ?? ''
    if (p.name !== '') fieldRaw = fieldRaw === '' ? `metadata.name=${p.name}` : `${fieldRaw},metadata.name=${p.name}`
    const label = parseLabelSelector(q.get('labelSelector'))
    const field = parseFieldSelector(fieldRaw, def)
    const timeoutRaw = q.get('timeoutSeconds')
    // As kube's watch handler: absent or 0 means the server's default.
    const asked = timeoutRaw === null || timeoutRaw === '' ? 0 : Number(timeoutRaw)
    if (!Number.isInteger(asked) || asked < 0) throw badRequest(`invalid timeoutSeconds: ${String(timeoutRaw)}`)
    const timeoutSeconds = asked === 0 ? this.opts.defaultWatchSeconds : asked
    const bookmarks = truthy(q.get('allowWatchBookmarks'))
    const sendInitialEvents = truthy(q.get('sendInitialEvents'))
    if (sendInitialEvents && q.get('resourceVersionMatch') !== 'NotOlderThan') {
      throw badRequest('sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan')
    }

    let headerDone = false
    let tableHeaders = true
    const start = (): void => {
      if (headerDone) return
      headerDone = true
      res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' })
      res.flushHeaders()
      this.record(req, info, 200)
    }
    const write = (type: string, object: unknown): void => {
      if (res.destroyed || res.writableEnded) return
      start()
      res.write(JSON.stringify({ type, object }) + '\n')
      // A consumer that stops reading is cut rather than buffered without bound.
      if (res.writableLength > WATCH_HIGH_WATER) res.destroy()
    }
    const emit = (type: EventType, o: KubeObject): void => {
      if (rep.as === 'table') {
        write(type, renderTable(def, resourceKey(def), [o], { apiVersion: rep.apiVersion, includeObject: includeObject(q), noHeaders: !tableHeaders, resourceVersion: o.metadata.resourceVersion ?? '' }))
        tableHeaders = false
      } else if (rep.as === 'partial') {
        write(type, { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata })
      } else {
        write(type, o)
      }
    }
    const bookmark = (annotations?: Record<string, string>): void => {
      const metadata: Record<string, unknown> = { resourceVersion: this.resourceVersion }
      if (annotations !== undefined) metadata.annotations = annotations
      write('BOOKMARK', { kind: def.kind, apiVersion: apiVersionOf(def), metadata })
    }

    let unsubscribe: (() => void) | undefined
    try {
      unsubscribe = this.store.watch(def, {
        namespace: def.namespaced && p.namespace !== '' ? p.namespace : undefined,
        label,
        field,
        resourceVersion: q.get('resourceVersion') ?? undefined,
        sendInitialEvents,
      }, emit)
    } catch (err) {
      // Too old an RV: the real watch cache opens the stream and sends one ERROR event with the 410 Status.
      if (err instanceof ApiStatusError && err.statusCode === 410) {
        write('ERROR', err.body)
        res.end()
        return
      }
      throw err
    }
    start()
    if (sendInitialEvents && bookmarks) bookmark({ 'k8s.io/initial-events-end': 'true' })

    let stopped = false
    const timers: NodeJS.Timeout[] = []
    const w: ActiveWatch & { bookmark?: () => void } = {
      res,
      def,
      stop: () => {
        if (stopped) return
        stopped = true
        unsubscribe?.()
        for (const t of timers) clearTimeout(t)
        this.watches.delete(w)
      },
    }
    if (bookmarks) {
      w.bookmark = () => { bookmark() }
      timers.push(setInterval(() => { bookmark() }, this.opts.bookmarkIntervalMs).unref())
    }
    timers.push(setTimeout(() => {
      w.stop()
      res.end()
    }, timeoutSeconds * 1000).unref())
    this.watches.add(w)
    res.on('close', () => { w.stop() })
    res.on('error', () => { w.stop() })
  }
}

function includeObject (q: URLSearchParams): IncludeObject {
  const v = q.get('includeObject')
  return v === 'None' || v === 'Object' ? v : 'Metadata'
}

function deleteOptions (body: unknown): { preconditions?: { uid?: string, resourceVersion?: string } } {
  if (body === undefined || body === null || typeof body !== 'object') return {}
  const pre = (body as { preconditions?: unknown }).preconditions
  if (pre === null || typeof pre !== 'object') return {}
  const out: { uid?: string, resourceVersion?: string } = {}
  const p = pre as Record<string, unknown>
  if (typeof p.uid === 'string') out.uid = p.uid
  if (typeof p.resourceVersion === 'string') out.resourceVersion = p.resourceVersion
  return { preconditions: out }
}

async function readBody (req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const c of req) {
    const b = c as Buffer
    size += b.length
    if (size > MAX_BODY) {
      req.resume()
      throw requestTooLarge(MAX_BODY)
    }
    chunks.push(b)
  }
  return Buffer.concat(chunks)
}

async function drain (req: http.IncomingMessage): Promise<void> {
  if (req.complete) return
  await readBody(req)
}

/** Reads a JSON body. `types`: accepted Content-Types (415 otherwise); undefined: already checked. */
async function readJson (req: http.IncomingMessage, types: string[] | undefined, optional = false): Promise<unknown> {
  const ct = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
  const buf = await readBody(req)
  if (optional && buf.length === 0) return undefined
  if (types !== undefined && ct !== '' && !types.includes(ct)) {
    throw unsupportedMediaType(`the body of the request was in an unknown format - accepted media types include: ${types.join(', ')}`)
  }
  try {
    return JSON.parse(buf.toString('utf8'))
  } catch (err) {
    throw badRequest(`the body of the request could not be decoded as JSON: ${(err as Error).message}`)
  }
}

function nodeObject (o: NodeOptions, cluster: string): KubeObject {
  if (isIP(o.internalIP) === 0) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `node ${o.name}: internalIP must be an IP address, got ${JSON.stringify(o.internalIP)}`)
  const roles = o.roles ?? []
  const labels: Record<string, string> = {
    'beta.kubernetes.io/arch': 'amd64',
    'beta.kubernetes.io/os': 'linux',
    'kubernetes.io/arch': 'amd64',
    'kubernetes.io/hostname': o.name,
    'kubernetes.io/os': 'linux',
  }
  for (const r of roles) labels[`node-role.kubernetes.io/${r}`] = ''
  // kind keeps control-plane nodes out of LB backends (kind's kubeadm config).
  if (roles.includes('control-plane')) labels['node.kubernetes.io/exclude-from-external-load-balancers'] = ''
  Object.assign(labels, o.labels ?? {})
  const ready = o.ready ?? true
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
  const cond = (type: string, status: string, reason: string, message: string): Record<string, string> =>
    ({ type, status, lastHeartbeatTime: now, lastTransitionTime: now, reason, message })
  const spec: Record<string, unknown> = { providerID: `kind://docker/${cluster}/${o.name}` }
  if (roles.includes('control-plane')) spec.taints = [{ key: 'node-role.kubernetes.io/control-plane', effect: 'NoSchedule' }]
  if (o.unschedulable === true) spec.unschedulable = true
  const resources = { cpu: '2', 'ephemeral-storage': '102626232Ki', memory: '8029728Ki', pods: '110' }
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: o.name, labels, annotations: { 'node.alpha.kubernetes.io/ttl': '0', 'volumes.kubernetes.io/controller-managed-attach-detach': 'true' } },
    spec,
    status: {
      addresses: [{ type: 'InternalIP', address: o.internalIP }, { type: 'Hostname', address: o.name }],
      allocatable: resources,
      capacity: resources,
      conditions: [
        cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
        cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
        cond('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
        ready === 'Unknown'
          ? cond('Ready', 'Unknown', 'NodeStatusUnknown', 'Kubelet stopped posting node status.')
          : ready ? cond('Ready', 'True', 'KubeletReady', 'kubelet is posting ready status') : cond('Ready', 'False', 'KubeletNotReady', 'container runtime is down'),
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
      nodeInfo: {
        architecture: 'amd64',
        bootID: '00000000-0000-0000-0000-000000000000',
        containerRuntimeVersion: 'containerd://1.7.24',
        kernelVersion: osRelease(),
        kubeProxyVersion: o.kubeletVersion ?? 'v1.32.0',
        kubeletVersion: o.kubeletVersion ?? 'v1.32.0',
        machineID: '',
        operatingSystem: 'linux',
        osImage: 'Debian GNU/Linux 12 (bookworm)',
        systemUUID: '',
      },
    },
  }
}

/** Starts the test API server on loopback. Close it with `close()`. */
export async function startApiServer (opts: ApiServerOptions = {}): Promise<ApiServer> {
  const s = new ApiServer(opts)
  await s.listen()
  return s
}
