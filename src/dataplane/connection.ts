// One client connection, from accept to close: optional peek (SNI / Host),
// route match, backend pick, connect with retry, then splice. A single
// idempotent `finish()` records the termination cause, releases the backend,
// counts and logs once (style habit 6).

import type { Socket } from 'node:net'
import { errorCode } from '../errors.js'
import { FirstFlightPeeker, type PeekOutcome } from './peek/index.js'
import type { SpliceCause as NativeCause, SpliceResult as NativeResult } from './native/index.js'
import { splice, type SpliceCause, type SpliceResult } from './splice.js'
import { NO_EXCLUDE, type Backend, type ClientInfo, type EarlyDial, type Upstream } from './upstream.js'
import type { ListenerConfig, ListenerView } from './context.js'

import type { ConnOutcome, RouteOutcome } from './vocab.js'
export type { ConnOutcome, RouteOutcome }

const SPLICE_TO_OUTCOME: Record<SpliceCause, ConnOutcome> = {
  eof: 'eof',
  'reset-client': 'reset_client',
  'reset-upstream': 'reset_upstream',
  'idle-timeout': 'idle_timeout',
  aborted: 'aborted',
}

const NATIVE_TO_SPLICE: Record<NativeCause, SpliceCause> = {
  eof: 'eof',
  'reset-a': 'reset-client',
  'reset-b': 'reset-upstream',
  'idle-timeout': 'idle-timeout',
  error: 'reset-upstream',
  aborted: 'aborted',
}

const kConn = Symbol('kt.conn')
interface ConnSocket extends Socket { [kConn]: Connection }


export class Connection {
  readonly listener: ListenerView
  readonly config: ListenerConfig
  readonly client: ConnSocket
  readonly info: ClientInfo
  readonly start: number
  upstream: Upstream | undefined
  backend: Backend | undefined
  upstreamSocket: Socket | undefined
  tried: Set<Backend> | undefined
  attempts = 0
  peeker: FirstFlightPeeker | undefined
  peekTimer: NodeJS.Timeout | undefined
  routeName: string | undefined
  routeOutcome: RouteOutcome | undefined
  peekedBytes = 0
  handle: { abort (): void } | undefined
  result: SpliceResult | undefined
  outcome: ConnOutcome | undefined
  lastError: string | undefined
  drainTimer: NodeJS.Timeout | undefined
  /** The dial the listener began before this socket existed (listener.ts hookEarlyDial), until the first connect takes it. */
  early: EarlyDial | undefined
  done = false

  constructor (listener: ListenerView, config: ListenerConfig, client: Socket, info: ClientInfo, early?: EarlyDial) {
    this.listener = listener
    this.config = config
    this.client = client as ConnSocket
    this.client[kConn] = this
    this.info = info
    this.early = early
    this.start = performance.now()
    this.client.on('error', onEarlyClientError)
    this.client.on('close', onEarlyClientClose)
  }

  begin (): void {
    if (this.config.peek) {
      this.peeker = new FirstFlightPeeker()
      this.client.on('data', onPeekData)
      this.client.on('end', onPeekEnd)
      this.peekTimer = setTimeout(onPeekTimeout, this.listener.opts.peekTimeoutMs, this)
      this.client.resume()
      return
    }
    this.route(this.config.defaultUpstream, 'default')
  }

  decide (p: PeekOutcome): void {
    if (p.kind === 'need-more') return
    this.endPeek()
    const cfg = this.config
    switch (p.kind) {
      case 'sni':
      case 'host': {
        this.routeName = p.name
        const target = cfg.matcher?.match(p.name)
        if (target !== undefined) {
          // A Service sharing the listener enforces its own loadBalancerSourceRanges here.
          if (target.allow !== undefined && !target.allow.check(this.info.address, this.info.family === 4 ? 'ipv4' : 'ipv6')) {
            this.routeOutcome = p.kind
            this.fail('source_denied', 'KT_ERR_SOURCE_DENIED')
            return
          }
          this.route(target.upstream, p.kind)
          return
        }
        this.routeDefault()
        return
      }
      case 'no-name':
        this.routeDefault()
        return
      case 'not-tls-or-http':
        this.route(cfg.defaultUpstream, 'not_tls_or_http')
        return
      case 'too-large':
        this.route(cfg.defaultUpstream, 'too_large')
    }
  }

  endPeek (): void {
    this.client.pause()
    this.client.removeListener('data', onPeekData)
    this.client.removeListener('end', onPeekEnd)
    if (this.peekTimer !== undefined) { clearTimeout(this.peekTimer); this.peekTimer = undefined }
  }

  /** No name matched (or none was sent): the listener's default, or close. */
  routeDefault (): void {
    const def = this.config.defaultUpstream
    this.route(def, def === undefined ? 'no_route' : 'default')
  }

  route (up: Upstream | undefined, outcome: RouteOutcome): void {
    this.routeOutcome = outcome
    if (this.config.peek) this.listener.routeCells[outcome].inc()
    if (up === undefined) {
      if (outcome === 'peek_timeout') this.fail('peek_timeout', 'KT_ERR_PEEK_TIMEOUT')
      else if (outcome === 'too_large') this.fail('too_large', 'KT_ERR_PEEK_TOO_LARGE')
      else this.fail('no_route', 'KT_ERR_NO_ROUTE')
      return
    }
    this.upstream = up
    this.tryConnect()
  }

  tryConnect (): void {
    const up = this.upstream as Upstream
    let early = this.early
    this.early = undefined
    if (early !== undefined && early.upstream !== up) { early.socket?.destroy(); early = undefined }
    const b = early !== undefined ? early.backend : up.pick(this.info, this.tried ?? NO_EXCLUDE)
    if (b === undefined) {
      this.fail('connect_failed', this.lastError ?? up.noBackendCode)
      return
    }
    this.backend = b
    this.attempts++
    up.connect(b, this.info, this.listener.opts.connectTimeoutMs, (err, s) => { this.onUpstream(err, s) }, early)
  }

  onUpstream (err: Error | null, s: Socket | undefined): void {
    if (this.done) { s?.destroy(); return }
    if (err !== null || s === undefined) {
      const code = errorCode(err)
      this.lastError = code
      if (code === 'EMFILE' || code === 'ENFILE') this.listener.ctx.fdExhausted(code)
      this.listener.ctx.m.connectErrors.inc({ upstream: this.upstream?.id ?? '', backend: this.backend?.key ?? '', code })
      ;(this.tried ??= new Set()).add(this.backend as Backend)
      // Retry only the connect, only before any byte was forwarded (nothing
      // was: the client's bytes are still in the kernel or the peeker).
      if (this.attempts < this.listener.opts.connectAttempts) { this.tryConnect(); return }
      this.fail('connect_failed', code)
      return
    }
    this.upstreamSocket = s
    ;(this.upstream as Upstream).acquired(this.backend as Backend)
    this.client.removeListener('error', onEarlyClientError)
    this.client.removeListener('close', onEarlyClientClose)
    const peeked = this.peeker
    this.peeker = undefined
    const opts = this.listener.opts
    const native = this.listener.ctx.splicer
    if (native !== undefined && (s as { ktMux?: boolean }).ktMux !== true) { // a relay mux stream has no fd
      // The native path takes both file descriptors; the peeked bytes go first as its head.
      // After the handoff JS never reads or writes these sockets; a late error must not crash the process.
      this.client.on('error', noop)
      s.on('error', noop)
      try {
        const head = peeked === undefined ? undefined : peeked.chunks.length === 1 ? peeked.chunks[0] : Buffer.concat(peeked.chunks)
        this.handle = native.splice(this.client, s, {
          idleTimeoutMs: opts.idleTimeoutMs,
          halfCloseTimeoutMs: opts.halfCloseTimeoutMs,
          ...(head === undefined ? {} : { headAtoB: head }),
        }, (r) => { this.onNative(r) })
        return
      } catch {
        // Refused (no fd, bytes queued by JS, ...): both sockets are still ours, intact. Use JS.
        this.listener.ctx.m.nativeFallbacks.inc()
      }
    }
    if (peeked !== undefined) {
      // Peeked bytes go upstream first; not one byte is lost.
      for (const c of peeked.chunks) s.write(c)
      this.peekedBytes = peeked.length
    }
    this.handle = splice(this.client, s, {
      idleTimeoutMs: opts.idleTimeoutMs,
      halfCloseTimeoutMs: opts.halfCloseTimeoutMs,
      // The client's FIN may already have been consumed: seen by the peek, or
      // emitted as 'end' while it sat paused between peek and splice with no
      // listener left (issue #9: the flood hung on it). readableEnded tells both.
      clientEnded: this.client.readableEnded,
    }, (r) => { this.onSpliced(r) })
  }

  onSpliced (r: SpliceResult): void {
    if (this.peekedBytes > 0) r.clientToUpstream += this.peekedBytes
    this.result = r
    if (r.errno !== undefined) this.lastError = r.errno
    this.finish(SPLICE_TO_OUTCOME[r.cause])
  }

  onNative (r: NativeResult): void {
    // Native already reset where the cause calls for it; plain destroy releases the JS handles.
    this.client.destroy()
    this.upstreamSocket?.destroy()
    const res: SpliceResult = { clientToUpstream: r.aToB, upstreamToClient: r.bToA, cause: NATIVE_TO_SPLICE[r.cause] }
    if (r.errno !== undefined) res.errno = r.errno
    this.result = res
    if (r.errno !== undefined) this.lastError = r.errno
    this.finish(r.cause === 'error' ? 'error' : SPLICE_TO_OUTCOME[res.cause])
  }

  /** Give up before the splice: reset the client so it sees the failure. */
  fail (outcome: ConnOutcome, code: string): void {
    this.lastError = code
    if (this.peekTimer !== undefined) { clearTimeout(this.peekTimer); this.peekTimer = undefined }
    if (!this.client.destroyed) this.client.resetAndDestroy()
    this.finish(outcome)
  }

  /** Stop now (drain timeout, shutdown, route removed). */
  abort (): void {
    if (this.done) return
    if (this.handle !== undefined) { this.handle.abort(); return }
    this.upstreamSocket?.destroy()
    this.fail('aborted', 'KT_ERR_DRAIN_TIMEOUT')
  }

  finish (outcome: ConnOutcome): void {
    if (this.done) return
    this.done = true
    this.outcome = outcome
    // An early dial no connect took (the connection ended first): its stream or connection goes.
    this.early?.socket?.destroy()
    this.early = undefined
    if (this.drainTimer !== undefined) clearTimeout(this.drainTimer)
    if (this.upstreamSocket !== undefined) (this.upstream as Upstream).release(this.backend as Backend)
    this.listener.closed(this)
  }
}

function noop (): void {}

function onPeekData (this: ConnSocket, chunk: Buffer): void {
  const conn = this[kConn]
  conn.decide((conn.peeker as FirstFlightPeeker).push(chunk))
}

function onPeekEnd (this: ConnSocket): void {
  // The client half-closed before a decision: route what we have to the
  // default (the peeked bytes and the FIN are both forwarded).
  const conn = this[kConn]
  conn.endPeek()
  conn.routeDefault()
}

function onPeekTimeout (conn: Connection): void {
  conn.peekTimer = undefined
  if (conn.done || conn.routeOutcome !== undefined) return
  conn.endPeek()
  // After the deadline: the default route when the listener has one, else close. Both are counted.
  conn.route(conn.config.defaultUpstream, 'peek_timeout')
}

function onEarlyClientError (this: ConnSocket, err: Error): void {
  const conn = this[kConn]
  conn.lastError = errorCode(err)
}

function onEarlyClientClose (this: ConnSocket): void {
  const conn = this[kConn]
  if (conn.done) return
  conn.upstreamSocket?.destroy()
  if (conn.peekTimer !== undefined) { clearTimeout(conn.peekTimer); conn.peekTimer = undefined }
  conn.finish('client_closed')
}
