// The relay server: runs inside the relay container on the kind network and
// forwards authenticated connections to the cluster's NodePorts.
//
// Per connection: HELLO (token, compared in constant time) → OK, then CONNECT
// (destination, optional source) → the destination is checked against the
// allowlist BEFORE any dial → dial with a deadline → OK/error → splice.
// Every refusal is answered with a status byte and counted; nothing outside
// the allowlist is ever dialled. See docs/relay-protocol.md.
//
// This module imports node:net itself (the design gives sockets to
// src/dataplane) because it ships alone in the relay image, with no
// node_modules and none of the host's data plane.

import { createServer, connect, isIP, type Server, type Socket, type AddressInfo } from 'node:net'
import { timingSafeEqual } from 'node:crypto'
import { InvalidArgumentError, KtError } from '../errors.js'
import type { Registry } from '../observe/metrics.js'
import { Allowlist, DEFAULT_PORTS, type PortPolicy, type DenyReason } from './allow.js'
import {
  Status, type StatusCode, reply, statusName, parseHello, parseConnect, proxyV2Header,
  TOKEN_MIN, TOKEN_MAX, HELLO_MAX, CONNECT_MAX, type ConnectRequest,
} from './protocol.js'
import { splice, type SpliceResult } from './splice.js'
import { silentRelayLogger, type RelayLogger } from './log.js'

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
  readonly logger?: RelayLogger
  readonly metrics?: Registry
}

export interface RelayCounters {
  accepted: number
  authenticated: number
  refusedAuth: number
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
}

export interface RelayHandle {
  readonly address: AddressInfo
  readonly counters: Readonly<RelayCounters>
  /** Stop accepting, close idle and pending connections, let spliced ones finish (bounded). */
  close (): Promise<void>
  /** Stop now. */
  destroy (): void
}

type Phase = 'hello' | 'idle' | 'request' | 'dialing' | 'spliced' | 'done'

const HEADER_BUF_MAX = HELLO_MAX + CONNECT_MAX

interface Ctx {
  readonly token: Buffer
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

function tokenMatches (expected: Buffer, got: Buffer): boolean {
  // timingSafeEqual needs equal lengths; the length is not secret (it is on
  // the wire), but still do the same work either way.
  if (got.length !== expected.length) {
    timingSafeEqual(expected, expected)
    return false
  }
  return timingSafeEqual(expected, got)
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

  constructor (ctx: Ctx, sock: Socket) {
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
    this.refuse(Status.HEADER, this.phase === 'hello' ? 'no complete HELLO before the deadline' : 'no complete CONNECT before the deadline')
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
      this.refuse(Status.HEADER, 'connection ended inside a header')
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
      const h = parseHello(this.buf)
      if (h.kind === 'need') return
      if (h.kind === 'bad') { this.refuse(h.status, h.why); return }
      if (!tokenMatches(this.ctx.token, h.value)) { this.refuse(Status.AUTH, 'bad token'); return }
      this.ctx.counters.authenticated++
      this.phase = 'idle'
      this.buf = this.buf.subarray(h.used)
      this.sock.write(reply(Status.OK))
      this.arm(this.ctx.idleTimeoutMs, this.onIdleTimeout)
      if (this.buf.length === 0) return
    }
    if (this.phase === 'idle') {
      this.phase = 'request'
      this.arm(this.ctx.headerTimeoutMs, this.onHeaderTimeout)
    }
    const r = parseConnect(this.buf)
    if (r.kind === 'need') {
      if (this.buf.length > HEADER_BUF_MAX) this.refuse(Status.HEADER, 'header too long')
      return
    }
    if (r.kind === 'bad') { this.refuse(r.status, r.why); return }
    this.disarm()
    this.sock.pause()
    this.sock.removeAllListeners('data')
    const leftover = this.buf.subarray(r.used)
    this.buf = Buffer.alloc(0)
    this.req = r.value
    const deny = this.ctx.allow.check(r.value.destination.address, r.value.destination.port)
    if (deny !== null) { this.refuse(Status.DENIED, denyText(deny)); return }
    this.dial(r.value, leftover)
  }

  refuse (status: StatusCode, why: string): void {
    if (this.phase === 'done' || this.phase === 'spliced') return
    const c = this.ctx.counters
    if (status === Status.AUTH) c.refusedAuth++
    else if (status === Status.DENIED) c.refusedDenied++
    else if (status === Status.BUSY) c.refusedBusy++
    else c.refusedHeader++
    this.outcome = statusName(status)
    this.detail = why
    this.phase = 'done'
    this.disarm()
    this.buf = Buffer.alloc(0)
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
      this.fail(Status.TIMEOUT, `connect timed out after ${this.ctx.connectTimeoutMs} ms`)
    }, this.ctx.connectTimeoutMs)
    const onErr = (err: Error): void => {
      clearTimeout(timer)
      c.dialFailed++
      this.ctx.metrics?.dial('error')
      this.fail(Status.UNREACHABLE, (err as NodeJS.ErrnoException).code ?? err.message)
    }
    up.once('error', onErr)
    up.once('connect', () => {
      clearTimeout(timer)
      up.removeListener('error', onErr)
      if (this.phase !== 'dialing' || this.sock.destroyed) { up.destroy(); return }
      this.ctx.metrics?.dial('ok')
      c.spliced++
      this.phase = 'spliced'
      this.outcome = 'ok'
      this.sock.removeListener('error', this.onPreSpliceError)
      this.sock.removeListener('end', this.onPreSpliceEnd)
      this.sock.write(reply(Status.OK))
      if (req.proxyV2 && req.source !== undefined) up.write(proxyV2Header(req.source, dst))
      if (leftover.length > 0) up.write(leftover)
      splice(this.sock, up, this.onSpliced)
      if (this.clientEnded) up.end()
    })
  }

  fail (status: StatusCode, why: string): void {
    if (this.phase !== 'dialing') return
    this.outcome = statusName(status)
    this.detail = why
    this.phase = 'done'
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
    const up = this.result?.aToB ?? 0
    const down = this.result?.bToA ?? 0
    ctx.counters.bytesToUpstream += up
    ctx.counters.bytesFromUpstream += down
    ctx.metrics?.outcome(this.outcome)
    ctx.metrics?.bytes(up, down)
    const rec: Record<string, unknown> = { client: this.remote, outcome: this.outcome, ms: Date.now() - this.started }
    if (this.req !== undefined) {
      rec.dst = `${this.req.destination.address}:${this.req.destination.port}`
      if (this.req.source !== undefined) rec.src = `${this.req.source.address}:${this.req.source.port}`
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

function denyText (r: DenyReason): string {
  switch (r) {
    case 'port': return 'port outside the NodePort range and extra ports'
    case 'address': return 'address outside the cluster allowlist'
    default: return `${r} address`
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
    accepted: 0, authenticated: 0, refusedAuth: 0, refusedHeader: 0, refusedDenied: 0, refusedBusy: 0,
    dialed: 0, dialFailed: 0, dialTimedOut: 0, spliced: 0, idleClosed: 0, active: 0, bytesToUpstream: 0, bytesFromUpstream: 0,
  }
  const ctx: Ctx = {
    token: Buffer.from(opts.token),
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
  }
  const drainTimeoutMs = positive(opts.drainTimeoutMs, 10_000, 'drain timeout')

  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: false }, (sock) => {
    counters.accepted++
    if (ctx.closing || counters.active >= ctx.maxConnections) {
      counters.refusedBusy++
      ctx.metrics?.outcome('busy')
      sock.on('error', () => {})
      sock.end(reply(Status.BUSY))
      sock.destroySoon()
      return
    }
    counters.active++
    ctx.conns.add(new Conn(ctx, sock))
  })

  await new Promise<void>((resolve, reject) => {
    const onErr = (err: NodeJS.ErrnoException): void => {
      reject(new KtError('KT_ERR_LISTEN', `relay cannot listen on ${opts.host}:${opts.port}: ${err.code ?? err.message}`, { cause: err }))
    }
    server.once('error', onErr)
    server.listen({ host: opts.host, port: opts.port, exclusive: true }, () => {
      server.removeListener('error', onErr)
      resolve()
    })
  })
  server.on('error', (err) => ctx.log.error({ err }, 'relay listener error'))
  const address = server.address() as AddressInfo
  ctx.log.info({ address: address.address, port: address.port, allow: ctx.allow.cidrs.map((c) => c.text), ports: ctx.allow.ports }, 'relay listening')

  let closed: Promise<void> | undefined
  const destroy = (): void => {
    ctx.closing = true
    server.close()
    for (const c of ctx.conns) { c.upstream?.destroy(); c.sock.destroy() }
  }
  return {
    address,
    counters,
    destroy,
    close () {
      if (closed !== undefined) return closed
      ctx.closing = true
      closed = new Promise<void>((resolve) => {
        const deadline = setTimeout(destroy, drainTimeoutMs)
        server.close(() => { clearTimeout(deadline); resolve() })
        for (const c of ctx.conns) c.closeIfIdle()
      })
      return closed
    },
  }
}
