// Backend health: an active checker per backend, passive ejection on connect
// failures, and the per-upstream "every backend is down" state.
//
// A backend is in rotation (`available`) when its active checks say healthy
// AND it is not ejected. The two verdicts are kept apart because they clear
// differently: an active check is the only thing that turns `healthy` back
// on, while an ejection ends on the next passing active check, on a
// successful connect, or (with no active check configured) after a backoff.
//
// Defaults follow cloud-provider-kind's Envoy cluster (anchors.md §1):
// interval 2 s, timeout 3 s, down after 2 failures, up after 1 success.
// Probes start on a fixed period measured start-to-start, even while an
// earlier probe is still waiting on its timeout, so a black-holed node is out
// after at most interval × 2 + timeout = 7 s (a period that waited for each
// probe to finish would need 2 + 3 + 3 = 8 s). A refused connect fails at
// once, so a killed node goes out in at most 2 intervals.

import type { Socket } from 'node:net'
import { InvalidArgumentError, errorCode } from '../errors.js'
import type { Logger } from '../observe/logger.js'
import type { Counter, Gauge, Registry } from '../observe/metrics.js'
import { endpointKey, type AllUnhealthyPolicy, type Endpoint, type HealthCheckSpec } from '../routing/types.js'

export type DialCallback = (err: Error | null, socket?: Socket) => void
/** Opens a connection to an endpoint (direct, or through the relay). The socket comes back paused. */
export type DialFn = (endpoint: Endpoint, timeoutMs: number, cb: DialCallback) => void

export interface HealthTimings {
  /** Start-to-start period of active probes. */
  readonly intervalMs: number
  /** A probe that has not passed within this is failed (connect + response). */
  readonly timeoutMs: number
  /** Consecutive failed probes that take a healthy backend out. */
  readonly unhealthyThreshold: number
  /** Consecutive passing probes that bring an unhealthy backend back. */
  readonly healthyThreshold: number
  /** Consecutive connect failures (client or warm-pool connects) that eject a backend. */
  readonly ejectAfterFailures: number
  /** With no active check: the first ejection lasts this long, doubling per repeat ejection. */
  readonly ejectBaseMs: number
  /** Cap on that doubling. */
  readonly ejectMaxMs: number
}

export const DEFAULT_HEALTH_TIMINGS: HealthTimings = Object.freeze({
  intervalMs: 2000,
  timeoutMs: 3000,
  unhealthyThreshold: 2,
  healthyThreshold: 1,
  ejectAfterFailures: 3,
  ejectBaseMs: 10_000,
  ejectMaxMs: 120_000,
})

/** Fill in defaults and check; throws InvalidArgumentError (KT_ERR_INVALID_ARG). Call once at the boundary. */
export function healthTimings (partial: Partial<HealthTimings> = {}): HealthTimings {
  const t: HealthTimings = { ...DEFAULT_HEALTH_TIMINGS, ...stripUndefined(partial) }
  const positive: Array<keyof HealthTimings> = ['intervalMs', 'timeoutMs', 'unhealthyThreshold', 'healthyThreshold', 'ejectAfterFailures', 'ejectBaseMs', 'ejectMaxMs']
  for (const k of positive) {
    const v = t[k]
    if (!Number.isInteger(v) || v < 1) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `health ${k} must be a positive integer, got ${String(v)}`)
  }
  if (t.ejectMaxMs < t.ejectBaseMs) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `health ejectMaxMs (${t.ejectMaxMs}) is below ejectBaseMs (${t.ejectBaseMs})`)
  return Object.freeze(t)
}

function stripUndefined<T extends object> (o: T): Partial<T> {
  const out: Partial<T> = {}
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v
  return out
}

export type HealthEvent = 'unhealthy' | 'healthy' | 'ejected' | 'readmitted'

/** kube-proxy's health port (routing/compute's KUBE_PROXY_HEALTH_PORT): the default check of every node. */
const KUBE_PROXY_PORT = 10256
let saidNoKubeProxy = false

function isKubeProxyCheck (c: HealthCheckSpec | undefined): boolean {
  return c !== undefined && c.kind === 'http' && c.port === KUBE_PROXY_PORT
}

export interface BackendHealthOptions {
  readonly check: HealthCheckSpec | undefined
  readonly timings: HealthTimings
  readonly dial: DialFn
  /** Called after every change of `healthy` or `ejected`. */
  readonly onChange: (h: BackendHealth, event: HealthEvent, cause: string) => void
  /** Sees every active probe result first; returning true drops it (the group changed the check). */
  readonly onProbe?: (h: BackendHealth, ok: boolean, cause: string) => boolean
  readonly random?: () => number
}

const MAX_STATUS_LINE = 512

/**
 * One backend's health. Starts healthy (optimistic, like a new Envoy host
 * with no check yet): a fresh route works at once, and the first probe runs
 * within one interval (jittered, so the probes of many backends spread out).
 */
export class BackendHealth {
  readonly endpoint: Endpoint
  readonly key: string
  /** The active checks' verdict. Stays true when no active check is configured. */
  healthy = true
  /** Passive verdict: too many consecutive connect failures. */
  ejected = false
  /** Why the last probe or connect failed (errno code, `http 503`, `timeout`), for status and logs. */
  lastFailure: string | undefined
  private check: HealthCheckSpec | undefined
  private readonly timings: HealthTimings
  private readonly dial: DialFn
  private readonly onChange: BackendHealthOptions['onChange']
  private readonly onProbe: BackendHealthOptions['onProbe']
  private readonly random: () => number
  private timer: NodeJS.Timeout | undefined
  private ejectTimer: NodeJS.Timeout | undefined
  private running = false
  private probeSeq = 0
  private appliedSeq = 0
  private inFlight = 0
  private probeFails = 0
  private probeOks = 0
  private connectFails = 0
  private ejections = 0

  constructor (endpoint: Endpoint, opts: BackendHealthOptions) {
    this.endpoint = endpoint
    this.key = endpointKey(endpoint)
    this.check = opts.check
    this.timings = opts.timings
    this.dial = opts.dial
    this.onChange = opts.onChange
    this.onProbe = opts.onProbe
    this.random = opts.random ?? Math.random
  }

  get available (): boolean {
    return this.healthy && !this.ejected
  }

  get checkSpec (): HealthCheckSpec | undefined {
    return this.check
  }

  start (): void {
    if (this.running) return
    this.running = true
    this.schedule(Math.floor(this.random() * this.timings.intervalMs))
  }

  stop (): void {
    this.running = false
    if (this.timer !== undefined) clearTimeout(this.timer)
    if (this.ejectTimer !== undefined) clearTimeout(this.ejectTimer)
    this.timer = undefined
    this.ejectTimer = undefined
  }

  /** Change the active check (table update). The current verdicts stay; probes of the old check are ignored. */
  setCheck (check: HealthCheckSpec | undefined): void {
    if (sameCheck(check, this.check)) return
    this.check = check
    this.appliedSeq = this.probeSeq
    this.probeFails = 0
    this.probeOks = 0
    if (check === undefined && !this.healthy) this.set('healthy', 'active check removed')
    if (this.running) {
      if (this.timer !== undefined) clearTimeout(this.timer)
      this.timer = undefined
      this.schedule(Math.floor(this.random() * this.timings.intervalMs))
    }
  }

  /** A connect to this backend failed (client connect or warm-pool connect). */
  connectFailed (err: unknown): void {
    this.lastFailure = errorCode(err)
    this.connectFails++
    if (!this.ejected && this.connectFails >= this.timings.ejectAfterFailures) this.eject()
  }

  /** A connect to this backend succeeded. */
  connectSucceeded (): void {
    this.connectFails = 0
    if (this.check === undefined) this.ejections = 0
    // Only reachable while ejected under try-all: the backend answered, so it is back.
    if (this.ejected) this.readmit('connect succeeded')
  }

  private eject (): void {
    this.ejected = true
    this.ejections++
    if (this.check === undefined && this.running) {
      // No active check to tell us it is back: readmit after a doubling backoff.
      const ms = Math.min(this.timings.ejectMaxMs, this.timings.ejectBaseMs * 2 ** Math.min(this.ejections - 1, 20))
      this.ejectTimer = setTimeout(onEjectTimer, ms, this)
      this.ejectTimer.unref()
    }
    this.onChange(this, 'ejected', `${this.connectFails} consecutive connect failures (${this.lastFailure ?? 'unknown'})`)
  }

  /** @internal */
  readmit (cause: string): void {
    if (!this.ejected) return
    if (this.ejectTimer !== undefined) clearTimeout(this.ejectTimer)
    this.ejectTimer = undefined
    this.ejected = false
    // Half-open after a timed ejection: one more failure ejects again.
    this.connectFails = cause === 'ejection period over' ? this.timings.ejectAfterFailures - 1 : 0
    this.onChange(this, 'readmitted', cause)
  }

  private schedule (ms: number): void {
    if (!this.running || this.check === undefined) return
    this.timer = setTimeout(onProbeTimer, ms, this)
    this.timer.unref()
  }

  /** @internal */
  tick (): void {
    this.timer = undefined
    const check = this.check
    if (!this.running || check === undefined) return
    this.schedule(this.timings.intervalMs)
    // Probes overlap only while one waits on its timeout; this bounds how many.
    if (this.inFlight > Math.ceil(this.timings.timeoutMs / this.timings.intervalMs)) return
    const seq = ++this.probeSeq
    this.inFlight++
    probe(this.dial, this.endpoint, check, this.timings.timeoutMs, (ok, cause) => {
      this.inFlight--
      this.result(seq, ok, cause)
    })
  }

  private result (seq: number, ok: boolean, cause: string): void {
    // A slow probe finishing after a newer one has been applied is stale news.
    if (!this.running || seq <= this.appliedSeq) return
    this.appliedSeq = seq
    if (this.onProbe?.(this, ok, cause) === true) return
    if (ok) {
      this.probeFails = 0
      this.probeOks++
      if (this.ejected) this.readmit('active check passed')
      if (!this.healthy && this.probeOks >= this.timings.healthyThreshold) this.set('healthy', cause)
    } else {
      this.lastFailure = cause
      this.probeOks = 0
      this.probeFails++
      if (this.healthy && this.probeFails >= this.timings.unhealthyThreshold) this.set('unhealthy', cause)
    }
  }

  private set (event: 'healthy' | 'unhealthy', cause: string): void {
    this.healthy = event === 'healthy'
    this.onChange(this, event, cause)
  }
}

function onProbeTimer (h: BackendHealth): void { h.tick() }
function onEjectTimer (h: BackendHealth): void { h.readmit('ejection period over') }

function sameCheck (a: HealthCheckSpec | undefined, b: HealthCheckSpec | undefined): boolean {
  if (a === undefined || b === undefined) return a === b
  if (a.kind === 'tcp' || b.kind === 'tcp') return a.kind === b.kind
  return a.port === b.port && a.path === b.path
}

/**
 * One active probe. TCP: the connect is the check. HTTP: `GET path` on the
 * check port; only a 2xx status passes (kube-proxy answers 503 while its
 * node has no ready endpoints, though the NodePort may still accept).
 * Calls `done` exactly once, within `timeoutMs`, and leaves no socket open.
 */
export function probe (dial: DialFn, endpoint: Endpoint, check: HealthCheckSpec, timeoutMs: number, done: (ok: boolean, cause: string) => void): void {
  const target: Endpoint = check.kind === 'http' ? { host: endpoint.host, port: check.port } : endpoint
  let finished = false
  let sock: Socket | undefined
  let head = ''
  const finish = (ok: boolean, cause: string): void => {
    if (finished) return
    finished = true
    clearTimeout(timer)
    if (sock !== undefined) { sock.on('error', noop); sock.destroy() }
    done(ok, cause)
  }
  const timer = setTimeout(finish, timeoutMs, false, 'timeout')
  timer.unref()
  dial(target, timeoutMs, (err, s) => {
    if (finished) { if (s !== undefined) { s.on('error', noop); s.destroy() } return }
    if (err !== null || s === undefined) { finish(false, errorCode(err)); return }
    sock = s
    if (check.kind === 'tcp') { finish(true, 'connected'); return }
    s.on('error', (e: Error) => finish(false, errorCode(e)))
    s.on('end', () => finish(false, 'closed before a status line'))
    s.setEncoding('latin1')
    s.on('data', (chunk: string) => {
      head += chunk
      const eol = head.indexOf('\n')
      if (eol === -1) {
        if (head.length > MAX_STATUS_LINE) finish(false, 'no status line')
        return
      }
      // RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
      const m = /^HTTP\/1\.[01] (\d{3})[ \r]/.exec(head.slice(0, eol + 1))
      if (m === null) { finish(false, 'malformed status line'); return }
      const status = Number(m[1])
      finish(status >= 200 && status <= 299, `http ${status}`)
    })
    s.resume()
    const host = target.host.includes(':') ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`
    s.write(`GET ${check.path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: kind-tunnel-health\r\nAccept: */*\r\nConnection: close\r\n\r\n`, 'latin1')
  })
}

function noop (): void {}

export interface HealthGroupOptions {
  /** Upstream id, the `upstream` label. */
  readonly upstream: string
  readonly check: HealthCheckSpec | undefined
  readonly timings: HealthTimings
  readonly dial: DialFn
  readonly logger: Logger
  readonly metrics?: Registry | undefined
  readonly allUnhealthy?: AllUnhealthyPolicy | undefined
  /** Called after a member changes, once the group's own state is updated. */
  readonly onChange?: ((h: BackendHealth, event: HealthEvent) => void) | undefined
  readonly random?: (() => number) | undefined
}

interface GroupMetrics {
  up: Gauge
  ejections: Counter
  allDown: Gauge
}

/**
 * The health of one upstream's backends, and its "every backend is down"
 * state: logged once per transition (not per connection), exposed as the
 * gauge `kt_upstream_all_unhealthy`, and acted on per `allUnhealthy`.
 */
export class HealthGroup {
  readonly upstream: string
  allUnhealthyPolicy: AllUnhealthyPolicy
  private readonly members = new Map<string, BackendHealth>()
  private check: HealthCheckSpec | undefined
  private readonly opts: HealthGroupOptions
  private readonly log: Logger
  private readonly m: GroupMetrics | undefined
  private down = false
  private closed = false
  /** A kube-proxy check answered somewhere: the cluster has kube-proxy. */
  private kubeProxySeen = false
  /** Members whose kube-proxy check was refused (nothing listens on :10256). */
  private readonly kubeProxyRefused = new Set<string>()
  /** Checking the NodePort over TCP instead of kube-proxy's health port. */
  private noKubeProxy = false

  constructor (opts: HealthGroupOptions) {
    this.upstream = opts.upstream
    this.opts = opts
    this.check = opts.check
    this.allUnhealthyPolicy = opts.allUnhealthy ?? 'try-all'
    this.log = opts.logger
    if (opts.metrics !== undefined) {
      this.m = {
        up: opts.metrics.gauge('kt_upstream_backend_up', 'Backend in rotation: 1 healthy and not ejected, 0 out'),
        ejections: opts.metrics.counter('kt_upstream_backend_ejections_total', 'Backends ejected after consecutive connect failures'),
        allDown: opts.metrics.gauge('kt_upstream_all_unhealthy', '1 while every backend of the upstream is out of rotation'),
      }
      this.m.allDown.set({ upstream: this.upstream }, 0)
    }
  }

  /** True while the upstream has backends and none is in rotation. */
  get allUnhealthy (): boolean {
    return this.down
  }

  get size (): number {
    return this.members.size
  }

  get (key: string): BackendHealth | undefined {
    return this.members.get(key)
  }

  /** Track (and start checking) an endpoint; returns the existing tracker when already tracked. */
  add (endpoint: Endpoint): BackendHealth {
    const key = endpointKey(endpoint)
    let h = this.members.get(key)
    if (h !== undefined) return h
    h = new BackendHealth(endpoint, {
      check: this.check,
      timings: this.opts.timings,
      dial: this.opts.dial,
      onChange: (b, ev, cause) => this.changed(b, ev, cause),
      onProbe: (b, ok, cause) => this.probed(b, ok, cause),
      ...(this.opts.random !== undefined ? { random: this.opts.random } : {}),
    })
    this.members.set(key, h)
    this.m?.up.set(this.labels(h), 1)
    if (!this.closed) h.start()
    this.recompute()
    return h
  }

  remove (h: BackendHealth): void {
    if (this.members.get(h.key) !== h) return
    h.stop()
    this.members.delete(h.key)
    this.m?.up.delete(this.labels(h))
    this.recompute()
  }

  setCheck (check: HealthCheckSpec | undefined): void {
    // A table update repeats the kube-proxy check; without kube-proxy, keep the TCP one.
    if (this.noKubeProxy && isKubeProxyCheck(check)) return
    this.noKubeProxy = false
    this.check = check
    for (const h of this.members.values()) h.setCheck(check)
  }

  close (): void {
    this.closed = true
    for (const h of this.members.values()) {
      h.stop()
      this.m?.up.delete(this.labels(h))
    }
    this.members.clear()
    this.m?.allDown.delete({ upstream: this.upstream })
  }

  /**
   * A cluster without kube-proxy (kind's kubeProxyMode: none, e.g. with
   * Cilium's replacement) has nothing on :10256. When that port refuses on
   * every node and never answered anywhere, check the NodePort over TCP
   * instead, and say so once. Until then a refusal there is not counted
   * against the node: it is not yet known whether the node or the cluster
   * lacks kube-proxy.
   */
  private probed (h: BackendHealth, ok: boolean, cause: string): boolean {
    if (this.kubeProxySeen || !isKubeProxyCheck(this.check) || this.members.get(h.key) !== h) return false
    if (ok || cause !== 'ECONNREFUSED') {
      if (ok) this.kubeProxySeen = true
      return false
    }
    this.kubeProxyRefused.add(h.key)
    for (const k of this.members.keys()) if (!this.kubeProxyRefused.has(k)) return true
    const fields = { upstream: this.upstream, backends: this.members.size, check: `tcp NodePort instead of http :${KUBE_PROXY_PORT}/healthz` }
    const msg = `kube-proxy's health port :${KUBE_PROXY_PORT} refuses connections on every node (a cluster without kube-proxy?): checking each node's NodePort over TCP instead`
    if (!saidNoKubeProxy) this.log.warn(fields, msg)
    else this.log.debug(fields, msg)
    saidNoKubeProxy = true
    this.setCheck({ kind: 'tcp' })
    this.noKubeProxy = true
    return true
  }

  private labels (h: BackendHealth): Record<string, string> {
    return { upstream: this.upstream, backend: h.key }
  }

  private changed (h: BackendHealth, event: HealthEvent, cause: string): void {
    if (this.members.get(h.key) !== h) return
    this.m?.up.set(this.labels(h), h.available ? 1 : 0)
    if (event === 'ejected') this.m?.ejections.inc(this.labels(h))
    const fields = { upstream: this.upstream, backend: h.key, event, cause }
    if (h.available) this.log.info(fields, 'backend back in rotation')
    else this.log.warn(fields, 'backend out of rotation')
    this.recompute()
    this.opts.onChange?.(h, event)
  }

  private recompute (): void {
    let any = false
    for (const h of this.members.values()) if (h.available) { any = true; break }
    const down = this.members.size > 0 && !any
    if (down === this.down) return
    this.down = down
    this.m?.allDown.set({ upstream: this.upstream }, down ? 1 : 0)
    if (down) {
      this.log.error({ upstream: this.upstream, allUnhealthy: true, backends: this.members.size, policy: this.allUnhealthyPolicy },
        this.allUnhealthyPolicy === 'refuse'
          ? 'every backend of the upstream is unhealthy: refusing new connections until one recovers'
          : 'every backend of the upstream is unhealthy: trying them all anyway (allUnhealthy: try-all)')
    } else {
      this.log.info({ upstream: this.upstream, allUnhealthy: false }, 'upstream has a healthy backend again')
    }
  }
}
