// The pure-JS splice: Buffers read from one socket are written to the other
// unchanged. Handlers are module-level functions and per-socket state lives in
// symbol slots, so a connection costs no closures (undici client-h1 style).
// Backpressure is explicit: write() === false pauses the source, 'drain'
// resumes it, so at most one socket's highWaterMark (~64 KiB) plus the
// kernel's buffers are held per direction.
//
// Reads: a TCP socket is switched to Node's `onread` mode (the net.Socket
// option, set here on a socket that already exists): the kernel's bytes land
// in a buffer this socket owns and go to the peer from a plain callback,
// without the Readable stream's push, buffer list and 'data' event, or a new
// ArrayBuffer per read. Measured on a pure-JS host (what macOS and Windows
// run), it carries 15-35% more keep-alive requests and 30-45% more bulk
// bytes per CPU than 'data' events (docs/benchmarks.md, "The JS splice's
// reads"). The buffer is reused while the peer's writes complete at once
// (the usual case); a write the kernel did not take whole keeps it, and the
// next read gets a new one. It starts at 512 bytes and doubles, up to 64 KiB,
// each time a read fills it, so an idle or chatty connection holds 512 bytes
// per side and a bulk one 64 KiB (at 4 KiB, 10,000 idle connections through
// the JS path held 14 KiB each, over issue #9's 10 KiB; at 1 KiB 9.0-10.8 KiB,
// at 512 bytes 7.8-8.1 KiB: the soak's idle-churn-js). A first message over
// 512 bytes takes a read more. Sockets that cannot (a relay mux stream, a TLS
// socket, bytes already buffered) and KT_JS_SPLICE=stream use 'data' events.

import { Socket } from 'node:net'
import type { Duplex } from 'node:stream'

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
const kReadBuf = Symbol('kt.readBuf')
const kReadFull = Symbol('kt.readFull')
const kFirstRead = Symbol('kt.firstRead')

interface SpliceSocket extends Socket {
  [kPair]: Pair
  [kPeer]: SpliceSocket
  [kIsClient]: boolean
  /** The onread buffer (fast reads), or undefined ('data' events). */
  [kReadBuf]: Buffer | undefined
  /** The last read filled the buffer. */
  [kReadFull]: boolean
  [kFirstRead]: (() => void) | undefined
}

/**
 * Call `fn` once, on the first bytes splice() reads from `s` (before it
 * passes them on), in either read mode. The relay dialer's pool refills when
 * a connection it lent gets its first byte back. A socket's own 'data'
 * listeners would not see an onread socket's bytes.
 */
export function onFirstSplicedRead (s: Socket, fn: () => void): void {
  (s as SpliceSocket)[kFirstRead] = fn
}

/**
 * A readable that is not a socket (a relay mux stream) may hand its chunks
 * to the splice straight from its producer instead of through push() and a
 * 'data' event: directSpliceData(s) is the splice's own handler while s is
 * spliced, undefined otherwise. The producer calls it, `this` the stream,
 * only while the stream flows with nothing buffered (what push() would have
 * emitted at once); the handler pauses the stream when the peer is full, as
 * for 'data' events, and the producer then pushes until it flows again.
 */
export function directSpliceData (s: Duplex): ((this: Duplex, chunk: Buffer) => void) | undefined {
  const ss = s as unknown as SpliceSocket
  return ss[kPair] !== undefined && ss[kReadBuf] === undefined ? onData as unknown as (this: Duplex, chunk: Buffer) => void : undefined
}

function firstRead (s: SpliceSocket): void {
  const fn = s[kFirstRead] as () => void
  s[kFirstRead] = undefined
  fn()
}

/** Node's slots behind net.Socket's `onread` option, found by their names; undefined: 'data' events only. */
interface OnreadSlots { readonly buf: symbol, readonly cb: symbol, readonly gen: symbol }

const READ_MIN = 512
const READ_MAX = 64 * 1024

function findOnreadSlots (): OnreadSlots | undefined {
  if (process.env.KT_JS_SPLICE === 'stream') return undefined
  const probe = new Socket()
  const by = new Map(Object.getOwnPropertySymbols(probe).map((sym) => [sym.description, sym]))
  probe.destroy()
  const buf = by.get('kBuffer')
  const cb = by.get('kBufferCb')
  const gen = by.get('kBufferGen')
  if (buf === undefined || cb === undefined || gen === undefined) return undefined
  return { buf, cb, gen }
}

const onread = findOnreadSlots()

/** Whether this splice reads with `onread` where it can ('stream': 'data' events everywhere). */
export function jsSpliceReads (): 'onread' | 'stream' {
  return onread === undefined ? 'stream' : 'onread'
}

/** How a socket given to splice() reads: 'onread', 'data' events, or 'none' (never spliced). For tests. */
export function spliceReadsOf (s: Socket): 'onread' | 'data' | 'none' {
  const ss = s as SpliceSocket
  if (ss[kPair] === undefined) return 'none'
  return ss[kReadBuf] !== undefined ? 'onread' : 'data'
}

/** The size of an onread socket's current read buffer (it grows under bulk). For tests. */
export function spliceReadBufferSize (s: Socket): number {
  return (s as SpliceSocket)[kReadBuf]?.length ?? 0
}

type Slots = Record<symbol, unknown>
interface UserBufferHandle { useUserBuffer?: (b: Uint8Array) => void, reading?: boolean }

/** Switch a connected TCP socket to onread mode; false leaves it untouched ('data' events). */
function useFastReads (s: SpliceSocket): boolean {
  if (onread === undefined || !(s instanceof Socket) || (s as { encrypted?: boolean }).encrypted === true) return false
  const h = (s as unknown as { _handle: UserBufferHandle | null })._handle
  if (h === null || typeof h.useUserBuffer !== 'function') return false
  const slots = s as unknown as Slots
  // Bytes already in the stream, or someone else reading 'data' (they would see nothing): 'data' events.
  if (slots[onread.buf] !== null || s.readableLength > 0 || s.readableEnded || s.connecting || s.listenerCount('data') > 0) return false
  const buf = Buffer.allocUnsafeSlow(READ_MIN)
  s[kReadBuf] = buf
  s[kReadFull] = false
  slots[onread.buf] = buf
  slots[onread.cb] = onFastRead
  slots[onread.gen] = nextReadBuf
  h.useUserBuffer(buf)
  return true
}

// Node calls the buffer generator right after the read callback, without a
// `this`: the callback leaves its socket here (no closure per socket).
let justRead: SpliceSocket | undefined

// Called by Node for each read in onread mode, with `this` the socket. False stops reading until 'drain'.
function onFastRead (this: SpliceSocket, n: number, buf: Buffer): boolean {
  justRead = this
  if (this[kFirstRead] !== undefined) firstRead(this)
  const pair = this[kPair]
  if (this[kIsClient]) pair.c2u += n
  else pair.u2c += n
  this[kReadFull] = n === buf.length
  const peer = this[kPeer]
  if (peer.destroyed) return true
  return peer.write(n === buf.length ? buf : buf.subarray(0, n))
}

// Called by Node right after onFastRead: the buffer for the next read.
function nextReadBuf (): Buffer | undefined {
  const s = justRead
  justRead = undefined
  if (s === undefined) return undefined // not after one of our reads: Node keeps the current buffer
  const cur = s[kReadBuf] as Buffer
  const grow = s[kReadFull] && cur.length < READ_MAX
  if (!grow && s[kPeer].writableLength === 0) return cur // the peer took every byte: reuse
  const next = Buffer.allocUnsafeSlow(grow ? cur.length * 2 : cur.length)
  s[kReadBuf] = next
  return next
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
  if (this[kFirstRead] !== undefined) firstRead(this)
  const pair = this[kPair]
  if (this[kIsClient]) pair.c2u += chunk.length
  else pair.u2c += chunk.length
  const peer = this[kPeer]
  if (!peer.destroyed && !peer.write(chunk)) this.pause()
}

function onDrain (this: SpliceSocket): void {
  // Our write buffer emptied: let the peer feed us again. (An onread socket
  // whose callback returned false stopped reading without pausing its
  // stream; Socket.resume() starts its reads again.)
  const peer = this[kPeer]
  if (peer.destroyed) return
  if (peer[kReadBuf] !== undefined) peer.resume()
  else if (peer.isPaused()) peer.resume()
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
    if (!useFastReads(s)) s.on('data', onData)
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
    // An onread socket is resumed either way: its reads start and its
    // stream flows, so its EOF is emitted as 'end'.
    if (opts.clientEnded === true) {
      pair.clientEnded = true
      u.end()
    } else if (c[kReadBuf] !== undefined || c.isPaused()) {
      c.resume()
    }
    if (u[kReadBuf] !== undefined || u.isPaused()) u.resume()
  }
  return pair
}
