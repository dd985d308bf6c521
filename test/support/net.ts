// Real-socket helpers for tests: servers on 127.0.0.1 port 0, clients, hashes.

import { createHash, randomBytes } from 'node:crypto'
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { once } from 'node:events'
import { ListenerManager, type DataplaneOptions } from '../../src/dataplane/listener-manager.js'
import { silentLogger } from '../../src/observe/logger.js'
import { Registry } from '../../src/observe/metrics.js'
import type { ListenerSpec, RouteTable, UpstreamSpec } from '../../src/routing/types.js'

export interface TestServer {
  server: Server
  port: number
  accepts: number
  sockets: Set<Socket>
  close (): Promise<void>
}

/** Start a TCP server on 127.0.0.1:0 with `allowHalfOpen`; `onConn` handles each socket. */
export async function startServer (onConn: (s: Socket) => void, host = '127.0.0.1'): Promise<TestServer> {
  const sockets = new Set<Socket>()
  const ts: TestServer = {
    server: createServer({ allowHalfOpen: true }, (s) => {
      ts.accepts++
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => {})
      onConn(s)
    }),
    port: 0,
    accepts: 0,
    sockets,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => ts.server.close(() => resolve()))
    },
  }
  ts.server.listen(0, host)
  await once(ts.server, 'listening')
  ts.port = (ts.server.address() as AddressInfo).port
  return ts
}

/** Echo server: writes back what it reads, ends when the client ends. */
export function startEcho (host = '127.0.0.1'): Promise<TestServer> {
  return startServer((s) => { s.pipe(s) }, host)
}

/** Connect with allowHalfOpen and wait for the connection. */
export async function dial (port: number, host = '127.0.0.1'): Promise<Socket> {
  const s = connect({ port, host, allowHalfOpen: true })
  await once(s, 'connect')
  return s
}

/** Read everything until 'end'; resolves with the bytes (rejects on error). */
export function readAll (s: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    s.on('data', (c: Buffer) => chunks.push(c))
    s.once('end', () => resolve(Buffer.concat(chunks)))
    s.once('error', reject)
  })
}

/** Send `data` to port, half-close, and read everything back until 'end' (an echo, through a proxy or not). */
export async function echoThrough (port: number, data: Buffer, host = '127.0.0.1'): Promise<Buffer> {
  const s = await dial(port, host)
  const back = readAll(s)
  s.end(data)
  return await back
}

/** Hash everything read until 'end', without keeping it. */
export function hashAll (s: Socket): Promise<{ sha: string, bytes: number }> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256')
    let bytes = 0
    s.on('data', (c: Buffer) => { h.update(c); bytes += c.length })
    s.once('end', () => resolve({ sha: h.digest('hex'), bytes }))
    s.once('error', reject)
  })
}

/** Write `total` pseudo-random bytes with backpressure, then end. Resolves with their sha256. */
export async function writeRandom (s: Socket, total: number, chunk = 256 * 1024): Promise<string> {
  const h = createHash('sha256')
  const block = randomBytes(chunk)
  let sent = 0
  let i = 0
  while (sent < total) {
    const n = Math.min(chunk, total - sent)
    // Vary the bytes per block cheaply so reordering would be caught.
    const b = Buffer.from(block.subarray(0, n))
    b.writeUInt32BE(i++ >>> 0, 0)
    h.update(b)
    sent += n
    if (!s.write(b)) await once(s, 'drain')
  }
  s.end()
  return h.digest('hex')
}

/** Resolve with how the socket ended: 'end' (FIN), 'reset' (ECONNRESET) or another error code. */
export function closeKind (s: Socket): Promise<string> {
  return new Promise((resolve) => {
    let kind: string | undefined
    s.on('data', () => {})
    s.once('end', () => { kind ??= 'end'; s.end() })
    s.once('error', (e: NodeJS.ErrnoException) => { kind ??= e.code === 'ECONNRESET' ? 'reset' : (e.code ?? 'error') })
    s.once('close', () => resolve(kind ?? 'close'))
  })
}

export function upstream (id: string, ...ports: number[]): UpstreamSpec {
  return { id, endpoints: ports.map((port) => ({ host: '127.0.0.1', port })) }
}

let nextHost = 1
/**
 * A plain L4 listener on port 0. Each call uses its own loopback address
 * (127.0.0.1, 127.0.0.2, ...) so several port-0 listeners in one table keep
 * distinct keys.
 */
export function l4 (def: UpstreamSpec, extra: Partial<ListenerSpec> = {}): ListenerSpec {
  const host = `127.0.0.${(nextHost++ % 200) + 1}`
  return { host, port: 0, routes: [], default: def, ...extra }
}

export interface TestProxy {
  manager: ListenerManager
  registry: Registry
  host: string
  hosts: string[]
  port: number
  ports: number[]
  close (): Promise<void>
}

/** A ListenerManager applying `table` (port 0 listeners get real ports). */
export async function startProxy (listeners: ListenerSpec[], options: Partial<DataplaneOptions> = {}): Promise<TestProxy> {
  const registry = new Registry()
  // KT_TEST_SPLICE=native runs the same tests through the native splice addon (see native-mode.test.ts).
  const splicer = process.env.KT_TEST_SPLICE === 'native' ? (await import('../../src/dataplane/native/index.js')).loadNativeSplicer() : undefined
  if (process.env.KT_TEST_SPLICE === 'native' && splicer === undefined) throw new Error('KT_TEST_SPLICE=native but the addon is not available')
  const manager = new ListenerManager({ logger: silentLogger(), metrics: registry, options: { accessLog: false, ...options }, splicer })
  const table: RouteTable = { version: 1, listeners }
  const res = await manager.apply(table)
  if (res.failed.length > 0) throw new Error(JSON.stringify(res.failed))
  // Report in table order (binds complete in any order).
  const byKey = new Map(res.bound.map((b) => [b.key, b]))
  const bound = listeners.map((l) => byKey.get(`${l.host}:${l.port}`) as { host: string, port: number })
  const ports = bound.map((b) => b.port)
  return { manager, registry, host: bound[0]?.host ?? '127.0.0.1', hosts: bound.map((b) => b.host), port: ports[0] as number, ports, close: async () => { await manager.close(500); splicer?.close() } }
}

export { sleep, waitFor } from './wait.js'
