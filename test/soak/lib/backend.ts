// A backend worker process for the soak runner and reliability tests.
//
//   node backend.js '{"mode":"line","host":"127.0.0.1","count":1}'
//
// Modes (every listener on port 0 of `host`):
//   line    line echo: each "\n"-terminated line is written back; a line that
//           starts with "Q" is echoed and then the backend ends the connection,
//           so the server side closes first (its TIME_WAIT, not the client's:
//           60,000 short connections must not use up the client's ports).
//   stream  raw echo of every byte (optionally after a banner line naming the
//           backend, so a client can tell which backend serves it).
//   stall   accepts and never reads: the proxy's backpressure must hold.
//   tls     TLS with a fresh self-signed certificate; answers one small
//           HTTP/1.1 response per connection.
//   delay   a forwarder to `target` that holds every chunk `delayMs` in each
//           direction (this kernel has no netem qdisc, so link delay is
//           simulated here); order is kept, and at most 1 MiB is held per
//           direction before the sender is paused.
// Announces {"event":"ready","listening":[...],"pid":N} on stdout, then serves
// RPC (`stats`). Exits when its stdin ends.

import { connect, createServer, type Server, type Socket } from 'node:net'
import { createServer as createTlsServer } from 'node:tls'
import { fileURLToPath } from 'node:url'
import { selfSigned } from '../../support/tls.js'
import { serveRpc } from './rpc.js'

export interface BackendConfig {
  mode: 'line' | 'stream' | 'stall' | 'tls' | 'delay'
  host?: string
  count?: number
  port?: number
  banner?: string
  /** tls: the certificate's name. */
  cn?: string
  /** delay: where to forward, and the one-way delay. */
  target?: { host: string, port: number }
  delayMs?: number
}

const DELAY_HOLD_MAX = 1024 * 1024

/** Forward src → dst, each chunk `delayMs` late. Timers of equal duration fire in order, so bytes stay in order. */
function delayed (src: Socket, dst: Socket, delayMs: number): void {
  let held = 0
  src.on('data', (chunk: Buffer) => {
    held += chunk.length
    if (held > DELAY_HOLD_MAX) src.pause()
    setTimeout(() => {
      held -= chunk.length
      if (!dst.destroyed) dst.write(chunk)
      if (held <= DELAY_HOLD_MAX / 2 && src.isPaused()) src.resume()
    }, delayMs)
  })
  src.on('end', () => { setTimeout(() => { if (!dst.destroyed) dst.end() }, delayMs) })
}

const stats = { accepted: 0, active: 0, bytesIn: 0 }
const sockets = new Set<Socket>()

function track (s: Socket): void {
  stats.accepted++
  stats.active++
  sockets.add(s)
  s.on('error', noop)
  s.once('close', () => { stats.active--; sockets.delete(s) })
}

function noop (): void {}

const kBuf = Symbol('buf')
interface LineSocket extends Socket { [kBuf]: string }

function onLineData (this: LineSocket, chunk: Buffer): void {
  stats.bytesIn += chunk.length
  let buf = this[kBuf] + chunk.toString('latin1')
  let i
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i + 1)
    buf = buf.slice(i + 1)
    if (line.charCodeAt(0) === 0x51 /* Q */) { this.end(line, 'latin1'); this[kBuf] = ''; return }
    this.write(line, 'latin1')
  }
  // A runaway line (no newline) is bounded: echo it as it comes.
  if (buf.length > 65_536) { this.write(buf, 'latin1'); buf = '' }
  this[kBuf] = buf
}

function onLineEnd (this: Socket): void { this.end() }

function handler (cfg: BackendConfig): (s: Socket) => void {
  switch (cfg.mode) {
    case 'line':
      return (s) => {
        track(s)
        ;(s as LineSocket)[kBuf] = ''
        s.on('data', onLineData)
        s.on('end', onLineEnd)
      }
    case 'stream':
      return (s) => {
        track(s)
        if (cfg.banner !== undefined) s.write(`${cfg.banner}\n`)
        s.on('data', (c: Buffer) => { stats.bytesIn += c.length })
        s.pipe(s)
      }
    case 'stall':
      return (s) => { track(s); s.pause() }
    case 'delay':
      return (s) => {
        track(s)
        const t = cfg.target as { host: string, port: number }
        const u = connect({ host: t.host, port: t.port, allowHalfOpen: true })
        u.on('error', noop)
        // A clean close of one side must not cut the other: delayed bytes
        // and the delayed FIN are still on their way. Only an error does.
        s.once('close', (hadError) => { if (hadError) u.destroy() })
        u.once('close', (hadError) => { if (hadError) s.destroy() })
        delayed(s, u, cfg.delayMs ?? 50)
        delayed(u, s, cfg.delayMs ?? 50)
      }
    default:
      throw new Error(`unknown mode ${String(cfg.mode)}`)
  }
}

async function listen (server: Server, host: string, port: number): Promise<{ host: string, port: number }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host, port, backlog: 4096 }, () => { server.removeListener('error', reject); resolve() })
  })
  const a = server.address() as { port: number }
  return { host, port: a.port }
}

export async function runBackend (cfg: BackendConfig): Promise<void> {
  const host = cfg.host ?? '127.0.0.1'
  const listening: Array<{ host: string, port: number }> = []
  for (let i = 0; i < (cfg.count ?? 1); i++) {
    let server: Server
    if (cfg.mode === 'tls') {
      const cn = cfg.cn ?? 'backend.test'
      const cert = selfSigned(cn)
      const body = `backend=${cn}\n`
      server = createTlsServer({ key: cert.key, cert: cert.cert }, (s) => {
        track(s)
        s.once('data', () => { s.end(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`) })
      })
    } else {
      server = createServer({ allowHalfOpen: true }, handler(cfg))
    }
    listening.push(await listen(server, host, cfg.port ?? 0))
  }
  serveRpc({
    stats: () => ({ ...stats }),
  })
  process.stdout.write(JSON.stringify({ event: 'ready', listening, pid: process.pid }) + '\n')
}

const isMain = process.argv[1] === fileURLToPath(import.meta.url)
// Inert without a config (tap loads every file under dist/test).
if (isMain && process.argv[2] !== undefined && process.env.TAP !== '1') {
  await runBackend(JSON.parse(process.argv[2]) as BackendConfig)
}
