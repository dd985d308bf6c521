// Byte splicing inside the relay: the Buffers read from one socket are written
// to the other untouched. Backpressure is explicit (write() false → pause the
// reader, 'drain' → resume), a FIN is forwarded as a FIN (both sockets are
// allowHalfOpen), and an error on either side is forwarded as an RST with
// resetAndDestroy(), so the far end sees what the near end saw.
// Handlers live at module level with state in a symbol slot: no closures per
// chunk, nothing logged per chunk.

import type { Socket } from 'node:net'

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

/**
 * Splice `a` and `b` until both are closed, then call `done` once. Both sockets
 * must be connected (not destroyed) and created with allowHalfOpen; splice
 * installs its own 'error' listeners.
 */
export function splice (a: Socket, b: Socket, done: (r: SpliceResult) => void): void {
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
