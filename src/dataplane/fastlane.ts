// Over 500 lines: the lane's JS side is one state machine (adopt, push,
// hand back, records, counters, slot recycling) over one native handle; its
// pure planning is in lane-plan.ts. Splitting the records fold out is next.
// The native accept+connect lane (issue #8 target 3), JS side. Listeners
// whose every reachable upstream is direct-dialed to IP backends, without PROXY protocol or warm pool, round-robin or
// least-connections, are accepted, connected and spliced by the splicer's
// native worker threads (kt_lane.c, kt_route.c). That includes listeners with hostname
// routes (issue #3): native reads the first flight, parses it with the C port
// of the TS peeker (kt_peek.c), matches the routes pushed from here and picks
// from the matched upstream's group. Every other listener stays on the JS
// path. perf-anchors.md: with JS accepting and connecting, new connections/s
// stop at ~0.70x docker-proxy, ~350 us of JS per connection.
//
// Source ranges (loadBalancerSourceRanges) are enforced natively too: JS
// pushes the listener's set and each route's set with the routes, and the
// worker checks the accepted peer (the listener's right after accept, a
// route's once its name matched), with listener.ts/connection.ts's outcomes.
// Connect latency: the workers count each lane connect into per-backend
// buckets with upstream.ts's bounds; every SYNC_MS (and before a scrape) the
// deltas are folded into kt_upstream_connect_duration_seconds.
//
// Handoff: JS binds the listener exactly as before (EADDRINUSE and the
// `listening` line are unchanged), native dups the listening fd, and JS then
// closes its net.Server. libuv has no way to stop polling a listening handle it
// keeps, and a paused `onconnection` still accepts; closing our handle while the
// dup keeps the socket open means no connection is refused or lost in between
// (they wait in the backlog). Trade-off: the Server object no longer listens, so
// if the listener's config stops being eligible (a route is added on reload) the
// fd is handed back: the Server listens again on a dup of it (`listen({ fd })`).
//
// JS keeps the control plane: it pushes the backends in rotation (re-pushed
// whenever health, ejection or the table changes), caps and timeouts, and reads
// counters every SYNC_MS (cheap: one typed-array fill per listener) into the
// same metric cells the JS path uses. Connect failures arrive as batched events
// and feed passive health; close records arrive the same way, only while the
// access log is on.

import { closeSync, fstatSync } from 'node:fs'
import { constants as osConstants } from 'node:os'
import type { Cell } from '../observe/metrics.js'
import { errorCode, KtError } from '../errors.js'
import { laneBindingOf, type LaneBinding, type NativeSplicer } from './native/index.js'
import { CONN_OUTCOMES, F, LANE_ERRORS, REC, REC_LEN, ROUTE_OUTCOMES, S, S_COUNT, type RouteOutcome } from './vocab.js'
import { logAccess } from './access-log.js'
import { laneIneligibility, lanePlan, MAX_BACKEND_IDS, type LanePlan } from './lane-plan.js'
import type { AcceptPath, DataplaneContext, ListenerConfig, ListenerView } from './context.js'
import { CONNECT_BUCKETS, connectHistogram, type Backend, type Upstream } from './upstream.js'

const SYNC_MS = 100
const MAX_TIMER_MS = 2 ** 31 - 1
/** Bytes of a name carried per REC.name record (read through a byte view). */
const NAME_BYTES_PER_REC = (REC_LEN - F.nameBytes) * 8

const ERRNO_NAMES = new Map<number, string>()
for (const [name, n] of Object.entries(osConstants.errno)) if (!ERRNO_NAMES.has(n)) ERRNO_NAMES.set(n, name)

/** A record's err: an errno, or (below zero) a KT_ERR_* code of the vocabulary. */
function errName (n: number): string {
  if (n < 0) return LANE_ERRORS[-n - 1] ?? 'EUNKNOWN'
  return ERRNO_NAMES.get(n) ?? 'EUNKNOWN'
}

interface Out { cell: Cell, last: number }

/** The native lane's accept path of one listener. */
export class LaneListener implements AcceptPath {
  readonly lane: FastLane
  readonly listener: ListenerView
  readonly handle: object
  readonly id: number
  readonly stats = new Float64Array(S_COUNT)
  /** Lane pairs open now (last read). */
  active = 0
  stopped = false
  private readonly outs: Out[]
  private readonly routeOuts: Out[]
  private readonly accepted: Out
  private readonly bytesIn: Out
  private readonly bytesOut: Out
  private emfile = 0
  private acceptOther = 0
  /** Per native group: the backend ids pushed last (native picks only from these). */
  pushed: Array<readonly number[]> = []
  private configSig = ''
  private routeSig = ''
  private planFor: ListenerConfig | undefined
  private plan: LanePlan | undefined
  /** Backends pushed, by native id, with the upstream each belongs to. */
  readonly byId = new Map<number, { backend: Backend, upstream: Upstream }>()
  /** The default upstream (L4 listeners: the only one). */
  upstream: Upstream | undefined
  /** Upstream of each native group (close records name the group); a hole keeps the upstream it had last. */
  groups: Array<Upstream | undefined> = []
  /** Native group number of each upstream id, kept across reloads (see configure). */
  private slotOf = new Map<string, number>()
  /** A routed name arriving in REC.name records, for the close record that follows. */
  pendingName = ''
  private routeLogAt = 0
  private routeLogSuppressed = 0
  drainTimer: NodeJS.Timeout | undefined
  /** JS is taking the socket back (listen({ fd }) under way). */
  handingBack = false
  /** Settles when the hand-back under way (if any) is done, whether it worked or not (apply waits for it). */
  handBack: Promise<void> | undefined
  /** The config whose hand-back failed: not tried again until the config changes. */
  handBackFailed: ListenerConfig | undefined

  constructor (lane: FastLane, listener: ListenerView, handle: object, id: number) {
    this.lane = lane
    this.listener = listener
    this.handle = handle
    this.id = id
    const l = listener
    this.outs = CONN_OUTCOMES.map((o) => ({ cell: l.outcomeCells[o], last: 0 }))
    this.routeOuts = ROUTE_OUTCOMES.map((o) => ({ cell: l.routeCells[o], last: 0 }))
    this.accepted = { cell: l.accepted, last: 0 }
    this.bytesIn = { cell: l.bytesIn, last: 0 }
    this.bytesOut = { cell: l.bytesOut, last: 0 }
  }

  /** Push caps, timeouts, policy, the backends in rotation of each group and the routes, when they changed. */
  configure (): void {
    const b = this.lane.binding
    const cfg = this.listener.config
    const o = this.listener.opts
    const up = cfg.defaultUpstream
    if (cfg !== this.planFor || this.plan === undefined) {
      this.plan = lanePlan(cfg, (id) => this.listener.ctx.upstreamOf(id)) ?? { routed: false, groups: up === undefined ? [] : [up], defaultGroup: 0, names: [], wild: [], routeGroups: [], routeAcls: [], listenerAcl: -1, aclSets: [] }
      this.planFor = cfg
    }
    const plan = this.plan
    // One policy per listener natively (laneIneligibility requires the groups to agree).
    const policy = (up ?? plan.groups[0])?.policy === 'least-connections' ? 1 : 0
    const sig = `${cfg.maxConnections},${o.connectTimeoutMs},${o.idleTimeoutMs},${o.halfCloseTimeoutMs},${o.connectAttempts},${policy},${o.accessLog ? 1 : 0}`
    if (sig !== this.configSig) {
      this.configSig = sig
      b.laneConfigure(this.handle, Math.min(cfg.maxConnections, 2 ** 31 - 1), o.connectTimeoutMs, o.idleTimeoutMs, o.halfCloseTimeoutMs, o.connectAttempts, policy, o.accessLog ? 1 : 0)
    }
    this.upstream = up
    // Native group numbers. JS pushes each group's backends, then the routes;
    // the workers keep matching with the routes pushed last until then. A group
    // number that changed upstream on reload (a route removed or reordered)
    // sent names to another Service's backends in between (review finding,
    // test/fastlane/reload-route-groups.test.ts). So an upstream keeps its
    // number while the listener lives, and a new upstream never takes a number
    // the routes pushed last can still point at: numbers freed now are reused
    // from the next configure on. Builds without routes read group 0 only.
    const slots: number[] = []
    const next = new Map<string, number>()
    const taken = new Set<number>(this.slotOf.values())
    for (const gu of plan.groups) {
      let slot = next.get(gu.id) ?? this.slotOf.get(gu.id)
      if (slot === undefined) { slot = 0; while (taken.has(slot)) slot++ }
      taken.add(slot)
      next.set(gu.id, slot)
      slots.push(slot)
    }
    this.slotOf = next
    const nGroups = Math.max(1, ...slots.map((x) => x + 1))
    const groups = this.groups.slice(0, nGroups)
    for (let g = 0; g < plan.groups.length; g++) groups[slots[g] as number] = plan.groups[g]
    this.groups = groups
    // Backends first, then routes: a route is never pushed before its group has backends.
    for (let g = 0; g < plan.groups.length; g++) {
      const gu = plan.groups[g] as Upstream
      const slot = slots[g] as number
      // The candidates, as Upstream.pick sees them: backends in rotation; when
      // every one is down, all of them under try-all, none under refuse.
      const all = gu.backends
      let list = all.filter((x) => x.available)
      if (list.length === 0 && gu.allUnhealthy && gu.noBackendCode === 'KT_ERR_NO_BACKEND') list = all
      const ids: number[] = []
      const hosts: string[] = []
      const ports: number[] = []
      for (const x of list) {
        const id = this.lane.backendId(gu, x)
        ids.push(id)
        hosts.push(x.endpoint.host)
        ports.push(x.endpoint.port)
        // Kept until the id is recycled (FastLane.recycle): records about it may still come.
        this.byId.set(id, { backend: x, upstream: gu })
      }
      if (!sameIds(ids, this.pushed[slot])) {
        this.pushed[slot] = ids
        if (slot === 0) b.laneSetBackends(this.handle, ids, hosts, ports)
        else b.laneSetBackends(this.handle, ids, hosts, ports, slot)
      }
    }
    {
      const peekMs = Math.min(o.peekTimeoutMs, MAX_TIMER_MS)
      const defaultGroup = plan.defaultGroup < 0 ? -1 : slots[plan.defaultGroup] ?? -1
      const routeGroups = plan.routeGroups.map((g) => slots[g] as number)
      const rsig = `${plan.routed ? 1 : 0}|${defaultGroup}|${peekMs}|${nGroups}|${plan.names.join(',')}|${plan.wild.join('')}|${routeGroups.join(',')}` +
        `|${plan.listenerAcl}|${plan.routeAcls.join(',')}|${plan.aclSets.map((x) => x.join(',')).join(';')}`
      if (rsig !== this.routeSig) {
        this.routeSig = rsig
        // Routes and source ranges in one call: native swaps them together under the listener's lock.
        b.laneSetRoutes(this.handle, plan.routed ? 1 : 0, [...plan.names], [...plan.wild], routeGroups, defaultGroup, peekMs, nGroups, [...plan.routeAcls], plan.listenerAcl, plan.aclSets.map((x) => [...x]))
      }
    }
    // Native frees the groups past nGroups: a number reused later is pushed again.
    this.pushed.length = nGroups
  }

  /** A peek timeout, too_large or no_route (a REC.route record): logged at most once a second per listener. */
  routeRecord (outcome: RouteOutcome, toDefault: boolean, client: string, clientPort: number, bytes: number): void {
    const now = Date.now()
    if (now - this.routeLogAt < 1000) { this.routeLogSuppressed++; return }
    this.routeLogAt = now
    const suppressed = this.routeLogSuppressed
    this.routeLogSuppressed = 0
    this.listener.ctx.log.info({ listener: this.listener.name, route: outcome, to: toDefault ? 'default' : 'closed', client, clientPort, peeked: bytes, suppressed },
      'no name routed the connection; sent to the default route or closed')
  }

  /** Fold the native counters into the listener's metric cells (deltas since the last read). */
  sync (): void {
    const s = this.stats
    this.lane.binding.laneStats(this.handle, s)
    add(this.accepted, s[S.accepted] as number)
    for (let i = 0; i < this.outs.length; i++) add(this.outs[i] as Out, s[S.outcomes + i] as number)
    for (let i = 0; i < this.routeOuts.length; i++) add(this.routeOuts[i] as Out, s[S.routes + i] as number)
    add(this.bytesIn, s[S.bytesIn] as number)
    add(this.bytesOut, s[S.bytesOut] as number)
    this.lane.noteDropped(s[S.dropped] as number)
    const active = s[S.active] as number
    this.listener.ctx.activeCount += active - this.active
    this.active = active
    const m = this.listener.ctx
    const emfile = s[S.emfile] as number
    if (emfile > this.emfile) {
      m.m.acceptErrors.inc({ listener: this.listener.name, code: 'EMFILE' }, emfile - this.emfile)
      this.emfile = emfile
      m.fdExhausted('EMFILE')
    }
    const other = s[S.acceptOther] as number
    if (other > this.acceptOther) {
      m.m.acceptErrors.inc({ listener: this.listener.name, code: 'ECONNABORTED' }, other - this.acceptOther)
      this.acceptOther = other
    }
  }

  /** The listener's config or health changed: push it, or hand the socket back to JS (settles once JS listens). */
  reconfigure (): Promise<void> | undefined {
    if (this.stopped) return undefined
    this.lane.reconfigure(this)
    return this.handingBack ? this.handBack : undefined
  }

  stop (): void {
    if (this.stopped) return
    this.stopped = true
    this.lane.binding.laneStop(this.handle)
  }

  /** Reset every pair of this listener now. */
  abort (): void {
    this.lane.binding.laneAbort(this.handle)
  }

  drain (ms: number): void {
    if (this.drainTimer !== undefined) return
    this.drainTimer = setTimeout(() => { this.abort() }, ms)
    this.drainTimer.unref()
  }
}

function sameIds (a: readonly number[], b: readonly number[] | undefined): boolean {
  if (b === undefined || a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function add (o: Out, now: number): void {
  if (now > o.last) { o.cell.inc(now - o.last); o.last = now }
}

export class FastLane {
  readonly binding: LaneBinding
  readonly handle: object
  readonly ctx: DataplaneContext
  /** Lane listeners, open or still draining. */
  readonly listeners = new Set<LaneListener>()
  private readonly byId = new Map<number, LaneListener>()
  /** Backend id by upstream and backend key. An id is a native slot (low 16 bits) and the slot's generation. */
  private readonly backendIds = new Map<string, number>()
  private readonly keyOfId = new Map<number, string>()
  private readonly slotGen = new Uint16Array(MAX_BACKEND_IDS)
  private readonly freeSlots: number[] = []
  private nextSlot = 0
  private readonly backendActive = new Map<Backend, number>()
  /** Per backend id: the Backend (labels, connectCell) and the last connect stats read. */
  private readonly connectHist = new Map<number, { backend: Backend, last: Float64Array }>()
  private readonly connectStats = new Float64Array(CONNECT_BUCKETS.length + 2)
  private nextListenerId = 1
  /** Records the workers could not queue (kt_native_events_dropped_total). */
  private readonly dropped: Cell
  private droppedSeen = 0
  private timer: NodeJS.Timeout | undefined
  private refd = false
  private closed = false

  constructor (ctx: DataplaneContext, binding: LaneBinding, engines: object[]) {
    this.ctx = ctx
    this.binding = binding
    this.handle = binding.createLane(engines, (recs) => { this.onEvents(recs) }, CONNECT_BUCKETS)
    this.dropped = ctx.m.nativeDropped
  }

  /**
   * Take a freshly bound listener if its config is eligible: native dups the
   * fd, then the JS server closes (see the header). Returns undefined (the JS
   * path keeps it) when not eligible or when native refuses the fd.
   */
  adopt (l: ListenerView): LaneListener | undefined {
    if (this.closed || this.ineligibility(l) !== undefined) return undefined
    const fd = (l.server as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd
    if (typeof fd !== 'number' || fd < 0) return undefined
    const id = this.nextListenerId++
    let handle: object
    // The workers start accepting only once the source ranges and backends
    // below are pushed (a client waiting in the backlog must not get past
    // ranges that are not in place yet).
    try {
      handle = this.binding.laneListen(this.handle, id, fd, false)
    } catch (err) {
      this.ctx.log.warn({ listener: l.name, code: errorCode(err) }, 'native accept lane refused the listener; accepting in JS')
      return undefined
    }
    const ll = new LaneListener(this, l, handle, id)
    ll.configure()
    this.binding.laneStart(handle)
    // From here native accepts. Nothing else can accept in between: this runs in
    // the listen callback, before libuv polls the new handle.
    l.server.close()
    this.listeners.add(ll)
    this.byId.set(id, ll)
    this.pushCap()
    this.schedule()
    return ll
  }

  /**
   * The listener's config changed (reload). Still eligible: push it. Not any
   * more: native stops accepting and the JS server listens again on the same
   * socket (a dup, so the port is never released).
   */
  reconfigure (ll: LaneListener): boolean {
    // Called from apply, a timer and the workers' events: nothing may be thrown
    // from here (from the last two it would end the process).
    try {
      return this.reconfigureNow(ll)
    } catch (err) {
      this.ctx.log.error({ listener: ll.listener.name, code: errorCode(err) }, `cannot push the listener's config to the native accept lane: ${(err as Error).message}`)
      return true
    }
  }

  private reconfigureNow (ll: LaneListener): boolean {
    const l = ll.listener
    if (this.ineligibility(l) === undefined) {
      ll.configure()
      this.recycle()
      return true
    }
    // A hand-back under way, or one that failed for this very config: the lane keeps what it has.
    if (ll.handingBack || ll.handBackFailed === l.config) return true
    // Our own reference first: the workers close theirs once they stopped.
    let fd: number
    try { fd = this.binding.laneDupFd(ll.handle) } catch (err) {
      this.handBackFailed(ll, err)
      return true
    }
    // JS listens on the dup first; native stops accepting only once JS does,
    // so the port is never left without an acceptor. Until then the lane keeps
    // the config it had (the new one is not one it can carry).
    const server = l.server
    let st: { dev: number, ino: number } | undefined
    try { st = fstatSync(fd) } catch { /* listen reports it */ }
    let settle = (): void => {}
    ll.handBack = new Promise<void>((resolve) => { settle = resolve })
    const onError = (err: Error): void => {
      server.off('listening', onListening)
      ll.handingBack = false
      settle()
      // Node closes the descriptor itself when it failed after adopting it:
      // close it here only if it still is our dup (the same socket).
      try { const now = fstatSync(fd); if (st !== undefined && now.dev === st.dev && now.ino === st.ino) closeSync(fd) } catch { /* already closed */ }
      this.handBackFailed(ll, err)
    }
    const onListening = (): void => {
      server.off('error', onError)
      ll.handingBack = false
      ll.stop()
      settle()
    }
    ll.handingBack = true
    server.once('error', onError)
    server.once('listening', onListening)
    server.listen({ fd, backlog: 4096 })
    return false
  }

  private handBackFailed (ll: LaneListener, err: unknown): void {
    ll.handBackFailed = ll.listener.config
    this.ctx.log.error({ listener: ll.listener.name, code: errorCode(err) },
      `cannot hand the listener back to JS (${(err as Error).message}); it stays on the native lane with the config it had`)
  }

  /** Why this listener is not on the lane (undefined: eligible). */
  ineligibility (l: ListenerView): string | undefined {
    return laneIneligibility(l.config, l.opts.poolSize, (id) => this.ctx.upstreamOf(id))
  }

  /**
   * The lane's id for a backend of an upstream. Ids are recycled (issue 15: a
   * long-lived `up` whose endpoints churn ran out of the 65,536 native slots):
   * a slot is reused once no listener pushes its id and no lane pair holds it,
   * with the next generation, so records still in flight about the old backend
   * match no id JS knows.
   */
  backendId (up: Upstream, b: Backend): number {
    const key = `${up.id}\u0000${b.key}`
    let id = this.backendIds.get(key)
    if (id === undefined) {
      let slot = this.freeSlots.pop() ?? (this.nextSlot < MAX_BACKEND_IDS ? this.nextSlot++ : undefined)
      if (slot === undefined) { this.recycle(); slot = this.freeSlots.pop() }
      if (slot === undefined) throw new KtError('KT_ERR_NATIVE_LANE_FULL', `the native accept lane has ${MAX_BACKEND_IDS} backends in use`)
      id = slot + MAX_BACKEND_IDS * (this.slotGen[slot] as number)
      this.backendIds.set(key, id)
      this.keyOfId.set(id, key)
      // A reused slot's native histogram holds its last backend's connects: count from here.
      const last = new Float64Array(this.connectStats.length)
      this.binding.laneConnectStats(this.handle, id, last)
      this.connectHist.set(id, { backend: b, last })
      return id
    }
    // The latest Backend object under this id: its labels (upstream, backend) are the same across reloads.
    const h = this.connectHist.get(id)
    if (h !== undefined) h.backend = b
    return id
  }

  /** Give back the slots of ids no listener pushes any more and no lane pair holds. */
  recycle (): void {
    const inUse = new Set<number>()
    for (const ll of this.listeners) for (const ids of ll.pushed) if (ids !== undefined) for (const id of ids) inUse.add(id)
    for (const [id, key] of this.keyOfId) {
      if (inUse.has(id) || !this.binding.laneBackendFree(this.handle, id)) continue
      this.keyOfId.delete(id)
      this.backendIds.delete(key)
      const h = this.connectHist.get(id)
      this.connectHist.delete(id)
      for (const ll of this.listeners) ll.byId.delete(id)
      const b = h?.backend
      const last = b === undefined ? 0 : this.backendActive.get(b) ?? 0
      if (b !== undefined && last !== 0) { b.active -= last; this.backendActive.delete(b) }
      const slot = id % MAX_BACKEND_IDS
      this.slotGen[slot] = ((this.slotGen[slot] as number) + 1) & 0x7fff
      this.freeSlots.push(slot)
    }
  }

  /**
   * Fold the lane's connect latencies into kt_upstream_connect_duration_seconds
   * (the cell JS dials observe, labels upstream and backend): per backend id,
   * the bucket and sum deltas since the last read. The count is the sum of the
   * bucket deltas, so the buckets and the count always agree.
   */
  private foldConnects (): void {
    const out = this.connectStats
    const hist = connectHistogram(this.ctx.metrics)
    for (const [id, h] of this.connectHist) {
      if (!this.binding.laneConnectStats(this.handle, id, out)) continue
      let n = 0
      let cell
      for (let i = 1; i < out.length; i++) {
        const d = (out[i] as number) - (h.last[i] as number)
        if (d <= 0) continue
        cell ??= (h.backend.connectCell ??= hist.bind(h.backend.labels))
        // Index i - 1: a bound of CONNECT_BUCKETS; the last index is past every bound (counted in +Inf only).
        if (i - 1 < cell.counts.length) cell.counts[i - 1] = (cell.counts[i - 1] as number) + d
        n += d
      }
      if (n === 0 || cell === undefined) continue
      cell.count += n
      cell.sum += (out[0] as number) - (h.last[0] as number)
      h.last.set(out)
    }
  }

  /** Records from the workers: connect failures (passive health), successes after failures, close records. */
  private onEvents (r: Float64Array): void {
    const m = this.ctx
    for (let i = 0; i + REC_LEN <= r.length; i += REC_LEN) {
      const type = r[i + F.type] as number
      const ll = this.byId.get(r[i + F.listener] as number)
      if (ll === undefined) continue
      if (type === REC.name) {
        const n = Math.min(r[i + F.backend] as number, NAME_BYTES_PER_REC)
        ll.pendingName += Buffer.from(r.buffer, r.byteOffset + (i + F.nameBytes) * 8, n).toString('latin1')
        continue
      }
      if (type === REC.route) {
        ll.routeRecord(ROUTE_OUTCOMES[r[i + F.route] as number] ?? 'no_route', (r[i + F.group] as number) >= 0, formatAddress(r, i), r[i + F.clientPort] as number, r[i + F.attempts] as number)
        continue
      }
      const entry = ll.byId.get(r[i + F.backend] as number)
      const backend = entry?.backend
      if (type === REC.connectErr) {
        const code = errName(r[i + F.err] as number)
        m.m.connectErrors.inc({ upstream: entry?.upstream.id ?? ll.upstream?.id ?? '', backend: backend?.key ?? '', code })
        if (code === 'EMFILE' || code === 'ENFILE') m.fdExhausted(code)
        else if (backend !== undefined && code !== 'KT_ERR_NO_BACKEND') { backend.health.connectFailed({ code }) }
      } else if (type === REC.connectOk) {
        if (backend !== undefined) backend.health.connectSucceeded()
      } else if (type === REC.close) {
        this.closeRecord(ll, backend, r, i)
      }
    }
    // An ejection or readmission reaches the lane through Upstream's onHealthChange (healthChanged).
  }

  private closeRecord (ll: LaneListener, backend: Backend | undefined, r: Float64Array, i: number): void {
    const m = this.ctx
    const ms = r[i + F.ms] as number
    const name = ll.pendingName === '' ? undefined : ll.pendingName
    ll.pendingName = ''
    m.m.duration.observe(undefined, ms / 1000)
    if (!m.opts.accessLog) return
    const outcome = CONN_OUTCOMES[r[i + F.outcome] as number] ?? 'error'
    const err = r[i + F.err] as number
    // route -1: an L4 listener (no decision); group -1: closed without an upstream.
    const rv = r[i + F.route] as number
    const route = rv < 0 ? 'default' : ROUTE_OUTCOMES[rv] ?? 'default'
    const group = r[i + F.group] as number
    const up = rv < 0 ? ll.upstream : group >= 0 ? ll.groups[group] : undefined
    logAccess(m.accessLog, {
      listener: ll.listener.name,
      client: formatAddress(r, i),
      clientPort: r[i + F.clientPort] as number,
      route,
      name,
      upstream: up?.id,
      backend: backend?.key,
      attempts: r[i + F.attempts] as number,
      bytesIn: r[i + F.bytesIn] as number,
      bytesOut: r[i + F.bytesOut] as number,
      ms,
      cause: outcome,
      error: err !== 0 ? errName(err) : undefined,
    })
  }

  /**
   * A backend of `up` went in or out of rotation: re-push the lists of the
   * listeners that route to it (the lane is reconfigured on apply and on
   * these events, not polled).
   */
  healthChanged (up: Upstream): void {
    for (const ll of this.listeners) if (!ll.stopped && ll.groups.includes(up)) this.reconfigure(ll)
  }

  /** Fold the native counters in now (readers that must not see a value up to SYNC_MS old: drain, status). */
  sync (): void {
    if (this.closed) return
    for (const ll of this.listeners) ll.sync()
    this.foldConnects()
  }

  /** Fold counters, re-push backends (health may have changed), keep the process up while anything is open. */
  tick (): void {
    let laneActive = 0
    this.foldConnects()
    for (const ll of this.listeners) {
      ll.sync()
      laneActive += ll.active
      if (ll.stopped && ll.active === 0) {
        if (ll.drainTimer !== undefined) clearTimeout(ll.drainTimer)
        this.listeners.delete(ll)
        this.byId.delete(ll.id)
      }
    }
    // Backend active counts: JS connections count themselves; add the lane's.
    for (const ll of this.listeners) {
      for (const [id, { backend: b }] of ll.byId) {
        const now = this.binding.laneBackendActive(this.handle, id)
        const last = this.backendActive.get(b) ?? 0
        if (now !== last) { b.active += now - last; this.backendActive.set(b, now) }
      }
    }
    this.pushCap(laneActive)
    this.schedule()
  }

  /**
   * The global cap covers JS and lane connections alike: leave the lane what JS
   * connections do not use (their count is pushed every SYNC_MS, so it may lag that much).
   */
  private pushCap (laneActive = this.active): void {
    const m = this.ctx
    this.binding.laneSetCap(this.handle, Math.max(0, m.opts.maxConnections - (m.activeCount - laneActive)))
  }

  private schedule (): void {
    const busy = this.listeners.size > 0
    if (busy !== this.refd && !this.closed) {
      this.refd = busy
      // JS closed its server handles: this keeps the process up while lane listeners or pairs live.
      this.binding.laneRef(this.handle, busy)
    }
    if (this.timer === undefined && busy) {
      this.timer = setTimeout(() => { this.timer = undefined; this.tick() }, SYNC_MS)
      this.timer.unref()
    }
  }

  /** The lane-wide count of records dropped (every listener's stats carry it). */
  noteDropped (n: number): void {
    if (n > this.droppedSeen) { this.dropped.inc(n - this.droppedSeen); this.droppedSeen = n }
  }

  /** Lane pairs open now, over every listener (last read). */
  get active (): number {
    let n = 0
    for (const ll of this.listeners) n += ll.active
    return n
  }

  close (): void {
    if (this.closed) return
    for (const ll of this.listeners) { ll.stop(); ll.abort() }
    this.tick()
    this.closed = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.binding.laneRef(this.handle, false)
    this.binding.laneClose(this.handle)
  }
}

function formatAddress (r: Float64Array, i: number): string {
  const w = [r[i + F.clientW0] as number, r[i + F.clientW1] as number, r[i + F.clientW2] as number, r[i + F.clientW3] as number]
  if (r[i + F.clientFamily] === 4) { const a = w[0] as number; return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}` }
  const parts: string[] = []
  for (const x of w) parts.push(((x >>> 16) & 0xffff).toString(16), (x & 0xffff).toString(16))
  return parts.join(':').replace(/(^|:)0(:0)+(:|$)/, '::')
}

/** The lane for a manager, or undefined (JS accepts everything) when off, disabled by KT_NATIVE_ACCEPT=0, or the addon lacks it. */
export function createFastLane (ctx: DataplaneContext, splicer: NativeSplicer | undefined, mode: 'auto' | 'off' | undefined): FastLane | undefined {
  const env = process.env['KT_NATIVE_ACCEPT']
  if (env === '0' || splicer === undefined) return undefined
  // Managers built without a say (tests, embedders) follow KT_NATIVE_ACCEPT=1; the CLI passes --native-accept.
  if ((mode ?? (env === '1' ? 'auto' : 'off')) === 'off') return undefined
  const lb = laneBindingOf(splicer)
  if (lb === undefined) return undefined
  return new FastLane(ctx, lb.binding, lb.engines)
}

