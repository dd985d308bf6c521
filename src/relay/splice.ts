// Byte splicing inside the relay: the Buffers read from one socket are written
// to the other untouched. Backpressure is explicit (write() false → pause the
// reader, 'drain' → resume), a FIN is forwarded as a FIN (both sockets are
// allowHalfOpen), and an error on either side is forwarded as an RST with
// resetAndDestroy(), so the far end sees what the near end saw.
// Handlers live at module level with state in a symbol slot: no closures per
// chunk, nothing logged per chunk.

import type { Socket } from 'node:net'
import type { NativeSplicer, SpliceResult as NativeResult } from '../dataplane/native/index.js'

export type SpliceEnd = 'closed' | 'reset' | 'error'

export interface SpliceResult {
  /** Bytes from `a` to `b`. */
  readonly aToB: number
  readonly bToA: number
  readonly end: SpliceEnd
  readonly error?: Error
}

const kPeer = Symbol('kt.relay.peer')
const kState = Symbol('kt.relay.splice')

interface State {
  a: Socket
  aToB: number
  bToA: number
  closed: number
  end: SpliceEnd
  error: Error | undefined
  done: (r: SpliceResult) => void
}

interface Spliced extends Socket {
  [kPeer]: Spliced
  [kState]: State
}

function onData (this: Spliced, chunk: Buffer): void {
  const st = this[kState]
  if (this === st.a) st.aToB += chunk.length
  else st.bToA += chunk.length
  if (!this[kPeer].write(chunk)) this.pause()
}

function onDrain (this: Spliced): void {
  this[kPeer].resume()
}

function onEnd (this: Spliced): void {
  // Half-close: our reader saw FIN, so send FIN the other way once queued bytes are out.
  const peer = this[kPeer]
  if (!peer.destroyed) peer.end()
}

function onError (this: Spliced, err: Error): void {
  const st = this[kState]
  if (st.error === undefined) {
    st.error = err
    const code = (err as NodeJS.ErrnoException).code
    st.end = code === 'ECONNRESET' || code === 'EPIPE' ? 'reset' : 'error'
  }
  const peer = this[kPeer]
  // An abortive close on one side becomes an abortive close on the other.
  if (!peer.destroyed) peer.resetAndDestroy()
}

function onClose (this: Spliced): void {
  const st = this[kState]
  const peer = this[kPeer]
  // A side that closed without an error while the peer still holds unsent
  // data or an open read side: finish the peer gracefully.
  if (!peer.destroyed && peer.writable) peer.end()
  if (++st.closed < 2) return
  const r: { aToB: number, bToA: number, end: SpliceEnd, error?: Error } = { aToB: st.aToB, bToA: st.bToA, end: st.end }
  if (st.error !== undefined) r.error = st.error
  st.done(r)
}

let native: NativeSplicer | undefined

/** Splice natively from now on (main.ts, when the addon loads), or in JS again (undefined). */
export function useNativeSplicer (s: NativeSplicer | undefined): void {
  native = s
}

/** Which splice new connections get. */
export function spliceKind (): 'native' | 'js' {
  return native !== undefined ? 'native' : 'js'
}

/**
 * Splice `a` and `b` until both are closed, then call `done` once. Both sockets
 * must be connected (not destroyed) and created with allowHalfOpen; splice
 * installs its own 'error' listeners. With a native splicer (useNativeSplicer)
 * the pair goes to the addon's threads once JS has flushed what it wrote to
 * either (the relay's reply, a PROXY header); anything that rules the handoff
 * out (a side already ended, the addon refusing the pair) keeps it in JS.
 */
export function splice (a: Socket, b: Socket, done: (r: SpliceResult) => void): void {
  if (native === undefined || a.readableEnded || b.readableEnded) { jsSplice(a, b, done); return }
  a.on('error', ignore)
  b.on('error', ignore)
  a.pause()
  b.pause()
  handOff(native, a, b, done, 0)
}

function ignore (): void {}

// Writes JS made just before (the reply, a PROXY header) leave writableLength
// only on a later tick, even when the kernel took them at once: wait, bounded.
const HANDOFF_TRIES = 64

function handOff (n: NativeSplicer, a: Socket, b: Socket, done: (r: SpliceResult) => void, tries: number): void {
  if (a.destroyed || b.destroyed) {
    a.destroy()
    b.destroy()
    whenBothClosed(a, b, () => done({ aToB: 0, bToA: 0, end: 'reset' }))
    return
  }
  const ready = a.writableLength === 0 && b.writableLength === 0
  if (!ready && tries < HANDOFF_TRIES && !a.writableEnded && !b.writableEnded) { setImmediate(handOff, n, a, b, done, tries + 1); return }
  if (ready && !a.writableEnded && !b.writableEnded && !a.readableEnded && !b.readableEnded) {
    try {
      n.splice(a, b, { idleTimeoutMs: 0 }, (r) => nativeDone(a, b, r, done))
      return
    } catch { /* the addon refused the pair; nothing was taken from either socket */ }
  }
  a.removeListener('error', ignore)
  b.removeListener('error', ignore)
  jsSplice(a, b, done)
}

function nativeDone (a: Socket, b: Socket, r: NativeResult, done: (r: SpliceResult) => void): void {
  a.destroy()
  b.destroy()
  const end: SpliceEnd = r.cause === 'eof' ? 'closed' : r.cause === 'reset-a' || r.cause === 'reset-b' ? 'reset' : 'error'
  const res: { aToB: number, bToA: number, end: SpliceEnd, error?: Error } = { aToB: r.aToB, bToA: r.bToA, end }
  if (end !== 'closed') res.error = Object.assign(new Error(`native splice ended: ${r.cause}${r.errno !== undefined ? ` (${r.errno})` : ''}`), { code: r.errno ?? r.cause })
  // As the JS splice does: the result once both sockets have closed.
  whenBothClosed(a, b, () => done(res))
}

function whenBothClosed (a: Socket, b: Socket, cb: () => void): void {
  let left = 2
  const one = (): void => { if (--left === 0) cb() }
  for (const s of [a, b]) {
    if (s.closed) one()
    else s.once('close', one)
  }
}

function jsSplice (a: Socket, b: Socket, done: (r: SpliceResult) => void): void {
  const sa = a as Spliced
  const sb = b as Spliced
  const st: State = { a, aToB: 0, bToA: 0, closed: 0, end: 'closed', error: undefined, done }
  sa[kPeer] = sb
  sb[kPeer] = sa
  sa[kState] = st
  sb[kState] = st
  for (const s of [sa, sb]) {
    s.on('data', onData)
    s.on('drain', onDrain)
    s.on('end', onEnd)
    s.on('error', onError)
    s.on('close', onClose)
    s.resume()
  }
}
