// Informers for the objects the controller reads: Services, Nodes,
// EndpointSlices, and (hostname mode) Ingresses and IngressClasses. Each is a
// client-node ListWatch kept alive by a supervisor:
//
// - Any stop (network error, API server restart, a list that fails, a watch
//   that ends at once) restarts it after a capped, jittered exponential
//   backoff, with a fresh ListWatch, so the restart is always a full re-list.
//   client-node itself gives up after an error (ListWatch.doneHandler only
//   calls the error callbacks), and re-watches at once, with no delay, after
//   a clean end.
// - A 410 Gone (in the stream or as a status) makes the ListWatch re-list on
//   its own; that is counted too.
// - Silence is failure: the watch asks for bookmarks (allowWatchBookmarks)
//   and a server-side timeout, so a live watch hears something every minute
//   or so; one that hears nothing for `silenceMs` is torn down and restarted
//   (a dead TCP path, a proxy that swallowed the FIN).
// - While a restart lists again, readers keep the previous cache: an API
//   outage never looks like "every Service was deleted".
//
// Over 500 lines: one supervisor for five ListWatches, with its backoff,
// silence detection and cache hand-over kept in one place.

import {
  type KubeConfig, type KubernetesListObject, type KubernetesObject, ListWatch, Watch,
} from '@kubernetes/client-node'
import { KtError } from '../errors.js'
import type { Logger } from '../observe/logger.js'
import { Backoff, type BackoffOptions } from './backoff.js'
import { type KubeClients, kubeError, requestOptions, statusCodeOf } from './kube.js'

export interface InformerHealth {
  /** Plural, with the group: `services`, `endpointslices.discovery.k8s.io`. */
  readonly resource: string
  /** Ingresses and IngressClasses: their absence (404) or a refusal (403) is tolerated. */
  readonly optional: boolean
  /** A cache is available (the first list succeeded at least once). */
  readonly synced: boolean
  /** The current ListWatch has listed and is watching. */
  readonly watching: boolean
  /** Optional resource not served or not allowed; treated as empty. */
  readonly absent: boolean
  /** Objects in the cache. */
  readonly objects: number
  /** ISO time of the last watch event or bookmark. */
  readonly lastEventAt?: string
  /** ISO time of the last successful list. */
  readonly lastListAt?: string
  /** Restarts after a failure or a stall. */
  readonly restarts: number
  /** Lists done (the first, every restart, every 410). */
  readonly lists: number
  /** 410 Gone answers seen. */
  readonly gone: number
  /** Watches torn down for silence. */
  readonly stalls: number
  readonly lastError?: { readonly code: string, readonly message: string, readonly at: string }
}

export interface InformerTimings {
  /** No event and no bookmark for this long on an open watch: restart. Default 180 s. */
  readonly silenceMs?: number
  /** Server-side watch timeout, drawn at random in this range (client-go: 5-10 min). Default [300, 600] s. */
  readonly watchTimeoutSeconds?: readonly [number, number]
  /** A watch that ends cleanly sooner than this is a failure (backoff), not a normal end. Default 1000 ms. */
  readonly minWatchMs?: number
  /** Bound on one list request. Default 60 s. */
  readonly listTimeoutMs?: number
  /** Restart backoff. Default 200 ms → 30 s, ±20 %. */
  readonly backoff?: BackoffOptions
  /** A watch that stayed up this long resets the backoff. Default 30 s. */
  readonly backoffResetMs?: number
  /** How often an absent optional resource is looked for again. Default 60 s. */
  readonly absentRetryMs?: number
}

interface Resolved {
  silenceMs: number
  watchTimeoutSeconds: readonly [number, number]
  minWatchMs: number
  listTimeoutMs: number
  backoff: BackoffOptions
  backoffResetMs: number
  absentRetryMs: number
}

function resolveTimings (t: InformerTimings = {}): Resolved {
  return {
    silenceMs: t.silenceMs ?? 180_000,
    watchTimeoutSeconds: t.watchTimeoutSeconds ?? [300, 600],
    minWatchMs: t.minWatchMs ?? 1000,
    listTimeoutMs: t.listTimeoutMs ?? 60_000,
    backoff: t.backoff ?? {},
    backoffResetMs: t.backoffResetMs ?? 30_000,
    absentRetryMs: t.absentRetryMs ?? 60_000,
  }
}

interface WatchHooks {
  started (): void
  /** The server accepted the watch (200): the list and the watch both work. */
  accepted (): void
  line (type: string, obj: unknown): void
  timeoutSeconds (): number
  minWatchMs: number
}

/**
 * client-node's Watch with what ListWatch does not ask for: bookmarks, a
 * server-side timeout, activity tracking, and a kill switch that silences a
 * replaced generation for good (its late callbacks and a fetch that returns
 * after the kill are dropped and aborted).
 */
class TrackedWatch extends Watch {
  #killed = false
  #current: AbortController | undefined
  readonly #hooks: WatchHooks

  constructor (kc: KubeConfig, hooks: WatchHooks) {
    super(kc)
    this.#hooks = hooks
  }

  override async watch (
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: any, watchObj?: any) => void,
    done: (err: any) => void,
  ): Promise<AbortController> {
    if (this.#killed) {
      const c = new AbortController()
      c.abort()
      return c
    }
    // ListWatch calls watch() right after it stored a list: the cache is fresh.
    this.#hooks.started()
    const started = Date.now()
    let gone = false
    const params = { ...queryParams, allowWatchBookmarks: true, timeoutSeconds: this.#hooks.timeoutSeconds() }
    let ctrl: AbortController
    try {
      ctrl = await this.#open(path, params, callback, done, started, () => gone, () => { gone = true })
    } catch (err) {
      // Watch.watch throws (rather than calling done) when the request cannot
      // even be built, e.g. an auth plugin fails. ListWatch would let that
      // escape as an unhandled rejection from a re-watch; report it through
      // done like any other failure.
      const c = new AbortController()
      c.abort()
      queueMicrotask(() => { if (!this.#killed) done(err) })
      return c
    }
    this.#current = ctrl
    if (this.#killed) ctrl.abort()
    else if (!ctrl.signal.aborted) this.#hooks.accepted()
    return ctrl
  }

  async #open (
    path: string,
    params: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: any, watchObj?: any) => void,
    done: (err: any) => void,
    started: number,
    wasGone: () => boolean,
    markGone: () => void,
  ): Promise<AbortController> {
    return await super.watch(path, params, (phase, obj, raw) => {
      if (this.#killed) return
      if (phase === 'ERROR' && (obj as { code?: unknown } | null)?.code === 410) markGone()
      this.#hooks.line(phase, obj)
      callback(phase, obj, raw)
    }, (err: unknown) => {
      if (this.#killed) return
      let e = err
      // A clean end right after the start, without a 410 to explain it: a
      // server or proxy that closes at once. ListWatch would re-watch with no
      // delay, in a tight loop; make it a failure so the backoff applies.
      if ((e === null || e === undefined) && !wasGone() && Date.now() - started < this.#hooks.minWatchMs) {
        e = new KtError('KT_ERR_KUBE_API', `the watch on ${path} ended after ${Date.now() - started} ms`)
      }
      done(e)
    })
  }

  kill (): void {
    this.#killed = true
    this.#current?.abort()
  }
}

interface Generation<T extends KubernetesObject> {
  readonly id: number
  readonly lw: ListWatch<T>
  readonly watch: TrackedWatch
  readonly createdAt: number
  /** Set when the watch opened after a list: the cache is complete. */
  syncedAt: number | undefined
  lastActivity: number
  /** The server-side timeout the current watch asked for. */
  watchTimeoutMs: number
  dead: boolean
}

export interface InformerSpec<T extends KubernetesObject> {
  /** For health and messages: `services`, `endpointslices.discovery.k8s.io`. */
  readonly resource: string
  /** Watch path, e.g. `/api/v1/services`. */
  readonly path: string
  /** One list call with these request options. */
  readonly list: (opts: ReturnType<typeof requestOptions>) => Promise<KubernetesListObject<T>>
  readonly optional?: boolean
  /** Optional and found by discovery (Gateway API): its absence is logged at debug only. */
  readonly quiet?: boolean
}

export interface InformerInit {
  readonly kc: KubeConfig
  readonly logger: Logger
  /** Called (synchronously) after any change to the cache. */
  readonly onChange: () => void
  readonly timings?: InformerTimings
}

export class ResourceInformer<T extends KubernetesObject> {
  readonly resource: string
  readonly optional: boolean
  /** Resolves once a cache is available (or an optional resource is known absent). Rejects with KT_ERR_KUBE_FORBIDDEN if the first list of a required resource is refused; the informer keeps retrying. */
  readonly firstSync: Promise<void>
  readonly #spec: InformerSpec<T>
  readonly #kc: KubeConfig
  readonly #log: Logger
  readonly #onChange: () => void
  readonly #t: Resolved
  readonly #backoff: Backoff
  #current: Generation<T> | undefined
  #visible: Generation<T> | undefined
  #nextId = 1
  #stopped = false
  #restartTimer: NodeJS.Timeout | undefined
  #watchdog: NodeJS.Timeout | undefined
  #resolveSync!: () => void
  #rejectSync!: (err: Error) => void
  #syncSettled = false
  #absent = false
  #restarts = 0
  #lists = 0
  #gone = 0
  #stalls = 0
  #lastEventAt: number | undefined
  #lastListAt: number | undefined
  #lastError: { code: string, message: string, at: number } | undefined
  #lastLoggedCode: string | undefined
  /** A BOOKMARK arrived at least once: this server sends them (the API does not promise it). */
  #bookmarks = false

  constructor (spec: InformerSpec<T>, init: InformerInit) {
    this.#spec = spec
    this.resource = spec.resource
    this.optional = spec.optional === true
    this.#kc = init.kc
    this.#log = init.logger.child({ informer: spec.resource })
    this.#onChange = init.onChange
    this.#t = resolveTimings(init.timings)
    this.#backoff = new Backoff(this.#t.backoff)
    this.firstSync = new Promise<void>((resolve, reject) => {
      this.#resolveSync = resolve
      this.#rejectSync = reject
    })
    // Nobody may be waiting (an optional informer, or stop() before sync).
    this.firstSync.catch(() => {})
  }

  start (): void {
    if (this.#stopped || this.#current !== undefined) return
    const every = Math.max(50, Math.min(5000, Math.floor(this.#t.silenceMs / 4)))
    this.#watchdog = setInterval(() => { this.#checkSilence() }, every)
    this.#watchdog.unref()
    this.#spawn()
  }

  /** The cached objects (the last complete cache while a restart lists again). */
  list (): readonly T[] {
    return this.#visible?.lw.list() ?? []
  }

  get (name: string, namespace?: string): T | undefined {
    return this.#visible?.lw.get(name, namespace)
  }

  get synced (): boolean {
    return this.#visible !== undefined || this.#absent
  }

  health (): InformerHealth {
    const iso = (ms: number | undefined): string | undefined => ms === undefined ? undefined : new Date(ms).toISOString()
    const lastEventAt = iso(this.#lastEventAt)
    const lastListAt = iso(this.#lastListAt)
    const cur = this.#current
    return {
      resource: this.resource,
      optional: this.optional,
      synced: this.synced,
      watching: cur !== undefined && !cur.dead && cur.syncedAt !== undefined,
      absent: this.#absent,
      objects: this.list().length,
      ...(lastEventAt !== undefined ? { lastEventAt } : {}),
      ...(lastListAt !== undefined ? { lastListAt } : {}),
      restarts: this.#restarts,
      lists: this.#lists,
      gone: this.#gone,
      stalls: this.#stalls,
      ...(this.#lastError !== undefined ? { lastError: { code: this.#lastError.code, message: this.#lastError.message, at: new Date(this.#lastError.at).toISOString() } } : {}),
    }
  }

  async stop (): Promise<void> {
    this.#stopped = true
    if (this.#restartTimer !== undefined) clearTimeout(this.#restartTimer)
    if (this.#watchdog !== undefined) clearInterval(this.#watchdog)
    this.#restartTimer = undefined
    this.#watchdog = undefined
    const g = this.#current
    if (g !== undefined) await this.#kill(g)
    if (!this.#syncSettled) {
      this.#syncSettled = true
      this.#rejectSync(new KtError('KT_ERR_KUBE_API', `the ${this.resource} informer was stopped before its first list`))
    }
  }

  #spawn (): void {
    if (this.#stopped) return
    const id = this.#nextId++
    const now = Date.now()
    let gen: Generation<T> | undefined
    const [lo, hi] = this.#t.watchTimeoutSeconds
    const watch = new TrackedWatch(this.#kc, {
      minWatchMs: this.#t.minWatchMs,
      timeoutSeconds: () => {
        const v = Math.round(lo + Math.random() * Math.max(0, hi - lo))
        if (gen !== undefined) gen.watchTimeoutMs = v * 1000
        return v
      },
      started: () => { if (gen !== undefined) this.#watchStarted(gen) },
      accepted: () => { if (gen !== undefined && !gen.dead && gen === this.#current) this.#settleFirstSync() },
      line: (phase, obj) => {
        if (gen === undefined || gen.dead) return
        gen.lastActivity = Date.now()
        this.#lastEventAt = gen.lastActivity
        if (phase === 'BOOKMARK') this.#bookmarks = true
        if (phase === 'ERROR' && (obj as { code?: unknown } | null)?.code === 410) {
          this.#gone++
          this.#log.info({ code: 410 }, `${this.resource}: resourceVersion expired (410 Gone); listing again`)
        }
      },
    })
    const listFn = async (): Promise<KubernetesListObject<T>> => {
      try {
        const l = await this.#spec.list(requestOptions({ timeoutMs: this.#t.listTimeoutMs }))
        this.#lists++
        this.#lastListAt = Date.now()
        return l
      } catch (err) {
        throw kubeError(err, { verb: 'list', resource: this.resource })
      }
    }
    const lw = new ListWatch<T>(this.#spec.path, watch, listFn, false)
    gen = { id, lw, watch, createdAt: now, syncedAt: undefined, lastActivity: now, watchTimeoutMs: hi * 1000, dead: false }
    const g = gen
    const changed = (): void => { if (!g.dead && g === this.#visible) this.#onChange() }
    lw.on('add', changed)
    lw.on('update', changed)
    lw.on('delete', changed)
    lw.on('error', (err: unknown) => { this.#failed(g, err) })
    this.#current = g
    lw.start().catch((err: unknown) => { this.#failed(g, err) })
  }

  #watchStarted (g: Generation<T>): void {
    if (g.dead || g !== this.#current) return
    const now = Date.now()
    g.lastActivity = now
    if (g.syncedAt !== undefined) {
      // A re-watch in the same generation: after a clean end or a 410 re-list.
      return
    }
    g.syncedAt = now
    const previous = this.#visible
    this.#visible = g
    this.#absent = false
    if (previous !== undefined && previous !== g) previous.dead = true
    if (this.#lastError !== undefined) this.#log.info({ generation: g.id }, `${this.resource}: watching again`)
    this.#lastLoggedCode = undefined
    this.#onChange()
  }

  // The first sync is done once the server has accepted a watch too, not
  // only the list: RBAC may allow list but not watch.
  #settleFirstSync (): void {
    if (this.#syncSettled) return
    this.#syncSettled = true
    this.#resolveSync()
  }

  #failed (g: Generation<T>, raw: unknown): void {
    if (this.#stopped || g.dead || g !== this.#current) return
    let err = kubeError(raw, { verb: g.syncedAt === undefined ? 'list' : 'watch', resource: this.resource })
    const status = statusCodeOf(err)
    if (g.syncedAt !== undefined && status === 403) {
      err = new KtError('KT_ERR_KUBE_FORBIDDEN', `kind-tunnel may list ${this.resource} but not watch them: ${err.message}; without watch it never hears of a change (add the watch verb, as in docs/rbac.yaml)`, { cause: err })
    }
    const now = Date.now()
    this.#lastError = { code: err.code, message: err.message, at: now }
    // A watch that stayed up a while proves the path works: start the backoff over.
    if (g.syncedAt !== undefined && now - g.syncedAt >= this.#t.backoffResetMs) this.#backoff.reset()
    let delay = this.#backoff.next()
    const neverSynced = this.#visible === undefined
    if (this.optional && neverSynced && (status === 404 || status === 403 || status === 401)) {
      // Optional and missing (no networking.k8s.io/v1 on this cluster, or no
      // RBAC for it): hostname routing from Ingress hosts is off, nothing else.
      if (!this.#absent && this.#spec.quiet === true) {
        this.#log.debug({ code: err.code, status }, `${this.resource} unavailable (HTTP ${status})`)
      } else if (!this.#absent) {
        this.#log.warn({ code: err.code, status }, `${this.resource} unavailable (HTTP ${status}); Ingress hosts will not be routed until it is`)
      }
      const was = this.#absent
      this.#absent = true
      delay = this.#t.absentRetryMs
      if (!this.#syncSettled) {
        this.#syncSettled = true
        this.#resolveSync()
      }
      if (!was) this.#onChange()
    } else {
      if (!this.#syncSettled && err.code === 'KT_ERR_KUBE_FORBIDDEN') {
        this.#syncSettled = true
        // An optional resource listed but not watchable: hostname routing works from the list.
        if (this.optional && !neverSynced) this.#resolveSync()
        else this.#rejectSync(err)
      }
      // One line per distinct failure, not one per retry. A discovery-driven
      // resource logs at debug: its CRD going away is discovery's to notice,
      // and an outage is what the required informers report.
      if (this.#spec.quiet === true) {
        this.#log.debug({ code: err.code, status }, err.message)
      } else if (this.#lastLoggedCode !== err.code) {
        this.#lastLoggedCode = err.code
        this.#log.warn({ code: err.code, status, retryInMs: delay }, err.message)
      }
    }
    this.#restarts++
    void this.#kill(g)
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined
      this.#spawn()
    }, delay)
    this.#restartTimer.unref()
  }

  async #kill (g: Generation<T>): Promise<void> {
    // Dead: no more events or errors from it. If it is the visible one, its
    // cache stays readable until a newer generation has listed. Late
    // callbacks are dropped by TrackedWatch.
    g.dead = true
    g.watch.kill()
    await g.lw.stop().catch(() => {})
    if (g === this.#current) this.#current = undefined
  }

  #checkSilence (): void {
    const g = this.#current
    if (g === undefined || g.dead || this.#stopped) return
    const now = Date.now()
    // A list hangs no longer than listTimeoutMs (its own timeout); an open
    // watch, or one whose request has not answered yet, must hear something.
    if (g.syncedAt === undefined) return
    // allowWatchBookmarks is a request the server may ignore ("servers may
    // not implement bookmarks"): until one has arrived, a quiet watch is only
    // overdue once the server-side timeout it asked for has passed too.
    const limit = this.#bookmarks ? this.#t.silenceMs : g.watchTimeoutMs + this.#t.silenceMs
    if (now - g.lastActivity <= limit) return
    this.#stalls++
    this.#failed(g, new KtError('KT_ERR_KUBE_WATCH_STALLED', `the ${this.resource} watch was silent for ${Math.round((now - g.lastActivity) / 1000)} s (no event, no bookmark); restarting it`))
  }
}

// ---------------------------------------------------------------- Gateway API

export const GATEWAY_GROUP = 'gateway.networking.k8s.io'
/** Gateway API resources read, and the versions looked at, most preferred first. */
export const GATEWAY_RESOURCES = ['gateways', 'httproutes', 'grpcroutes', 'tlsroutes'] as const
export type GatewayResource = typeof GATEWAY_RESOURCES[number]
const GATEWAY_VERSIONS = ['v1', 'v1beta1', 'v1alpha3', 'v1alpha2']

/**
 * Gateway API objects, watched only while their CRDs are served. Discovery
 * (`GET /apis`, then the group's resource lists; every authenticated user may
 * read them) says which resources exist and at which version: TLSRoute is
 * v1alpha2 in the experimental bundles up to v1.3, and v1 in later ones. A
 * cluster without the CRDs costs one discovery request per `absentRetryMs`,
 * and logs nothing. Namespaces are watched too, for allowedRoutes selectors.
 */
export class GatewayApiInformers {
  readonly #clients: KubeClients
  readonly #init: InformerInit
  readonly #retryMs: number
  readonly #log: Logger
  readonly #informers = new Map<string, { version: string, informer: ResourceInformer<KubernetesObject> }>()
  #timer: NodeJS.Timeout | undefined
  #stopped = false
  #discovered = false
  #resolveFirst!: () => void
  /** The first discovery is done, and the informers it started have a cache (or are absent). */
  readonly firstSync: Promise<void>

  constructor (clients: KubeClients, init: InformerInit) {
    this.#clients = clients
    this.#init = init
    this.#retryMs = init.timings?.absentRetryMs ?? 60_000
    this.#log = init.logger.child({ informer: 'gateway-api' })
    this.firstSync = new Promise<void>((resolve) => { this.#resolveFirst = resolve })
  }

  /** True once the first discovery answered (or failed) and its informers synced. */
  get discovered (): boolean {
    return this.#discovered && [...this.#informers.values()].every((x) => x.informer.synced)
  }

  /** `plural` → version served, for what is watched now. */
  get served (): ReadonlyMap<string, string> {
    const m = new Map<string, string>()
    for (const [k, v] of this.#informers) if (k !== 'namespaces') m.set(k, v.version)
    return m
  }

  get all (): Array<ResourceInformer<KubernetesObject>> {
    return [...this.#informers.values()].map((x) => x.informer)
  }

  list (resource: GatewayResource | 'namespaces'): readonly KubernetesObject[] {
    return this.#informers.get(resource)?.informer.list() ?? []
  }

  start (): void {
    void this.#tick()
  }

  async stop (): Promise<void> {
    this.#stopped = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    await Promise.all([...this.#informers.values()].map(async (x) => await x.informer.stop()))
    this.#informers.clear()
    this.#resolveFirst()
  }

  async #discover (): Promise<Map<string, string>> {
    const want = new Map<string, string>()
    const opts = requestOptions({ timeoutMs: 10_000 })
    const groups = await this.#clients.apis.getAPIVersions({}, opts)
    const g = groups.groups.find((x) => x.name === GATEWAY_GROUP)
    if (g === undefined) return want
    const versions = new Set(g.versions.map((v) => v.version))
    const served = GATEWAY_VERSIONS.filter((v) => versions.has(v))
    // One request per version, at once; the most preferred version wins.
    const lists = await Promise.all(served.map(async (v) => await this.#clients.custom.getAPIResources({ group: GATEWAY_GROUP, version: v }, requestOptions({ timeoutMs: 10_000 }))))
    served.forEach((v, i) => {
      for (const r of lists[i]?.resources ?? []) {
        if ((GATEWAY_RESOURCES as readonly string[]).includes(r.name) && !want.has(r.name)) want.set(r.name, v)
      }
    })
    return want
  }

  async #tick (): Promise<void> {
    if (this.#stopped) return
    let want: Map<string, string> | undefined
    try {
      want = await this.#discover()
    } catch (err) {
      // Discovery is open to every authenticated user; a failure here is an
      // outage the other informers report. Keep what is watched, look again.
      this.#log.debug({ code: kubeError(err, { verb: 'get', resource: 'discovery' }).code }, 'Gateway API discovery failed; retrying')
    }
    if (this.#stopped) return
    let changed = false
    if (want !== undefined) {
      if (want.has('gateways')) want.set('namespaces', 'v1')
      for (const [k, x] of [...this.#informers]) {
        if (want.get(k) === x.version) continue
        this.#informers.delete(k)
        await x.informer.stop()
        changed = true
      }
      for (const [k, version] of want) {
        if (this.#informers.has(k)) continue
        this.#informers.set(k, { version, informer: this.#make(k, version) })
        changed = true
      }
      if (changed) {
        const names = [...this.#informers].filter(([k]) => k !== 'namespaces').map(([k, x]) => `${k}/${x.version}`)
        this.#log.info({ resources: names }, names.length > 0 ? `Gateway API served: watching ${names.join(', ')}` : 'Gateway API no longer served')
      }
    }
    if (!this.#discovered) {
      await Promise.all([...this.#informers.values()].map(async (x) => await x.informer.firstSync.catch(() => {})))
      this.#discovered = true
      this.#resolveFirst()
      changed = true
    }
    if (changed && !this.#stopped) this.#init.onChange()
    if (this.#stopped) return
    this.#timer = setTimeout(() => { this.#timer = undefined; void this.#tick() }, this.#retryMs)
    this.#timer.unref()
  }

  #make (resource: string, version: string): ResourceInformer<KubernetesObject> {
    let inf: ResourceInformer<KubernetesObject>
    if (resource === 'namespaces') {
      inf = new ResourceInformer<KubernetesObject>({
        resource: 'namespaces',
        path: '/api/v1/namespaces',
        list: async (r) => await this.#clients.core.listNamespace({}, r),
        optional: true,
        quiet: true,
      }, this.#init)
    } else {
      inf = new ResourceInformer<KubernetesObject>({
        resource: `${resource}.${GATEWAY_GROUP}`,
        path: `/apis/${GATEWAY_GROUP}/${version}/${resource}`,
        list: async (r) => await this.#clients.custom.listClusterCustomObject({ group: GATEWAY_GROUP, version, plural: resource }, r) as KubernetesListObject<KubernetesObject>,
        optional: true,
        quiet: true,
      }, this.#init)
    }
    inf.start()
    return inf
  }
}

// ---------------------------------------------------------------- the set

export interface ClusterInformers {
  readonly services: ResourceInformer<KubernetesObject>
  readonly nodes: ResourceInformer<KubernetesObject>
  readonly endpointSlices: ResourceInformer<KubernetesObject>
  readonly ingresses: ResourceInformer<KubernetesObject> | undefined
  readonly ingressClasses: ResourceInformer<KubernetesObject> | undefined
  /** Gateway API (hostname mode); its informers come and go with the CRDs. */
  readonly gatewayApi: GatewayApiInformers | undefined
  /** Every informer running now (the Gateway API ones included). */
  readonly all: ReadonlyArray<ResourceInformer<KubernetesObject>>
  /** Every informer has a cache (optional ones may be absent), and Gateway API discovery answered once. */
  readonly ready: boolean
  /** Every informer has a cache (optional ones may be absent). Rejects as the first required informer refused. */
  readonly synced: Promise<void>
  stop (): Promise<void>
}

export interface InformerSetOptions {
  readonly clients: KubeClients
  readonly logger: Logger
  readonly onChange: () => void
  /** Watch Ingresses, IngressClasses and the Gateway API (hostname mode only). */
  readonly ingresses: boolean
  readonly timings?: InformerTimings
}

type Lister = (opts: ReturnType<typeof requestOptions>) => Promise<KubernetesListObject<KubernetesObject>>

export function startInformers (o: InformerSetOptions): ClusterInformers {
  const { core, discovery, networking } = o.clients
  const init: InformerInit = { kc: o.clients.kc, logger: o.logger, onChange: o.onChange, ...(o.timings !== undefined ? { timings: o.timings } : {}) }
  const make = (resource: string, path: string, list: Lister, optional = false): ResourceInformer<KubernetesObject> =>
    new ResourceInformer<KubernetesObject>({ resource, path, list, optional }, init)
  const services = make('services', '/api/v1/services', async (r) => await core.listServiceForAllNamespaces({}, r))
  const nodes = make('nodes', '/api/v1/nodes', async (r) => await core.listNode({}, r))
  const endpointSlices = make('endpointslices.discovery.k8s.io', '/apis/discovery.k8s.io/v1/endpointslices',
    async (r) => await discovery.listEndpointSliceForAllNamespaces({}, r))
  const ingresses = o.ingresses
    ? make('ingresses.networking.k8s.io', '/apis/networking.k8s.io/v1/ingresses', async (r) => await networking.listIngressForAllNamespaces({}, r), true)
    : undefined
  const ingressClasses = o.ingresses
    ? make('ingressclasses.networking.k8s.io', '/apis/networking.k8s.io/v1/ingressclasses', async (r) => await networking.listIngressClass({}, r), true)
    : undefined
  const fixed = [services, nodes, endpointSlices, ...(ingresses !== undefined ? [ingresses] : []), ...(ingressClasses !== undefined ? [ingressClasses] : [])]
  const gatewayApi = o.ingresses ? new GatewayApiInformers(o.clients, init) : undefined
  for (const i of fixed) i.start()
  gatewayApi?.start()
  const synced = Promise.all([...fixed.map(async (i) => await i.firstSync), gatewayApi?.firstSync]).then(() => {})
  synced.catch(() => {})
  return {
    services,
    nodes,
    endpointSlices,
    ingresses,
    ingressClasses,
    gatewayApi,
    get all () { return [...fixed, ...(gatewayApi?.all ?? [])] },
    get ready () { return fixed.every((i) => i.synced) && gatewayApi?.discovered !== false },
    synced,
    stop: async () => { await Promise.all([...fixed.map(async (i) => await i.stop()), gatewayApi?.stop()]) },
  }
}
