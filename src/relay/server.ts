// The relay server: runs inside the relay container on the kind network and
// forwards authenticated connections to the cluster's NodePorts.
//
// Per connection (protocol v2): AUTH (HMAC of a fresh timestamp and nonce
// under the token, checked in constant time; stale timestamps and replayed
// nonces refused) → OK only when the host asked (ACK, its warm pool), then
// BIND (destination, optional source) → the destination is checked against
// the allowlist BEFORE any dial → dial with a deadline → splice, with the
// client's bytes that came along written first. Success is silent unless the
// host asked (ANSWER). A refusal the host waits for is a status then close;
// any other is a TCP reset, so no byte of the relay's reaches a client as
// data. Every refusal is counted; nothing outside the allowlist is ever
// dialled. See docs/relay-protocol.md.
//
// This module imports node:net itself (the design gives sockets to
// src/dataplane) because it ships alone in the relay image, with no
// node_modules and none of the host's data plane.
//
// Over 500 lines: the relay ships alone in its image, so the server keeps its
// per-connection state machine, replay cache and metrics together here.

import { createServer, connect, isIP, type Server, type Socket, type AddressInfo } from 'node:net'
import { InvalidArgumentError, KtError } from '../errors.js'
import type { Registry } from '../observe/metrics.js'
import { Allowlist, DEFAULT_PORTS, denyText, type PortPolicy } from './allow.js'
import {
  Status, type StatusCode, reply, statusName, parseAuth, parseConnect, proxyV2Header, verifyAuthMac,
  TOKEN_MIN, TOKEN_MAX, HELLO_MAX, CONNECT_MAX, INFO_NATIVE, INFO_UDP, type ConnectRequest,
} from './protocol.js'
import { CMD_MUX, INFO_MUX, INFO_LANE, INFO_MUX_LANE } from './protocol.js'
import { RelayMux, MUX_BUSY_TEXT, openForOpenText } from './mux-server.js'
import { checkHeader, parseOpen } from './mux-frame.js'
import { MUX_RESET_TEXT } from './mux-link.js'
import { relayUdpFlow, type UdpRelayCounters } from './udp-server.js'
import { splice, type SpliceResult } from './splice.js'
import { silentRelayLogger, type RelayLogger } from './log.js'
import { NativeRelayLane, type RelayBrokenEvent, type RelayStreamEvent, type RelaySummary } from './native-lane.js'
import type { NativeSplicer } from '../dataplane/native/index.js'
import type { RelayVerdict } from '../dataplane/vocab.js'

export interface RelayOptions {
  /** An IP literal; wildcards are refused (main.ts resolves `auto` to the container's address). */
  readonly host: string
  readonly port: number
  /** The shared secret, 16-64 random bytes. */
  readonly token: Buffer
  /** The cluster's node IPs as CIDRs. */
  readonly allow: readonly string[]
  readonly ports?: PortPolicy
  /** Deadline for dialling a destination (default 5000, Envoy's connect timeout). */
  readonly connectTimeoutMs?: number
  /** Deadline for a HELLO, and for a CONNECT once its first byte arrived (default 5000). */
  readonly headerTimeoutMs?: number
  /** How long an authenticated connection may wait for its CONNECT (default 60000); the host pool recycles sooner. */
  readonly idleTimeoutMs?: number
  readonly maxConnections?: number
  /** How long close() lets spliced connections finish (default 10000). */
  readonly drainTimeoutMs?: number
  /** How far an AUTH's timestamp may be from this relay's clock, either way (default 30000); its nonce is remembered that long. */
  readonly authWindowMs?: number
  /** What the relay tells a host that asks (AUTH with ACK): whether it splices natively. Default js. */
  readonly dataPath?: 'native' | 'js'
  /** The relay's clock (tests). The addon's lane reads the wall clock, so a relay given one stays in JS. */
  readonly now?: () => number
  /**
   * The relay's addon (main.ts loads it): its lane's workers then accept,
   * authenticate, dial and splice the common case of every connection
   * (kt_relay.c), and hand this module the rest (native-lane.ts).
   */
  readonly native?: NativeSplicer
  /** With `native`: serve multiplexed carriers on the lane too (kt_mux.c), the default; false hands them to mux-server.ts. */
  readonly nativeMux?: boolean
  /** Whether connections are logged at info (default: yes when a logger is given); the lane then sends a summary of each. */
  readonly logConnections?: boolean
  readonly logger?: RelayLogger
  readonly metrics?: Registry
}

export interface RelayCounters extends UdpRelayCounters {
  accepted: number
  authenticated: number
  refusedAuth: number
  /** AUTHs whose timestamp was outside the window (clock skew, or a late replay). */
  refusedStale: number
  /** AUTHs whose nonce was seen before within the window. */
  refusedReplay: number
  refusedHeader: number
  refusedDenied: number
  refusedBusy: number
  /** Destinations dialled: only ever allowlisted ones. */
  dialed: number
  dialFailed: number
  dialTimedOut: number
  spliced: number
  idleClosed: number
  active: number
  bytesToUpstream: number
  bytesFromUpstream: number
  /** Connections the addon's lane handed to JS (refusals, mux, UDP, ANSWER, PROXY v2); 0 on the JS accept path. */
  handedBack: number
}

export interface RelayHandle {
  readonly address: AddressInfo
  /** Who accepts: the addon's lane (the common case never reaches JS), or JS. */
  readonly acceptPath: 'native' | 'js'
  /** Why the lane does not accept, when it was offered and declined. */
  readonly acceptWhy?: string
  readonly counters: Readonly<RelayCounters>
  /** Stop accepting, close idle and pending connections, let spliced ones finish (bounded). */
  close (): Promise<void>
  /** Stop now. */
  destroy (): void
}

type Phase = 'hello' | 'idle' | 'request' | 'dialing' | 'spliced' | 'done'

const HEADER_BUF_MAX = HELLO_MAX + CONNECT_MAX

/**
 * Nonces seen, in three generations: one per window-long slot of the clock
 * (slot = floor(now / window)). A nonce first seen in slot s is remembered
 * until slot s + 3 begins, so for more than two windows. That outlasts any
 * AUTH carrying it: its timestamp is within one window of the clock when it
 * is first seen, and it stays acceptable for at most one window after its
 * timestamp, so for at most two windows after it was first seen. (Two
 * generations rotated every window kept a nonce as little as one window,
 * which an AUTH dated up to a window ahead outlived.) Bounded: when full,
 * new AUTHs are refused BUSY rather than remembered partially (a replay must
 * never slip through an overflow). kt_relay.c holds the addon's port of it.
 */
export class NonceCache {
  private gens: Array<Set<string>> = [new Set(), new Set(), new Set()]
  private slot: number
  constructor (private readonly windowMs: number, private readonly max: number, now: number) {
    this.slot = Math.floor(now / windowMs)
  }

  /** 'new' and remembered, 'seen' (a replay), or 'full'. */
  add (nonce: Buffer, now: number): 'new' | 'seen' | 'full' {
    const slot = Math.floor(now / this.windowMs)
    // A clock that steps back shifts nothing: nonces are then kept longer, never shorter.
    for (let shift = Math.min(3, slot - this.slot); shift > 0; shift--) {
      this.gens.pop()
      this.gens.unshift(new Set())
    }
    if (slot > this.slot) this.slot = slot
    const k = nonce.toString('latin1')
    for (const g of this.gens) if (g.has(k)) return 'seen'
    if (this.size >= this.max) return 'full'
    ;(this.gens[0] as Set<string>).add(k)
    return 'new'
  }

  get size (): number {
    let n = 0
    for (const g of this.gens) n += g.size
    return n
  }
}

/** At 5000 new connections a second for three 30 s windows: 450k, about 40 MB. */
const NONCE_CACHE_MAX = 500_000

interface Ctx {
  /** The relay's own address: UDP flows bind it (never a wildcard). */
  readonly host: string
  readonly token: Buffer
  readonly authWindowMs: number
  readonly nonces: NonceCache
  /** The replies' info byte; INFO_LANE once the addon's lane accepts. */
  info: number
  readonly now: () => number
  readonly allow: Allowlist
  readonly connectTimeoutMs: number
  readonly headerTimeoutMs: number
  readonly idleTimeoutMs: number
  readonly maxConnections: number
  readonly log: RelayLogger
  readonly counters: RelayCounters
  readonly conns: Set<Conn>
  readonly metrics: Metrics | undefined
  closing: boolean
  /** JS's count of open connections changed (with the addon's lane: its accept cap follows). */
  activeChanged: (() => void) | undefined
}

interface Metrics {
  outcome (o: string): void
  dial (r: string): void
  bytes (up: number, down: number): void
}

function makeMetrics (reg: Registry, counters: RelayCounters): Metrics {
  const conns = reg.counter('kt_relay_connections_total', 'Relay connections by outcome')
  const dials = reg.counter('kt_relay_dials_total', 'Relay dials by result')
  const bytes = reg.counter('kt_relay_bytes_total', 'Bytes spliced by the relay, by direction')
  const active = reg.gauge('kt_relay_active_connections', 'Open relay connections')
  active.collect((set) => set(undefined, counters.active))
  return {
    outcome: (o) => conns.inc({ outcome: o }),
    dial: (r) => dials.inc({ result: r }),
    bytes: (up, down) => {
      if (up > 0) bytes.inc({ direction: 'to_upstream' }, up)
      if (down > 0) bytes.inc({ direction: 'from_upstream' }, down)
    },
  }
}

function remoteOf (s: Socket): string {
  return s.remoteAddress === undefined ? 'unknown' : `${s.remoteAddress}:${s.remotePort ?? 0}`
}

class Conn {
  readonly ctx: Ctx
  readonly sock: Socket
  readonly started = Date.now()
  readonly remote: string
  phase: Phase = 'hello'
  buf: Buffer = Buffer.alloc(0)
  timer: NodeJS.Timeout | undefined
  upstream: Socket | undefined
  req: ConnectRequest | undefined
  outcome = 'open'
  detail: string | undefined
  result: SpliceResult | undefined
  clientEnded = false
  /** Client bytes that came with the BIND and went upstream before the splice. */
  early = 0
  /** The host waits for the relay's answer to its AUTH (a pooled connection). */
  ack = false
  /** The addon's cache already judged this AUTH's nonce (a hand-back): JS's must not. */
  nonceVerdict: 'seen' | 'full' | undefined
  /**
   * A hand-back the addon did not authenticate ('raw', 'stale'): whatever JS
   * makes of it, it is refused. The addon already judged its clock and its
   * nonce, and an AUTH JS found fresh after the addon did not would have its
   * nonce in neither cache.
   */
  addonRefused: 'raw' | 'stale' | undefined

  /** `from`: where the addon's lane left a connection it handed back (native-lane.ts); 'raw' is a fresh one. */
  constructor (ctx: Ctx, sock: Socket, from: RelayVerdict | 'fresh' = 'fresh') {
    this.ctx = ctx
    this.sock = sock
    this.remote = remoteOf(sock)
    sock.setNoDelay(true)
    // Reap peers that vanished without a FIN (a host that slept, a VM network reset).
    sock.setKeepAlive(true, 60_000)
    sock.on('data', (c: Buffer) => this.onData(c))
    sock.on('error', this.onPreSpliceError)
    sock.on('end', this.onPreSpliceEnd)
    sock.once('close', () => this.onClose())
    this.arm(ctx.headerTimeoutMs, this.onHeaderTimeout)
    if (from !== 'fresh') this.resumeFrom(from)
  }

  /** A hand-back from the addon: pick up in its state. Its bytes not yet taken are still in the socket. */
  private resumeFrom (from: RelayVerdict): void {
    switch (from) {
      case 'authed': // AUTH taken, counted and answered there: the BIND is ours
        this.phase = 'idle'
        this.arm(this.ctx.idleTimeoutMs, this.onIdleTimeout)
        return
      case 'raw': this.addonRefused = 'raw'; return
      case 'stale': this.addonRefused = 'stale'; return
      case 'replay': this.nonceVerdict = 'seen'; return
      case 'full': this.nonceVerdict = 'full'; return
      case 'hello_timeout': this.onHeaderTimeout(); return
      case 'bind_timeout':
        this.phase = 'request'
        this.onHeaderTimeout()
        return
      default:
    }
  }

  arm (ms: number, fn: () => void): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = setTimeout(fn, ms)
  }

  disarm (): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
  }

  readonly onHeaderTimeout = (): void => {
    this.timer = undefined
    if (this.phase === 'hello') this.refuse(Status.HEADER, 'no complete AUTH before the deadline', 'answer')
    else this.refuse(Status.HEADER, 'no complete BIND before the deadline', 'reset')
  }

  readonly onIdleTimeout = (): void => {
    this.timer = undefined
    this.ctx.counters.idleClosed++
    this.outcome = 'idle'
    this.phase = 'done'
    this.sock.end()
    this.sock.destroySoon()
  }

  readonly onPreSpliceError = (err: Error): void => {
    if (this.outcome === 'open') { this.outcome = 'client-error'; this.detail = (err as NodeJS.ErrnoException).code ?? err.message }
    this.sock.destroy()
    this.upstream?.destroy()
  }

  readonly onPreSpliceEnd = (): void => {
    // The client gave up before the splice (a pooled connection being
    // discarded, or a truncated header): nothing more will come.
    if (this.phase === 'hello' || this.phase === 'request') {
      this.refuse(Status.HEADER, 'connection ended inside a header', this.phase === 'hello' ? 'answer' : 'reset')
      return
    }
    if (this.phase === 'dialing') {
      // A client may send its request and FIN before our OK (a one-shot
      // request): keep the half-close and forward it after the bytes.
      this.clientEnded = true
      return
    }
    if (this.outcome === 'open') this.outcome = 'client-closed'
    this.phase = 'done'
    this.disarm()
    this.upstream?.destroy()
    this.sock.end()
  }

  onData (chunk: Buffer): void {
    if (this.phase !== 'hello' && this.phase !== 'idle' && this.phase !== 'request') return // refused: discard
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    if (this.phase === 'hello') {
      const h = parseAuth(this.buf)
      if (h.kind === 'need') return
      if (h.kind === 'bad') { this.refuse(h.status, h.why, 'answer'); return }
      const auth = h.value
      this.ack = auth.ack
      // The host waits for an answer only with ACK; without it, its client's bytes may follow.
      const how = auth.ack ? 'answer' : 'reset'
      const { ctx } = this
      if (!verifyAuthMac(ctx.token, auth)) { this.refuse(Status.AUTH, 'bad MAC (wrong token)', how); return }
      const now = ctx.now()
      if (this.addonRefused === 'raw') { this.refuse(Status.AUTH, 'refused by the relay\'s addon', how); return }
      if (this.addonRefused === 'stale' || Math.abs(now - auth.timestamp) > ctx.authWindowMs) {
        ctx.counters.refusedStale++
        this.refuse(Status.STALE, `timestamp ${now - auth.timestamp} ms from the relay's clock (window ${ctx.authWindowMs} ms)`, how)
        return
      }
      const seen = this.nonceVerdict ?? ctx.nonces.add(auth.nonce, now)
      if (seen === 'seen') { ctx.counters.refusedReplay++; this.refuse(Status.AUTH, 'replayed nonce', how); return }
      if (seen === 'full') { this.refuse(Status.BUSY, 'nonce cache full', how); return }
      ctx.counters.authenticated++
      this.phase = 'idle'
      this.buf = this.buf.subarray(h.used)
      if (auth.ack) this.sock.write(reply(Status.OK, ctx.info))
      this.arm(ctx.idleTimeoutMs, this.onIdleTimeout)
      if (this.buf.length === 0) return
    }
    if (this.phase === 'idle') {
      this.phase = 'request'
      this.arm(this.ctx.headerTimeoutMs, this.onHeaderTimeout)
    }
    if (this.buf[0] === CMD_MUX) { this.mux(); return } // many streams on this connection: mux-server.ts
    const r = parseConnect(this.buf)
    if (r.kind === 'need') {
      if (this.buf.length > HEADER_BUF_MAX) this.refuse(Status.HEADER, 'header too long', 'reset')
      return
    }
    if (r.kind === 'bad') { this.refuse(r.status, r.why, 'reset'); return }
    this.disarm()
    this.sock.pause()
    this.sock.removeAllListeners('data')
    const leftover = this.buf.subarray(r.used)
    this.buf = Buffer.alloc(0)
    this.req = r.value
    const deny = this.ctx.allow.check(r.value.destination.address, r.value.destination.port)
    if (deny !== null) { this.refuse(Status.DENIED, denyText(deny), r.value.answer ? 'answer' : 'reset'); return }
    if (r.value.udp) this.dialUdp(r.value, leftover)
    else this.dial(r.value, leftover)
  }

  /** BIND command CMD_MUX (flags 0): this connection becomes a carrier of streams (mux-server.ts). */
  mux (): void {
    if (this.buf.length < 2) return
    if (this.buf[1] !== 0) { this.refuse(Status.HEADER, `unknown mux flags 0x${(this.buf[1] as number).toString(16)}`, 'reset'); return }
    this.disarm()
    this.sock.removeAllListeners('data')
    this.sock.removeListener('error', this.onPreSpliceError)
    this.sock.removeListener('end', this.onPreSpliceEnd)
    this.phase = 'spliced'
    this.outcome = 'ok'
    const leftover = this.buf.subarray(2)
    this.buf = Buffer.alloc(0)
    // Its bytes were counted per stream as they went: the connection's own summary carries none.
    const m: RelayMux = new RelayMux(this.ctx, this.sock, this.remote, leftover, (r) => {
      this.detail = `mux: ${m.opened} streams, ${r.aToB} bytes up, ${r.bToA} down`
      this.onSpliced({ aToB: 0, bToA: 0, end: r.end })
    })
  }

  /**
   * `answer`: a status, then close (the host reads it: garbage before an
   * AUTH, an ACKed AUTH, a BIND with ANSWER). `reset`: the host is not
   * reading a reply and its client's bytes may already be on their way, so a
   * status could reach the client as data; a TCP reset cannot.
   */
  refuse (status: StatusCode, why: string, how: 'answer' | 'reset'): void {
    if (this.phase === 'done' || this.phase === 'spliced') return
    const c = this.ctx.counters
    if (status === Status.AUTH || status === Status.STALE) c.refusedAuth++
    else if (status === Status.DENIED) c.refusedDenied++
    else if (status === Status.BUSY) c.refusedBusy++
    else c.refusedHeader++
    this.outcome = statusName(status)
    this.detail = why
    this.phase = 'done'
    this.disarm()
    this.buf = Buffer.alloc(0)
    if (how === 'reset') { this.sock.resetAndDestroy(); return }
    if (this.sock.writable) this.sock.end(reply(status))
    // Read and drop whatever else the client sends until it closes; a client
    // that never closes is cut off after a second.
    this.sock.resume()
    const t = setTimeout(() => this.sock.destroy(), 1000)
    t.unref()
    this.sock.once('close', () => clearTimeout(t))
  }

  dial (req: ConnectRequest, leftover: Buffer): void {
    const c = this.ctx.counters
    this.phase = 'dialing'
    c.dialed++
    const dst = req.destination
    const up = connect({ host: dst.address, port: dst.port, allowHalfOpen: true, noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 })
    this.upstream = up
    up.pause()
    const timer = setTimeout(() => {
      c.dialTimedOut++
      this.ctx.metrics?.dial('timeout')
      up.destroy()
      this.fail(Status.TIMEOUT, `connect timed out after ${this.ctx.connectTimeoutMs} ms`, req.answer)
    }, this.ctx.connectTimeoutMs)
    const onErr = (err: Error): void => {
      clearTimeout(timer)
      c.dialFailed++
      this.ctx.metrics?.dial('error')
      this.fail(Status.UNREACHABLE, (err as NodeJS.ErrnoException).code ?? err.message, req.answer)
    }
    up.once('error', onErr)
    up.once('connect', () => {
      clearTimeout(timer)
      up.removeListener('error', onErr)
      if (!this.connected(req)) { up.destroy(); return }
      if (req.proxyV2 && req.source !== undefined) up.write(proxyV2Header(req.source, dst))
      if (leftover.length > 0) { this.early = leftover.length; up.write(leftover) }
      splice(this.sock, up, this.onSpliced)
      if (this.clientEnded) up.end()
    })
  }

  /**
   * The destination answered (TCP connected, or the flow's datagram socket is
   * ready): the connection moves to its data phase and, if asked, the host
   * gets its OK. False when the connection went away meanwhile.
   */
  private connected (req: ConnectRequest): boolean {
    if (this.phase !== 'dialing' || this.sock.destroyed) return false
    this.ctx.metrics?.dial('ok')
    this.ctx.counters.spliced++
    this.phase = 'spliced'
    this.outcome = 'ok'
    this.sock.removeListener('error', this.onPreSpliceError)
    this.sock.removeListener('end', this.onPreSpliceEnd)
    if (req.answer) this.sock.write(reply(Status.OK, this.ctx.info))
    return true
  }

  /** A UDP flow (udp-server.ts): the "dial" is binding and connecting its datagram socket. */
  dialUdp (req: ConnectRequest, leftover: Buffer): void {
    const c = this.ctx.counters
    this.phase = 'dialing'
    c.dialed++
    relayUdpFlow({
      sock: this.sock,
      destination: req.destination,
      bindHost: this.ctx.host,
      leftover,
      counters: c,
      ready: () => this.connected(req),
      ended: () => this.clientEnded,
      failed: (err) => {
        c.dialFailed++
        this.ctx.metrics?.dial('error')
        this.fail(Status.UNREACHABLE, err.code ?? err.message, req.answer)
      },
      done: this.onSpliced,
      onFrameError: (err) => { this.outcome = 'header'; this.detail = err.message },
    })
  }

  fail (status: StatusCode, why: string, answer: boolean): void {
    if (this.phase !== 'dialing') return
    this.outcome = statusName(status)
    this.detail = why
    this.phase = 'done'
    if (!answer) { this.sock.resetAndDestroy(); return }
    if (this.sock.writable) this.sock.end(reply(status))
    this.sock.resume()
    const t = setTimeout(() => this.sock.destroy(), 1000)
    t.unref()
    this.sock.once('close', () => clearTimeout(t))
  }

  onClose (): void {
    this.disarm()
    const { ctx } = this
    ctx.conns.delete(this)
    ctx.counters.active--
    ctx.activeChanged?.()
    // A spliced connection is summed up when both sides have closed (splice's callback).
    if (this.phase === 'spliced' && this.result === undefined) return
    if (this.upstream !== undefined && !this.upstream.destroyed && this.result === undefined) this.upstream.destroy()
    this.finish()
  }

  readonly onSpliced = (r: SpliceResult): void => {
    this.result = r
    if (this.sock.closed || this.sock.destroyed) this.finish()
  }

  finish (): void {
    const { ctx } = this
    this.phase = 'done'
    const up = (this.result?.aToB ?? 0) + this.early
    const down = this.result?.bToA ?? 0
    ctx.counters.bytesToUpstream += up
    ctx.counters.bytesFromUpstream += down
    ctx.metrics?.outcome(this.outcome)
    ctx.metrics?.bytes(up, down)
    const rec: Record<string, unknown> = { client: this.remote, outcome: this.outcome, ms: Date.now() - this.started }
    if (this.req !== undefined) {
      rec.dst = `${this.req.destination.address}:${this.req.destination.port}`
      if (this.req.source !== undefined) rec.src = `${this.req.source.address}:${this.req.source.port}`
      if (this.req.udp) rec.proto = 'udp'
    }
    if (this.detail !== undefined) rec.detail = this.detail
    if (this.result !== undefined) { rec.up = up; rec.down = down; rec.end = this.result.end }
    // One line per connection, at close. Pooled connections that were never
    // used are not worth a line each; refusals and failed dials are warnings,
    // so a relay at --log-level warn (the container default) logs only those.
    if (this.outcome === 'idle' || (this.outcome === 'client-closed' && this.req === undefined)) ctx.log.debug(rec, 'relay connection')
    else if (this.outcome === 'ok' || this.outcome === 'client-closed' || this.outcome === 'client-error') ctx.log.info(rec, 'relay connection')
    else ctx.log.warn(rec, 'relay connection refused or failed')
  }

  /** close(): idle and unfinished connections go now; spliced ones may finish. */
  closeIfIdle (): void {
    if (this.phase !== 'spliced') {
      this.phase = 'done'
      this.disarm()
      this.upstream?.destroy()
      this.sock.destroy()
    }
  }
}

function positive (v: number | undefined, dflt: number, what: string): number {
  const n = v ?? dflt
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `${what}: ${n} must be a positive whole number`)
  return n
}

export async function startRelay (opts: RelayOptions): Promise<RelayHandle> {
  if (isIP(opts.host) === 0) throw new InvalidArgumentError('KT_ERR_INVALID_ADDRESS', `relay listen host ${JSON.stringify(opts.host)} is not an IP address`)
  if (/^(0+\.){3}0+$/.test(opts.host) || /^[0:]+$/.test(opts.host)) {
    throw new InvalidArgumentError('KT_ERR_WILDCARD_BIND', `relay: refusing wildcard listen address ${opts.host}`)
  }
  if (!Buffer.isBuffer(opts.token) || opts.token.length < TOKEN_MIN || opts.token.length > TOKEN_MAX) {
    throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `relay token must be ${TOKEN_MIN}-${TOKEN_MAX} bytes (at least 128 bits)`)
  }
  const counters: RelayCounters = {
    accepted: 0, authenticated: 0, refusedAuth: 0, refusedStale: 0, refusedReplay: 0, refusedHeader: 0, refusedDenied: 0, refusedBusy: 0,
    dialed: 0, dialFailed: 0, dialTimedOut: 0, spliced: 0, idleClosed: 0, active: 0, bytesToUpstream: 0, bytesFromUpstream: 0,
    udpFlows: 0, udpActive: 0, udpDatagramsUp: 0, udpDatagramsDown: 0, udpDropped: 0, udpFrameErrors: 0, handedBack: 0,
  }
  const now = opts.now ?? Date.now
  const authWindowMs = positive(opts.authWindowMs, 30_000, '--auth-window')
  const ctx: Ctx = {
    host: opts.host,
    token: Buffer.from(opts.token),
    authWindowMs,
    nonces: new NonceCache(authWindowMs, NONCE_CACHE_MAX, now()),
    info: (opts.dataPath === 'native' ? INFO_NATIVE : 0) | INFO_UDP | INFO_MUX,
    now,
    allow: new Allowlist(opts.allow, opts.ports ?? DEFAULT_PORTS),
    connectTimeoutMs: positive(opts.connectTimeoutMs, 5000, '--connect-timeout'),
    headerTimeoutMs: positive(opts.headerTimeoutMs, 5000, '--header-timeout'),
    idleTimeoutMs: positive(opts.idleTimeoutMs, 60_000, '--idle-timeout'),
    maxConnections: positive(opts.maxConnections, 4096, '--max-connections'),
    log: opts.logger ?? silentRelayLogger,
    counters,
    conns: new Set(),
    metrics: opts.metrics === undefined ? undefined : makeMetrics(opts.metrics, counters),
    closing: false,
    activeChanged: undefined,
  }
  const drainTimeoutMs = positive(opts.drainTimeoutMs, 10_000, 'drain timeout')

  // Over the cap: a reset, not a status. A host dialing without a round trip
  // sends its client's bytes at once and reads no reply, so a status could
  // reach the client as data.
  const refuseBusy = (sock: Socket): void => {
    counters.refusedBusy++
    ctx.metrics?.outcome('busy')
    sock.on('error', () => {})
    sock.resetAndDestroy()
  }
  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: false }, (sock) => {
    counters.accepted++
    if (ctx.closing || counters.active >= ctx.maxConnections) { refuseBusy(sock); return }
    counters.active++
    ctx.conns.add(new Conn(ctx, sock))
  })

  // With the addon, its lane takes the listening socket in the listen
  // callback, before libuv ever polls it; JS then serves only hand-backs.
  let lane: NativeRelayLane | undefined
  let acceptWhy: string | undefined
  /** Hand-backs received: close() waits until every one the lane sent has arrived. */
  let handedIn = 0
  let address: AddressInfo | undefined
  const summaries = opts.logConnections ?? opts.logger !== undefined
  const onSummary = (s: RelaySummary): void => { logSummary(ctx, s) }
  const handBack = (sock: Socket, from: RelayVerdict): void => {
    handedIn++
    if (ctx.closing) { sock.on('error', () => {}); sock.destroy(); return }
    // The lane admitted it under its cap, which leaves room for JS's
    // connections (activeChanged); hand-backs in flight when that moved
    // may still find JS at the cap.
    if (counters.active >= ctx.maxConnections) { refuseBusy(sock); return }
    counters.active++
    ctx.conns.add(new Conn(ctx, sock, from))
    ctx.activeChanged?.()
  }
  await new Promise<void>((resolve, reject) => {
    const onErr = (err: NodeJS.ErrnoException): void => {
      reject(new KtError('KT_ERR_LISTEN', `relay cannot listen on ${opts.host}:${opts.port}: ${err.code ?? err.message}`, { cause: err }))
    }
    server.once('error', onErr)
    server.listen({ host: opts.host, port: opts.port, exclusive: true }, () => {
      server.removeListener('error', onErr)
      address = server.address() as AddressInfo
      if (opts.native !== undefined && opts.now === undefined) {
        const laneInfo = INFO_LANE | (opts.nativeMux !== false ? INFO_MUX_LANE : 0)
        const l = NativeRelayLane.open(opts.native, server, {
          token: ctx.token,
          authWindowMs,
          headerTimeoutMs: ctx.headerTimeoutMs,
          idleTimeoutMs: ctx.idleTimeoutMs,
          connectTimeoutMs: ctx.connectTimeoutMs,
          maxConnections: ctx.maxConnections,
          info: ctx.info | laneInfo,
          allow: ctx.allow.cidrs.map((c) => c.text),
          ports: ctx.allow.ports,
          summaries: summaries || ctx.metrics !== undefined,
          mux: opts.nativeMux !== false,
        }, { handBack, summary: onSummary, stream: (s) => { logStream(ctx, s) }, broken: (b) => { logBroken(ctx, b) } })
        if (typeof l === 'string') acceptWhy = l
        else {
          lane = l
          ctx.info |= laneInfo
          // One cap over both paths: the lane accepts while its connections and JS's are under it.
          ctx.activeChanged = () => { l.setCap(ctx.maxConnections - counters.active) }
        }
      }
      resolve()
    })
  })
  server.on('error', (err) => ctx.log.error({ err }, 'relay listener error'))
  const addr = address as AddressInfo
  ctx.log.info({ address: addr.address, port: addr.port, allow: ctx.allow.cidrs.map((c) => c.text), ports: ctx.allow.ports, accept: lane !== undefined ? 'native' : 'js' }, 'relay listening')
  if (opts.native !== undefined && lane === undefined && acceptWhy !== undefined) ctx.log.warn({ reason: acceptWhy }, 'relay: the addon does not accept; JS does')

  let closed: Promise<void> | undefined
  const destroy = (): void => {
    ctx.closing = true
    server.close()
    lane?.abort()
    lane?.close()
    for (const c of ctx.conns) { c.upstream?.destroy(); c.sock.destroy() }
  }
  // The lane's counters folded into JS's (hand-backs are JS's from the hand-back on).
  const merged = (): RelayCounters => {
    if (lane === undefined) return counters
    const n = lane.read()
    const r = n.relay
    return {
      ...counters,
      accepted: counters.accepted + n.accepted + n.busy,
      authenticated: counters.authenticated + r.authenticated,
      refusedHeader: counters.refusedHeader + r.refused_header,
      refusedDenied: counters.refusedDenied + r.refused_denied,
      refusedBusy: counters.refusedBusy + n.busy + r.refused_busy,
      dialed: counters.dialed + r.dialed,
      dialFailed: counters.dialFailed + r.dial_failed,
      dialTimedOut: counters.dialTimedOut + r.dial_timed_out,
      spliced: counters.spliced + r.spliced,
      idleClosed: counters.idleClosed + r.idle_closed,
      active: counters.active + n.active,
      bytesToUpstream: counters.bytesToUpstream + n.bytesUp,
      bytesFromUpstream: counters.bytesFromUpstream + n.bytesDown,
      handedBack: r.handed_back,
    }
  }
  const handle: RelayHandle = {
    address: addr,
    get counters () { return merged() },
    acceptPath: lane !== undefined ? 'native' : 'js',
    ...(acceptWhy !== undefined ? { acceptWhy } : {}),
    destroy,
    close () {
      if (closed !== undefined) return closed
      ctx.closing = true
      closed = new Promise<void>((resolve) => {
        const deadline = setTimeout(() => { destroy(); resolve() }, drainTimeoutMs)
        const jsDone = new Promise<void>((res) => { if (lane !== undefined) { res(); return } server.close(() => res()) })
        for (const c of ctx.conns) c.closeIfIdle()
        lane?.quiet()
        // The lane's spliced pairs finish on their own; poll until none is left.
        const laneDone = new Promise<void>((res) => {
          if (lane === undefined) { res(); return }
          const l = lane
          const poll = (): void => {
            const n = l.read()
            if (n.active === 0 && n.relay.handed_back === handedIn && ctx.conns.size === 0) { l.close(); res(); return }
            setTimeout(poll, 20).unref()
          }
          poll()
        })
        void Promise.all([jsDone, laneDone]).then(() => { clearTimeout(deadline); resolve() })
      })
      return closed
    },
  }
  return handle
}

/** One line per connection the addon served, and its metrics (finish() for the JS path's). */
function logSummary (ctx: Ctx, s: RelaySummary): void {
  const failed = s.outcome === 'connect_failed'
  const outcome = failed ? (s.err === 'KT_ERR_CONNECT_TIMEOUT' ? 'timeout' : 'unreachable')
    : s.outcome === 'idle_timeout' ? 'idle'
      : s.dst === undefined ? (s.outcome === 'aborted' ? 'client-closed' : s.outcome === 'client_closed' ? 'client-closed' : 'client-error')
        : 'ok'
  const end = s.outcome === 'eof' ? 'closed' : s.outcome === 'reset_client' || s.outcome === 'reset_upstream' ? 'reset' : 'error'
  const m = ctx.metrics
  if (m !== undefined) {
    m.outcome(outcome)
    if (s.dst !== undefined) m.dial(failed ? (outcome === 'timeout' ? 'timeout' : 'error') : 'ok')
    m.bytes(s.up, s.down)
  }
  const rec: Record<string, unknown> = { client: s.client, outcome, ms: s.ms, path: 'native' }
  if (s.mux !== undefined) {
    // A carrier (kt_mux.c): its bytes were counted per stream as they went, as mux-server.ts's.
    rec.outcome = 'ok'
    rec.detail = `mux: ${s.mux.streams} streams, ${s.mux.up} bytes up, ${s.mux.down} down`
    rec.up = 0
    rec.down = 0
    rec.end = end
    ctx.log.info(rec, 'relay connection')
    return
  }
  if (s.dst !== undefined) rec.dst = s.dst
  if (s.src !== undefined) rec.src = s.src
  if (failed) rec.detail = s.err
  else if (s.dst !== undefined) { rec.up = s.up; rec.down = s.down; rec.end = end }
  if (outcome === 'idle' || (outcome === 'client-closed' && s.dst === undefined)) ctx.log.debug(rec, 'relay connection')
  else if (failed) ctx.log.warn(rec, 'relay connection refused or failed')
  else ctx.log.info(rec, 'relay connection')
}

/** A stream of a carrier on the lane refused or failed: the line mux-server.ts logs for its own. */
function logStream (ctx: Ctx, s: RelayStreamEvent): void {
  let outcome = statusName(s.status)
  let detail: string
  switch (s.why) {
    case 'open': {
      const r = parseOpen(s.open ?? Buffer.alloc(0), s.openLength)
      detail = typeof r === 'string' ? r : 'OPEN refused'
      break
    }
    case 'data_after_fin': outcome = 'header'; detail = MUX_RESET_TEXT.dataAfterFin; break
    case 'data_over_window': outcome = 'header'; detail = MUX_RESET_TEXT.dataOverWindow; break
    case 'window_over_window': outcome = 'header'; detail = MUX_RESET_TEXT.windowOverWindow; break
    case 'busy': detail = MUX_BUSY_TEXT; break
    case 'denied': detail = denyText((s.dst !== undefined ? ctx.allow.check(s.dst.address, s.dst.port) : null) ?? 'address'); break
    default: detail = s.status === Status.TIMEOUT ? `connect timed out after ${ctx.connectTimeoutMs} ms` : s.err ?? 'connect failed'
  }
  const rec: Record<string, unknown> = { client: s.client, stream: s.stream, outcome, detail, path: 'native' }
  if (s.dst !== undefined) rec.dst = `${s.dst.address}:${s.dst.port}`
  ctx.log.warn(rec, 'relay stream refused or failed')
}

/** A carrier the host broke: mux-server.ts's warning. */
function logBroken (ctx: Ctx, b: RelayBrokenEvent): void {
  const detail = b.why === 'open_for_open_stream' ? openForOpenText(b.id) : `multiplexed relay frame: ${checkHeader(b.id, b.type, b.length) ?? 'bad header'}`
  ctx.log.warn({ client: b.client, detail, path: 'native' }, 'relay mux connection broken')
}
