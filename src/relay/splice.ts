// Byte splicing inside the relay: the addon's splicer when it loaded (the
// relay always runs on Linux), else the data plane's one JS splice
// (dataplane/splice.ts: explicit backpressure, a FIN forwarded as a FIN, an
// error or a cut on either side forwarded as an RST). Both are in the relay
// image: it is built from the import closure of relay/main.js, and neither
// imports a package. This module maps their results to the relay's
// (aToB/bToA, closed/reset/error) and waits for the JS writes made before a
// hand-over to the addon.

import type { Socket } from 'node:net'
import type { NativeSplicer, SpliceResult as NativeResult } from '../dataplane/native/index.js'
import { splice as jsSpliceSockets, type SpliceResult as JsResult } from '../dataplane/splice.js'

export type SpliceEnd = 'closed' | 'reset' | 'error'

export interface SpliceResult {
  /** Bytes from `a` to `b`. */
  readonly aToB: number
  readonly bToA: number
  readonly end: SpliceEnd
  readonly error?: Error
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
  // The relay bounds nothing by time once spliced: the host's data plane owns idle and half-close timeouts.
  // A side whose FIN was read before the splice will not say so again: tell the splice.
  jsSpliceSockets(a, b, { idleTimeoutMs: 0, halfCloseTimeoutMs: 0, clientEnded: a.readableEnded }, (r) => done(fromJs(r)))
}

function fromJs (r: JsResult): SpliceResult {
  if (r.cause === 'eof') return { aToB: r.clientToUpstream, bToA: r.upstreamToClient, end: 'closed' }
  const code = r.errno ?? r.cause
  const end: SpliceEnd = r.errno === undefined || r.errno === 'ECONNRESET' || r.errno === 'EPIPE' ? 'reset' : 'error'
  return { aToB: r.clientToUpstream, bToA: r.upstreamToClient, end, error: Object.assign(new Error(`splice ended: ${code}`), { code }) }
}
