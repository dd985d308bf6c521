// The pure-JS splice: Buffers read from one socket are written to the other
// unchanged. Handlers are module-level functions and per-socket state lives in
// symbol slots, so a connection costs no closures (undici client-h1 style).
// Backpressure is explicit: write() === false pauses the source, 'drain'
// resumes it, so at most one socket's highWaterMark (~64 KiB) plus the
// kernel's buffers are held per direction.

import type { Socket } from 'node:net'

export type SpliceCause =
  | 'eof' // both directions ended cleanly
  | 'reset-client' // the client reset (or errored); the upstream was reset
  | 'reset-upstream' // the upstream reset (or errored); the client was reset
  | 'idle-timeout'
  | 'aborted' // destroyed from outside (drain timeout, shutdown, route removed)

export interface SpliceResult {
  /** Bytes read from the client and written upstream (excluding any head written before the splice). */
  clientToUpstream: number
  /** Bytes read from the upstream and written to the client. */
  upstreamToClient: number
  cause: SpliceCause
  /** errno of the error that ended it, when one did. */
  errno?: string
}

export interface SpliceHandle {
  abort (cause?: SpliceCause): void
}

const kPair = Symbol('kt.pair')
const kPeer = Symbol('kt.peer')
const kIsClient = Symbol('kt.isClient')

interface SpliceSocket extends Socket {
  [kPair]: Pair
  [kPeer]: SpliceSocket
  [kIsClient]: boolean
}

class Pair implements SpliceHandle {
  readonly client: SpliceSocket
  readonly upstream: SpliceSocket
  c2u = 0
  u2c = 0
  clientEnded = false
  upstreamEnded = false
  closed = 0
  done = false
  cause: SpliceCause | undefined
  errno: string | undefined
  readonly idleMs: number
  readonly halfCloseMs: number
  readonly cb: (r: SpliceResult) => void

  constructor (client: Socket, upstream: Socket, idleMs: number, halfCloseMs: number, cb: (r: SpliceResult) => void) {
    this.client = client as SpliceSocket
    this.upstream = upstream as SpliceSocket
    this.idleMs = idleMs
    this.halfCloseMs = halfCloseMs
    this.cb = cb
  }

  abort (cause: SpliceCause = 'aborted'): void {
    if (this.cause === undefined) this.cause = cause
    // A forcibly ended connection is reset on both sides: the peers must not
    // mistake a cut transfer for a complete one.
    if (!this.client.destroyed) this.client.resetAndDestroy()
    if (!this.upstream.destroyed) this.upstream.resetAndDestroy()
  }

  finish (): void {
    if (this.done) return
    this.done = true
    const r: SpliceResult = { clientToUpstream: this.c2u, upstreamToClient: this.u2c, cause: this.cause ?? 'eof' }
    if (this.errno !== undefined) r.errno = this.errno
    this.cb(r)
  }
}

function onData (this: SpliceSocket, chunk: Buffer): void {
  const pair = this[kPair]
  if (this[kIsClient]) pair.c2u += chunk.length
  else pair.u2c += chunk.length
  const peer = this[kPeer]
  if (!peer.destroyed && !peer.write(chunk)) this.pause()
}

function onDrain (this: SpliceSocket): void {
  // Our write buffer emptied: let the peer feed us again.
  const peer = this[kPeer]
  if (!peer.destroyed && peer.isPaused()) peer.resume()
}

function onEnd (this: SpliceSocket): void {
  // Half-close: our peer's write side ends after its queued writes flush.
  const pair = this[kPair]
  if (this[kIsClient]) pair.clientEnded = true
  else pair.upstreamEnded = true
  const peer = this[kPeer]
  if (!peer.destroyed) peer.end()
  if (pair.clientEnded && pair.upstreamEnded) return
  // One direction is done. The other may run as long as it stays active, but
  // a half-closed connection that goes quiet is closed sooner than the idle
  // timeout (anchors: half-close 30 s).
  if (pair.halfCloseMs > 0 && pair.halfCloseMs < pair.idleMs) pair.client.setTimeout(pair.halfCloseMs)
}

function onError (this: SpliceSocket, err: NodeJS.ErrnoException): void {
  const pair = this[kPair]
  if (pair.cause === undefined) {
    pair.cause = this[kIsClient] ? 'reset-client' : 'reset-upstream'
    pair.errno = err.code ?? 'UNKNOWN'
  }
  // RST propagation: an error on one side resets the other, so the peer sees
  // a reset rather than a clean (and misleading) end of stream.
  const peer = this[kPeer]
  if (!peer.destroyed) peer.resetAndDestroy()
}

function onTimeout (this: SpliceSocket): void {
  const pair = this[kPair]
  pair.abort('idle-timeout')
}

function onClose (this: SpliceSocket): void {
  const pair = this[kPair]
  // A socket closed without error before both directions ended (e.g. destroyed
  // by its peer's error handler) takes the other side with it.
  const peer = this[kPeer]
  if (!peer.destroyed) {
    if (pair.clientEnded && pair.upstreamEnded) peer.destroy()
    else if (!(this[kIsClient] ? pair.clientEnded : pair.upstreamEnded)) {
      if (pair.cause === undefined) pair.cause = this[kIsClient] ? 'reset-client' : 'reset-upstream'
      peer.resetAndDestroy()
    }
  }
  if (++pair.closed === 2) pair.finish()
}

export interface SpliceOptions {
  idleTimeoutMs: number
  halfCloseTimeoutMs?: number
  /** The client already sent FIN (seen while peeking): end the upstream's write side after the head. */
  clientEnded?: boolean
}

/**
 * Splice two connected sockets until both directions end or either side
 * fails. Both sockets must have been created with `allowHalfOpen: true`. The
 * callback runs exactly once, after both sockets have closed.
 */
export function splice (client: Socket, upstream: Socket, opts: SpliceOptions, cb: (r: SpliceResult) => void): SpliceHandle {
  const pair = new Pair(client, upstream, opts.idleTimeoutMs, opts.halfCloseTimeoutMs ?? 30_000, cb)
  const c = pair.client
  const u = pair.upstream
  c[kPair] = pair
  u[kPair] = pair
  c[kPeer] = u
  u[kPeer] = c
  c[kIsClient] = true
  u[kIsClient] = false
  for (const s of [c, u]) {
    s.on('data', onData)
    s.on('drain', onDrain)
    s.on('end', onEnd)
    s.on('error', onError)
    s.on('close', onClose)
  }
  // Node's socket timeout resets on reads and on completed writes, so the
  // client socket alone sees activity in both directions.
  if (opts.idleTimeoutMs > 0) {
    c.setTimeout(opts.idleTimeoutMs)
    c.on('timeout', onTimeout)
  }
  if (c.destroyed || u.destroyed) {
    // Either side died before the splice began; its 'close' may already have fired.
    pair.abort(c.destroyed ? 'reset-client' : 'reset-upstream')
    queueMicrotask(() => { if (c.destroyed && u.destroyed && !pair.done) { pair.closed = 2; pair.finish() } })
  } else {
    if (opts.clientEnded === true) {
      pair.clientEnded = true
      u.end()
    } else if (c.isPaused()) {
      c.resume()
    }
    if (u.isPaused()) u.resume()
  }
  return pair
}
