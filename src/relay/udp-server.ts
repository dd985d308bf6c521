// The relay's half of a UDP flow (BIND command CMD_UDP, docs/relay-protocol.md
// "UDP flows"): the authenticated connection carries framed datagrams
// (udp-frame.ts); the relay sends each one as a real datagram from one
// connected UDP socket to the allowlisted destination (the node's NodePort),
// and frames every datagram that socket receives back to the host, in order.
//
// - The host owns the flow's life (its UDP plane's idle timeout): its FIN or
//   close ends the flow here. TCP keepalive (server.ts) reaps a vanished host.
// - Bounded buffering both ways, drops counted, nothing queued forever:
//   datagrams to the destination beyond UDP_SENDQ_MAX waiting in the kernel
//   path are dropped; datagrams to the host while the connection's write
//   buffer holds more than UDP_BACKLOG_MAX bytes are dropped.
// - ICMP port unreachable from the destination (ECONNREFUSED on the connected
//   socket) ends the connection with a FIN: the host takes it as its backend
//   refusing (passive health) and moves the flow to another backend. A reset
//   is the relay refusing (auth, allowlist, cap), which says nothing about the
//   backend.
// - A frame longer than 65,507 bytes is a protocol error: reset, counted.
//
// Like server.ts, this module ships alone in the relay image (node:dgram, no
// node_modules).

import { createSocket, type Socket as Dgram } from 'node:dgram'
import { isIP, type Socket } from 'node:net'
import { FrameDecoder, encodeFrame } from './udp-frame.js'
import type { Address } from './protocol.js'

/** Bytes queued toward the host before datagrams from the destination are dropped. */
export const UDP_BACKLOG_MAX = 512 * 1024
/** Datagrams queued toward the destination (dgram's send queue) before more are dropped. */
export const UDP_SENDQ_MAX = 256

export interface UdpRelayCounters {
  udpFlows: number
  /** Flows open now. */
  udpActive: number
  udpDatagramsUp: number
  udpDatagramsDown: number
  /** Datagrams dropped by the bounds above, or by a failed send. */
  udpDropped: number
  /** Connections reset for an oversize frame. */
  udpFrameErrors: number
}

export interface UdpFlowResult {
  /** Payload bytes host → destination. */
  readonly aToB: number
  readonly bToA: number
  readonly end: 'closed' | 'reset' | 'error'
  readonly error?: Error
}

export interface UdpFlowOptions {
  readonly sock: Socket
  readonly destination: Address
  /** Bind the flow's socket here when the family matches (the relay's own address: never a wildcard). */
  readonly bindHost: string
  /** Frames that came with the BIND. */
  readonly leftover: Buffer
  readonly counters: UdpRelayCounters
  /** The socket is connected: return false to give up (the relay connection went meanwhile). */
  readonly ready: () => boolean
  /** Whether the host sent its FIN while the socket was being set up. */
  readonly ended: () => boolean
  /** Setting up the socket failed (bind or connect): the caller refuses with UNREACHABLE. */
  readonly failed: (err: NodeJS.ErrnoException) => void
  readonly done: (r: UdpFlowResult) => void
  readonly onFrameError?: (err: Error) => void
}

function noop (): void {}

export function relayUdpFlow (o: UdpFlowOptions): void {
  const fam = isIP(o.destination.address)
  const dg: Dgram = createSocket({ type: fam === 6 ? 'udp6' : 'udp4', ...(fam === 6 ? { ipv6Only: true } : {}) })
  const c = o.counters
  let up = 0
  let down = 0
  let open = false
  let finished = false
  let end: UdpFlowResult['end'] = 'closed'
  let error: Error | undefined
  const sock = o.sock

  const finish = (): void => {
    if (finished) return
    finished = true
    if (open) c.udpActive--
    try { dg.close() } catch { /* closed */ }
    o.done(error === undefined ? { aToB: up, bToA: down, end } : { aToB: up, bToA: down, end, error })
  }

  const setupError = (err: NodeJS.ErrnoException): void => {
    if (open || finished) return
    finished = true
    try { dg.close() } catch { /* closed */ }
    o.failed(err)
  }
  dg.once('error', setupError)

  const toDestination = (frames: Buffer[]): void => {
    for (const d of frames) {
      if (dg.getSendQueueCount() >= UDP_SENDQ_MAX) { c.udpDropped++; continue }
      up += d.length
      c.udpDatagramsUp++
      dg.send(d)
    }
  }

  const decoder = new FrameDecoder()
  const fromHost = (chunk: Buffer): void => {
    toDestination(decoder.push(chunk))
    const err = decoder.error
    if (err === undefined || finished) return
    c.udpFrameErrors++
    end = 'error'
    error = err
    o.onFrameError?.(err)
    sock.resetAndDestroy()
    finish()
  }

  const start = (): void => {
    if (!o.ready()) { finished = true; try { dg.close() } catch { /* closed */ } return }
    open = true
    c.udpFlows++
    c.udpActive++
    dg.removeListener('error', setupError)
    dg.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') {
        // ICMP port unreachable: the destination does not serve this port. A
        // FIN (not a reset: that is a refusal) tells the host, which fails this backend over.
        end = 'closed'
        error = err
        sock.end()
        sock.destroySoon()
        finish()
        return
      }
      c.udpDropped++
    })
    dg.on('message', (msg) => {
      if (sock.writableLength > UDP_BACKLOG_MAX || !sock.writable) { c.udpDropped++; return }
      down += msg.length
      c.udpDatagramsDown++
      sock.write(encodeFrame(msg))
    })
    sock.on('data', fromHost)
    sock.on('end', () => { end = 'closed'; sock.end(); finish() })
    sock.on('error', (err: Error) => { end = 'reset'; error = err; finish() })
    sock.once('close', finish)
    if (o.leftover.length > 0) fromHost(o.leftover)
    if (o.ended()) { sock.end(); finish(); return }
    sock.resume()
  }

  const connectDg = (): void => {
    dg.connect(o.destination.port, o.destination.address, start)
  }
  if (isIP(o.bindHost) === fam) dg.bind({ address: o.bindHost, port: 0, exclusive: true }, connectDg)
  else connectDg()
  sock.on('error', noop)
}
