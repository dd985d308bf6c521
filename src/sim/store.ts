// The object store and its rules: one global resourceVersion bumped on every
// write (as etcd's revision), a bounded window of past events for watches to
// resume from, finalizer-aware deletion, owner-reference garbage collection
// and namespace termination. HTTP-free: the server and the in-process hooks
// both call it.
//
// Over 500 lines: the store's rules (resourceVersion, watch window,
// finalizers, garbage collection, namespace termination) act on one map and
// must change together.

import { randomUUID, randomInt } from 'node:crypto'
import { isDeepStrictEqual } from 'node:util'
import {
  alreadyExists, badRequest, conflict, expired, fieldError, forbidden, invalid, notFound,
  tooLargeResourceVersion, type StatusCause,
} from './status.js'
import {
  RESOURCES, apiVersionOf, nameErrors, resourceKey, type KubeObject, type ObjectMeta, type ResourceDef,
} from './resources.js'
import { CRD_STORAGE, crdStrategy } from './crds.js'
import { AllocationTx, strategies, type ServiceNetwork, type ServiceStrategy, type Strategy } from './strategies.js'
import { applyPatch, type Json, type PatchType } from './patch.js'
import { eventFromCore, eventToCore, validateEventsV1 } from './events.js'
import type { FieldSelector, LabelSelector } from './selectors.js'

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED'

interface StoredEvent {
  type: EventType
  rv: number
  storage: string
  obj: KubeObject
  /** The object before this event (MODIFIED), so selector watches can turn it into ADDED/DELETED. */
  prev: KubeObject | undefined
}

export interface WatchRequest {
  namespace?: string | undefined
  label: LabelSelector
  field: FieldSelector
  /** Undefined or '' or '0': start with ADDED events for the current state. */
  resourceVersion?: string | undefined
  sendInitialEvents?: boolean | undefined
}

export type WatchListener = (type: EventType, obj: KubeObject) => void

interface Sink {
  def: ResourceDef
  req: WatchRequest
  listener: WatchListener
}

export interface ListResult {
  items: KubeObject[]
  resourceVersion: string
  continue?: string
  remainingItemCount?: number
}

export interface ListOptions {
  label: LabelSelector
  field: FieldSelector
  limit?: number | undefined
  continue?: string | undefined
  resourceVersion?: string | undefined
  resourceVersionMatch?: string | undefined
}

export interface DeleteOptions {
  preconditions?: { uid?: string, resourceVersion?: string }
}

export interface DeleteResult {
  obj: KubeObject
  /** False when finalizers hold the object: it now carries a deletionTimestamp. */
  deleted: boolean
}

export interface StoreOptions {
  historySize: number
  network: ServiceNetwork
  now?: () => Date
  /** Every resource served now, custom resources included (default: the built-in ones). */
  catalog?: () => readonly ResourceDef[]
}

const GENERATE_CHARS = 'bcdfghjklmnpqrstvwxz2456789'

function deepFreeze<T> (o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o)
    for (const v of Object.values(o)) deepFreeze(v)
  }
  return o
}

function clone<T> (o: T): T {
  return structuredClone(o)
}

function rfc3339 (d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z')
}

function metaOf (o: unknown): ObjectMeta {
  const m = (o as { metadata?: unknown }).metadata
  return m !== null && typeof m === 'object' && !Array.isArray(m) ? m as ObjectMeta : {}
}

function labelErrors (field: string, m: unknown): StatusCause[] {
  if (m === undefined || m === null) return []
  if (typeof m !== 'object' || Array.isArray(m)) return [fieldError.invalid(field, m, 'must be a map of string keys and values')]
  const errs: StatusCause[] = []
  for (const [k, v] of Object.entries(m as Record<string, unknown>)) {
    const slash = k.indexOf('/')
    const name = slash === -1 ? k : k.slice(slash + 1)
    if (name === '' || name.length > 63 || !/^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(name)) {
      errs.push(fieldError.invalid(field, k, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"))
    }
    if (field === 'metadata.labels' && (typeof v !== 'string' || (v !== '' && (v.length > 63 || !/^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(v))))) {
      errs.push(fieldError.invalid(field, v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"))
    }
    if (field === 'metadata.annotations' && typeof v !== 'string') errs.push(fieldError.invalid(field, v, 'must be a string'))
  }
  return errs
}

export class Store {
  private rv = 0
  /** storage → key (`ns/name` or `name`) → frozen object in stored form. */
  private readonly objects = new Map<string, Map<string, KubeObject>>()
  private readonly uids = new Map<string, { storage: string, key: string }>()
  private history: StoredEvent[] = []
  /** Watches from an RV below this get 410 Expired: the events after it are gone. */
  private minRV = 0
  private readonly sinks = new Set<Sink>()
  /** The namespace whose contents deleteNamespace is deleting right now. */
  private emptying: string | undefined
  private readonly historySize: number
  private readonly now: () => Date
  readonly services: ServiceStrategy
  private readonly strategies: ReadonlyMap<string, Strategy>
  private readonly defs: () => readonly ResourceDef[]

  constructor (opts: StoreOptions) {
    this.defs = opts.catalog ?? (() => RESOURCES)
    this.historySize = opts.historySize
    this.now = opts.now ?? (() => new Date())
    const s = strategies(opts.network)
    this.services = s.services
    this.strategies = new Map([...s.byStorage, [CRD_STORAGE, crdStrategy]])
    for (const r of RESOURCES) if (!this.objects.has(r.storage)) this.objects.set(r.storage, new Map())
  }

  get resourceVersion (): number {
    return this.rv
  }

  /** Number of open watches, per storage key when given. */
  watchCount (def?: ResourceDef): number {
    let n = 0
    for (const s of this.sinks) if (def === undefined || s.def.storage === def.storage) n++
    return n
  }

  // ---- reads ----

  get (def: ResourceDef, namespace: string, name: string): KubeObject {
    const o = this.objects.get(def.storage)?.get(this.key(def, namespace, name))
    if (o === undefined) throw notFound(def, name)
    return this.external(def, o)
  }

  tryGet (def: ResourceDef, namespace: string, name: string): KubeObject | undefined {
    const o = this.objects.get(def.storage)?.get(this.key(def, namespace, name))
    return o === undefined ? undefined : this.external(def, o)
  }

  list (def: ResourceDef, namespace: string | undefined, opts: ListOptions): ListResult {
    const rvReq = this.parseRV(opts.resourceVersion)
    if (rvReq !== undefined && rvReq > this.rv) throw tooLargeResourceVersion(rvReq, this.rv)
    if (opts.resourceVersionMatch === 'Exact' && rvReq !== undefined && rvReq !== this.rv) {
      // Only the present is kept; older snapshots are as good as compacted.
      throw expired(`too old resource version: ${rvReq} (${this.rv})`)
    }
    let listRV = this.rv
    let start = ''
    if (opts.continue !== undefined && opts.continue !== '') {
      const tok = this.decodeContinue(opts.continue)
      if (tok.rv < this.minRV) {
        throw expired('The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.')
      }
      listRV = tok.rv
      start = tok.start
    }
    const all = [...(this.objects.get(def.storage)?.entries() ?? [])]
      .filter(([k, o]) => k >= start && (namespace === undefined || o.metadata.namespace === namespace))
      .sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
    const items: KubeObject[] = []
    let next: string | undefined
    let remaining = 0
    for (const [k, o] of all) {
      if (!opts.label(o.metadata.labels) || !opts.field(o)) continue
      if (opts.limit !== undefined && opts.limit > 0 && items.length >= opts.limit) {
        next ??= k
        remaining++
        continue
      }
      items.push(this.external(def, o))
    }
    const out: ListResult = { items, resourceVersion: String(listRV) }
    if (next !== undefined) {
      out.continue = Buffer.from(JSON.stringify({ v: 'meta.k8s.io/v1', rv: listRV, start: next })).toString('base64')
      out.remainingItemCount = remaining
    }
    return out
  }

  private decodeContinue (tok: string): { rv: number, start: string } {
    try {
      const j = JSON.parse(Buffer.from(tok, 'base64').toString('utf8')) as { v?: unknown, rv?: unknown, start?: unknown }
      if (j.v === 'meta.k8s.io/v1' && typeof j.rv === 'number' && typeof j.start === 'string') return { rv: j.rv, start: j.start }
    } catch {}
    throw badRequest('continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)')
  }

  private parseRV (raw: string | undefined): number | undefined {
    if (raw === undefined || raw === '') return undefined
    if (!/^\d+$/.test(raw)) throw badRequest(`invalid resource version: strconv.ParseUint: parsing ${JSON.stringify(raw)}: invalid syntax`)
    return Number(raw)
  }

  // ---- watch ----

  /**
   * Starts a watch. Throws 410 Expired (`too old resource version`) when the
   * events after the requested RV have left the window, 504 when the RV is
   * in the future. Initial and replayed events are delivered synchronously
   * before this returns, live ones as they happen.
   */
  watch (def: ResourceDef, req: WatchRequest, listener: WatchListener): () => void {
    const rv = this.parseRV(req.resourceVersion)
    if (rv !== undefined && rv > this.rv) throw tooLargeResourceVersion(rv, this.rv)
    if (rv !== undefined && rv !== 0 && rv < this.minRV) throw expired(`too old resource version: ${rv} (${this.minRV})`)
    const sink: Sink = { def, req, listener }
    const ns = req.namespace
    if (rv === undefined || rv === 0 || req.sendInitialEvents === true) {
      for (const o of this.objects.get(def.storage)?.values() ?? []) {
        if ((ns === undefined || o.metadata.namespace === ns) && this.matches(sink, o)) listener('ADDED', this.external(def, o))
      }
    } else {
      for (const ev of this.history) {
        if (ev.rv > rv && ev.storage === def.storage) this.deliver(sink, ev)
      }
    }
    this.sinks.add(sink)
    return () => { this.sinks.delete(sink) }
  }

  private matches (sink: Sink, o: KubeObject): boolean {
    return sink.req.label(o.metadata.labels) && sink.req.field(o)
  }

  // A selector watch sees an object enter (ADDED) and leave (DELETED) its
  // selection, as the watch cache reports it.
  private deliver (sink: Sink, ev: StoredEvent): void {
    const ns = sink.req.namespace
    if (ns !== undefined && ev.obj.metadata.namespace !== ns) return
    const now = this.matches(sink, ev.obj)
    let type: EventType | undefined
    if (ev.type === 'ADDED') type = now ? 'ADDED' : undefined
    else if (ev.type === 'DELETED') type = now ? 'DELETED' : undefined
    else {
      const before = ev.prev !== undefined && this.matches(sink, ev.prev)
      type = before && now ? 'MODIFIED' : now ? 'ADDED' : before ? 'DELETED' : undefined
    }
    if (type === undefined) return
    try {
      sink.listener(type, this.external(sink.def, ev.obj))
    } catch {
      // A listener's failure is its own watch's problem (the HTTP layer ends it), not the writer's.
      this.sinks.delete(sink)
    }
  }

  /** Drops the event window: every watch resume from an older RV now gets 410. */
  compact (): void {
    this.history = []
    this.minRV = this.rv
  }

  // ---- writes ----

  create (def: ResourceDef, namespace: string, body: KubeObject): KubeObject {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('the body of the request must be a JSON object')
    this.checkKind(def, body)
    const meta = metaOf(body)
    if (def.namespaced) {
      if (meta.namespace !== undefined && meta.namespace !== '' && meta.namespace !== namespace) {
        throw badRequest('the namespace of the provided object does not match the namespace sent on the request')
      }
    }
    let o = clone(body)
    if (def.storage !== resourceKey(def)) {
      const errs = validateEventsV1(o)
      if (errs.length > 0) throw invalid(def.kind, def.group, meta.name ?? '', errs)
      o = eventToCore(o)
    }
    const stored = this.storedDef(def)
    const m: ObjectMeta = { ...metaOf(o) }
    if ((m.name === undefined || m.name === '') && typeof m.generateName === 'string' && m.generateName !== '') {
      for (let i = 0; i < 16; i++) {
        let suffix = ''
        for (let j = 0; j < 5; j++) suffix += GENERATE_CHARS[randomInt(GENERATE_CHARS.length)]
        m.name = m.generateName + suffix
        if (!this.objects.get(stored.storage)?.has(this.key(def, namespace, m.name))) break
      }
    }
    const name = m.name ?? ''
    const errs: StatusCause[] = []
    if (name === '') errs.push(fieldError.required('metadata.name', 'name or generateName is required'))
    else for (const e of nameErrors(def.nameRule, name)) errs.push(fieldError.invalid('metadata.name', name, e))
    errs.push(...labelErrors('metadata.labels', m.labels), ...labelErrors('metadata.annotations', m.annotations))
    if (errs.length > 0) throw invalid(def.kind, def.group, name, errs)
    if (def.namespaced) {
      const ns = this.objects.get('namespaces')?.get(namespace)
      if (ns === undefined) throw notFound({ group: '', plural: 'namespaces' }, namespace)
      if (ns.metadata.deletionTimestamp !== undefined) {
        throw forbidden(def, name, `unable to create new content in namespace ${namespace} because it is being terminated`)
      }
    }
    const key = this.key(def, namespace, name)
    if (this.objects.get(stored.storage)?.has(key)) throw alreadyExists(def, name)

    // System fields (rest.FillObjectMetaSystemFields); a client cannot set them.
    delete m.resourceVersion
    delete m.deletionTimestamp
    delete m.deletionGracePeriodSeconds
    delete m.managedFields
    delete m.selfLink
    m.uid = randomUUID()
    m.creationTimestamp = rfc3339(this.now())
    if (def.namespaced) m.namespace = namespace
    else delete m.namespace
    if (def.generation !== 'none') m.generation = 1
    else delete m.generation
    const { apiVersion: _a, kind: _k, metadata: _m, ...rest } = o
    const next: KubeObject = { apiVersion: apiVersionOf(stored), kind: stored.kind, metadata: m, ...rest }

    const strat = this.strategies.get(stored.storage)
    strat?.prepareCreate?.(next)
    strat?.defaults?.(next)
    const verrs = strat?.validate?.(next, undefined) ?? []
    if (verrs.length > 0) throw invalid(def.kind, def.group, name, verrs)
    const tx = new AllocationTx()
    strat?.allocate?.(next, undefined, tx)
    tx.commit()
    return this.external(def, this.put(stored.storage, key, next, 'ADDED', undefined))
  }

  /** PUT. `subresource` 'status' changes only status; the main resource ignores status. */
  update (def: ResourceDef, namespace: string, name: string, body: KubeObject, subresource = ''): KubeObject {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('the body of the request must be a JSON object')
    this.checkKind(def, body)
    const meta = metaOf(body)
    if (meta.name !== undefined && meta.name !== name) throw badRequest(`the name of the object (${meta.name}) does not match the name on the URL (${name})`)
    if (def.namespaced && meta.namespace !== undefined && meta.namespace !== '' && meta.namespace !== namespace) {
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request')
    }
    const stored = this.storedDef(def)
    if (subresource !== '' && !(subresource === 'status' && stored.statusSubresource)) throw badRequest(`${def.plural} have no ${subresource} subresource`)
    const key = this.key(def, namespace, name)
    const cur = this.objects.get(stored.storage)?.get(key)
    if (cur === undefined) throw notFound(def, name)
    if (meta.resourceVersion !== undefined && meta.resourceVersion !== '' && meta.resourceVersion !== cur.metadata.resourceVersion) {
      throw conflict(def, name)
    }
    if (meta.uid !== undefined && meta.uid !== '' && meta.uid !== cur.metadata.uid) {
      throw conflict(def, name, `Precondition failed: UID in precondition: ${meta.uid}, UID in object meta: ${String(cur.metadata.uid)}`)
    }
    let incoming = clone(body)
    if (def.storage !== resourceKey(def)) incoming = eventToCore(incoming)
    const strat = this.strategies.get(stored.storage)
    let next: KubeObject
    if (subresource === 'status') {
      // Status writes keep everything but status (serviceStatusStrategy.PrepareForUpdate).
      next = clone(cur)
      if (incoming.status === undefined) delete next.status
      else next.status = incoming.status
      strat?.defaults?.(next)
      const errs = strat?.validateStatus?.(next) ?? []
      if (errs.length > 0) throw invalid(def.kind, def.group, name, errs)
    } else {
      const { apiVersion: _a, kind: _k, metadata: im, ...rest } = incoming
      const m: ObjectMeta = { ...metaOf({ metadata: im }) }
      // Immutable and system-owned metadata comes from the stored object.
      for (const k of ['uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generation', 'namespace', 'name'] as const) {
        if (cur.metadata[k] === undefined) delete m[k]
        else m[k] = clone(cur.metadata[k]) as never
      }
      delete m.managedFields
      delete m.selfLink
      next = { apiVersion: cur.apiVersion, kind: cur.kind, metadata: m, ...rest }
      if (stored.statusSubresource) {
        if (cur.status === undefined) delete next.status
        else next.status = clone(cur.status)
      }
      const errs: StatusCause[] = [...labelErrors('metadata.labels', m.labels), ...labelErrors('metadata.annotations', m.annotations)]
      if (cur.metadata.deletionTimestamp !== undefined) {
        const added = (m.finalizers ?? []).filter((f) => !(cur.metadata.finalizers ?? []).includes(f))
        if (added.length > 0) errs.push(fieldError.forbidden('metadata.finalizers', `no new finalizers can be added if the object is being deleted, found new finalizers []string{${added.map((f) => JSON.stringify(f)).join(', ')}}`))
      }
      strat?.prepareUpdate?.(next, cur)
      strat?.defaults?.(next)
      errs.push(...(strat?.validate?.(next, cur) ?? []))
      if (errs.length > 0) throw invalid(def.kind, def.group, name, errs)
    }
    if (Array.isArray(next.metadata.finalizers) && next.metadata.finalizers.length === 0) delete next.metadata.finalizers
    next.metadata.resourceVersion = cur.metadata.resourceVersion as string
    // A write that changes nothing is not a write: no new RV, no event (as etcd3's GuaranteedUpdate).
    if (isDeepStrictEqual(next, cur)) return this.external(def, cur)
    if (stored.generation !== 'none' && subresource !== 'status') {
      const changed = stored.generation === 'spec'
        ? !isDeepStrictEqual(next.spec, cur.spec)
        : !isDeepStrictEqual({ ...next, metadata: null }, { ...cur, metadata: null })
      if (changed) next.metadata.generation = (cur.metadata.generation ?? 0) + 1
    }
    const tx = new AllocationTx()
    if (subresource !== 'status') strat?.allocate?.(next, cur, tx)
    tx.commit()
    // Clearing the last finalizer of an object being deleted deletes it: one DELETED event, no MODIFIED.
    if (next.metadata.deletionTimestamp !== undefined && (next.metadata.finalizers ?? []).length === 0) {
      return this.external(def, this.remove(stored.storage, key, next))
    }
    return this.external(def, this.put(stored.storage, key, next, 'MODIFIED', cur))
  }

  /** PATCH: applied to the current object, then written as an update (RV in the patch is a precondition). */
  patch (def: ResourceDef, namespace: string, name: string, type: PatchType, patch: Json, subresource = ''): KubeObject {
    const cur = this.get(def, namespace, name)
    const patched = applyPatch(type, cur as unknown as Json, patch, this.storedDef(def).patchLists)
    if (patched === null || typeof patched !== 'object' || Array.isArray(patched)) throw badRequest('the patch must produce a JSON object')
    const obj = patched as unknown as KubeObject
    // An omitted name or RV means "the one I patched", not "unset".
    const m = metaOf(obj)
    obj.metadata = m
    m.name ??= name
    if (def.namespaced) m.namespace ??= namespace
    return this.update(def, namespace, name, obj, subresource)
  }

  delete (def: ResourceDef, namespace: string, name: string, opts: DeleteOptions = {}): DeleteResult {
    const stored = this.storedDef(def)
    const key = this.key(def, namespace, name)
    const cur = this.objects.get(stored.storage)?.get(key)
    if (cur === undefined) throw notFound(def, name)
    const pre = opts.preconditions
    if (pre?.uid !== undefined && pre.uid !== cur.metadata.uid) {
      throw conflict(def, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${String(cur.metadata.uid)}`)
    }
    if (pre?.resourceVersion !== undefined && pre.resourceVersion !== cur.metadata.resourceVersion) {
      throw conflict(def, name, `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in meta: ${String(cur.metadata.resourceVersion)}`)
    }
    if (stored.storage === 'namespaces') return this.deleteNamespace(cur)
    if ((cur.metadata.finalizers ?? []).length > 0) {
      if (cur.metadata.deletionTimestamp !== undefined) return { obj: this.external(def, cur), deleted: false }
      const next = clone(cur)
      next.metadata.deletionTimestamp = rfc3339(this.now())
      next.metadata.deletionGracePeriodSeconds = 0
      return { obj: this.external(def, this.put(stored.storage, key, next, 'MODIFIED', cur)), deleted: false }
    }
    return { obj: this.external(def, this.remove(stored.storage, key, cur)), deleted: true }
  }

  // Namespace deletion: mark it Terminating, delete its contents; it goes
  // away once nothing is left in it (finalizers may hold contents).
  private deleteNamespace (ns: KubeObject): DeleteResult {
    const nsDef = this.defs().find((r) => r.storage === 'namespaces') as ResourceDef
    const name = ns.metadata.name as string
    let cur = ns
    if (ns.metadata.deletionTimestamp === undefined) {
      const next = clone(ns)
      next.metadata.deletionTimestamp = rfc3339(this.now())
      next.metadata.deletionGracePeriodSeconds = 0
      next.status = { ...(next.status as object), phase: 'Terminating' }
      cur = this.put('namespaces', name, next, 'MODIFIED', ns)
      this.emptying = name
      try {
        for (const r of this.storageDefs()) {
          if (!r.namespaced || r.storage !== resourceKey(r)) continue
          for (const o of [...(this.objects.get(r.storage)?.values() ?? [])]) {
            if (o.metadata.namespace === name) {
              try { this.delete(r, name, o.metadata.name as string) } catch {}
            }
          }
        }
      } finally {
        this.emptying = undefined
      }
    }
    const gone = this.finishNamespace(name)
    return { obj: this.external(nsDef, gone ?? cur), deleted: gone !== undefined }
  }

  private finishNamespace (name: string): KubeObject | undefined {
    const ns = this.objects.get('namespaces')?.get(name)
    if (ns?.metadata.deletionTimestamp === undefined) return undefined
    for (const r of this.storageDefs()) {
      if (!r.namespaced) continue
      for (const o of this.objects.get(r.storage)?.values() ?? []) if (o.metadata.namespace === name) return undefined
    }
    return this.remove('namespaces', name, ns)
  }

  // ---- internals ----

  private storedDef (def: ResourceDef): ResourceDef {
    if (def.storage === resourceKey(def)) return def
    return this.defs().find((r) => resourceKey(r) === def.storage) as ResourceDef
  }

  /** One def per storage (a CRD's versions share one). */
  private storageDefs (): ResourceDef[] {
    const seen = new Set<string>()
    return this.defs().filter((r) => !seen.has(r.storage) && seen.add(r.storage) !== undefined)
  }

  /** A CRD's storage goes away with it: every object is deleted (watchers see DELETED). */
  dropStorage (storage: string): void {
    const m = this.objects.get(storage)
    if (m === undefined) return
    for (const [key, o] of [...m]) this.remove(storage, key, o)
    this.objects.delete(storage)
  }

  private key (def: ResourceDef, namespace: string, name: string): string {
    return def.namespaced ? `${namespace}/${name}` : name
  }

  private checkKind (def: ResourceDef, body: KubeObject): void {
    const kind = body.kind
    const apiVersion = body.apiVersion
    if (kind !== undefined && kind !== def.kind) {
      throw badRequest(`the kind in the data (${String(kind)}) does not match the expected kind (${def.kind})`)
    }
    if (apiVersion !== undefined && apiVersion !== apiVersionOf(def)) {
      throw badRequest(`the API version in the data (${String(apiVersion)}) does not match the expected API version (${apiVersionOf(def)})`)
    }
  }

  /** The object as `def` presents it (events.k8s.io converts), always a fresh copy. */
  private external (def: ResourceDef, o: KubeObject): KubeObject {
    if (def.storage !== resourceKey(def)) return clone(eventFromCore(o))
    // A custom resource is served at every version of its CRD (conversion None).
    if (def.crd !== undefined) return { ...clone(o), apiVersion: apiVersionOf(def) }
    return clone(o)
  }

  private bump (): number {
    this.rv++
    return this.rv
  }

  private record (ev: StoredEvent): void {
    this.history.push(ev)
    while (this.history.length > this.historySize) {
      const dropped = this.history.shift() as StoredEvent
      this.minRV = dropped.rv
    }
    for (const sink of [...this.sinks]) if (sink.def.storage === ev.storage) this.deliver(sink, ev)
  }

  private put (storage: string, key: string, obj: KubeObject, type: 'ADDED' | 'MODIFIED', prev: KubeObject | undefined): KubeObject {
    const rv = this.bump()
    obj.metadata.resourceVersion = String(rv)
    const frozen = deepFreeze(obj)
    let bucket = this.objects.get(storage)
    if (bucket === undefined) this.objects.set(storage, bucket = new Map())
    bucket.set(key, frozen)
    if (typeof frozen.metadata.uid === 'string') this.uids.set(frozen.metadata.uid, { storage, key })
    this.record({ type, rv, storage, obj: frozen, prev })
    return frozen
  }

  private remove (storage: string, key: string, last: KubeObject): KubeObject {
    const rv = this.bump()
    const prev = this.objects.get(storage)?.get(key)
    const gone = clone(last)
    gone.metadata.resourceVersion = String(rv)
    const frozen = deepFreeze(gone)
    this.objects.get(storage)?.delete(key)
    if (typeof frozen.metadata.uid === 'string') this.uids.delete(frozen.metadata.uid)
    this.strategies.get(storage)?.release?.(frozen)
    this.record({ type: 'DELETED', rv, storage, obj: frozen, prev })
    this.collectGarbage(frozen.metadata.uid)
    const ns = frozen.metadata.namespace
    if (ns !== undefined && storage !== 'namespaces' && ns !== this.emptying) this.finishNamespace(ns)
    return frozen
  }

  // The garbage collector's background deletion: a dependent whose owners
  // are all gone is deleted (through its finalizers, if any).
  private collectGarbage (uid: string | undefined): void {
    if (uid === undefined) return
    for (const r of this.storageDefs()) {
      if (r.storage !== resourceKey(r)) continue
      for (const o of [...(this.objects.get(r.storage)?.values() ?? [])]) {
        const owners = o.metadata.ownerReferences ?? []
        if (!owners.some((ref) => ref.uid === uid)) continue
        if (owners.every((ref) => !this.uids.has(ref.uid))) {
          try { this.delete(r, o.metadata.namespace ?? '', o.metadata.name as string) } catch {}
        }
      }
    }
  }
}
