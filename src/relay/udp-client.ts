// The host's half of a UDP flow through the relay (BIND command CMD_UDP,
// docs/relay-protocol.md "UDP flows"). One flow (one client address:port →
// one Service port, as the host's UDP plane keys them) is one relay
// connection, taken from the warm pool like a TCP dial, with no round trip:
// BIND, then framed datagrams (udp-frame.ts) both ways.
//
// - send() frames a datagram; while the connection's write buffer holds more
//   than HOST_BACKLOG_MAX bytes (the relay or the engine's forwarder is slow)
//   it drops and says so (false), so the plane counts the drop instead of
//   queueing without bound.
// - The relay's FIN during the flow is ICMP port unreachable from the
//   destination: an ECONNREFUSED-coded error, and the plane fails that
//   backend over (passive health), as it does for a direct flow. A reset is
//   the relay refusing (wrong token, allowlist, its connection cap): an
//   ECONNRESET-coded error; the plane tries another backend without holding
//   it against this one.
// - An oversize frame from the relay is KT_ERR_RELAY_FRAME: the flow ends.
//
// The channel shapes are structural copies of src/dataplane/udp/plane.ts's
// (DatagramChannel, DatagramHandlers), so neither module imports the other.

import type { Socket } from 'node:net'
import { KtError } from '../errors.js'
import { FrameDecoder, encodeFrame, UDP_MAX_PAYLOAD } from './udp-frame.js'

/** Bytes waiting to be written to the relay before datagrams from the client are dropped. */
export const HOST_BACKLOG_MAX = 512 * 1024
/** How long a closed flow waits for the relay's FIN before the socket is destroyed. */
const CLOSE_GRACE_MS = 2000

// The shapes a flow's datagram path has (send is false when a datagram is
// dropped: backlog full, too large, closed; error is called once, and nothing
// after), shared with the UDP plane that uses them.
import type { DatagramChannel, DatagramHandlers } from '../dataplane/udp/plane.js'
export type { DatagramChannel, DatagramHandlers }

interface UdpDialer {
  dial (req: { host: string, port: number, timeoutMs: number, source?: { address: string, port: number } }, opts: { udp: boolean }): Promise<Socket>
  readonly carriesUdp: boolean | undefined
}

function gone (code: string, message: string): NodeJS.ErrnoException {
  const e = new Error(message) as NodeJS.ErrnoException
  e.code = code
  return e
}

export async function openUdpFlow (dialer: UdpDialer, req: { host: string, port: number, timeoutMs: number, source?: { address: string, port: number } }, h: DatagramHandlers): Promise<DatagramChannel> {
  if (dialer.carriesUdp === false) {
    throw new KtError('KT_ERR_UDP_RELAY', 'the relay container runs an older image that carries no UDP; `up` replaces it (docs/relay-protocol.md "Replacing older relays")')
  }
  const sock = await dialer.dial(req, { udp: true })
  const decoder = new FrameDecoder()
  let done = false
  const fail = (err: NodeJS.ErrnoException): void => {
    if (done) return
    done = true
    sock.destroy()
    h.error(err)
  }
  sock.on('data', (chunk: Buffer) => {
    if (done) return
    for (const f of decoder.push(chunk)) h.message(f)
    if (decoder.error !== undefined) fail(decoder.error)
  })
  sock.on('error', (err: NodeJS.ErrnoException) => {
    // A reset is the relay's refusal (see its log): not the backend's doing.
    fail(err.code === 'ECONNRESET' || err.code === 'EPIPE' ? gone('ECONNRESET', `the relay reset the flow to ${req.host}:${req.port} (refused: see the relay's log)`) : err)
  })
  sock.on('end', () => {
    if (done) { sock.destroy(); return }
    fail(gone('ECONNREFUSED', `${req.host}:${req.port} is unreachable (ICMP port unreachable, through the relay)`))
  })
  sock.on('close', () => { fail(gone('ECONNRESET', `the relay connection of the flow to ${req.host}:${req.port} closed`)) })
  sock.resume()
  return {
    send (msg) {
      if (done || msg.length > UDP_MAX_PAYLOAD || sock.writableLength > HOST_BACKLOG_MAX) return false
      sock.write(encodeFrame(msg))
      return true
    },
    close () {
      if (done) return
      done = true
      sock.end()
      const t = setTimeout(() => sock.destroy(), CLOSE_GRACE_MS)
      t.unref()
      sock.once('close', () => clearTimeout(t))
    },
  }
}
