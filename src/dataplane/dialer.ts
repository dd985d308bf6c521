// Dialers open upstream sockets. `direct` is net.connect; the relay client
// (src/relay/client.ts) is another Dialer, registered by name (`relay:<cluster>`).

import { connect, type Socket } from 'node:net'
import { KtError } from '../errors.js'

export interface DialRequest {
  host: string
  port: number
  timeoutMs: number
  /** The real client, for dialers that carry it (relay header). */
  source?: { address: string, port: number }
}

export interface Dialer {
  /** Resolves with a connected socket (allowHalfOpen, paused) ready to splice; rejects with a KtError or an errno error. */
  dial (req: DialRequest): Promise<Socket>
  /**
   * The dial's synchronous part, for a dialer that has one (the relay's: a
   * stream on a multiplexed connection, or a warm connection, its request
   * written now): the socket, or undefined when a connect must come first.
   * Then dial() with the same request object goes on from there.
   */
  dialNow? (req: DialRequest): Socket | undefined
}

export type DialCallback = (err: Error | null, socket?: Socket) => void

const kCb = Symbol('kt.dialCb')
const kTarget = Symbol('kt.dialTarget')
interface DialingSocket extends Socket { [kCb]: DialCallback | undefined, [kTarget]: string }

function settle (s: DialingSocket, err: Error | null): void {
  const cb = s[kCb]
  if (cb === undefined) return
  s[kCb] = undefined
  s.removeListener('connect', onConnect)
  s.removeListener('timeout', onConnectTimeout)
  s.setTimeout(0)
  if (err !== null) {
    s.removeListener('error', onConnectError)
    // Keep a no-op error listener: a late error on a discarded socket must not crash the process.
    s.on('error', noop)
    s.destroy()
    cb(err)
  } else {
    s.removeListener('error', onConnectError)
    cb(null, s)
  }
}

function noop (): void {}
function onConnect (this: DialingSocket): void { settle(this, null) }
function onConnectError (this: DialingSocket, err: Error): void { settle(this, err) }
function onConnectTimeout (this: DialingSocket): void {
  settle(this, new KtError('KT_ERR_CONNECT_TIMEOUT', `connect to ${this[kTarget]} timed out`))
}

/**
 * Connect directly with a timeout, callback style (no Promise per connection
 * on the hot path). The socket comes back paused, with allowHalfOpen and noDelay.
 */
export function dialDirect (host: string, port: number, timeoutMs: number, cb: DialCallback): Socket {
  const s = connect({ host, port, allowHalfOpen: true, noDelay: true }) as DialingSocket
  s.pause()
  s[kCb] = cb
  s[kTarget] = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
  s.once('connect', onConnect)
  s.once('error', onConnectError)
  if (timeoutMs > 0) {
    s.setTimeout(timeoutMs)
    s.once('timeout', onConnectTimeout)
  }
  return s
}

export const directDialer: Dialer = {
  dial (req) {
    return new Promise((resolve, reject) => {
      dialDirect(req.host, req.port, req.timeoutMs, (err, s) => { if (err !== null) reject(err); else resolve(s as Socket) })
    })
  },
}
