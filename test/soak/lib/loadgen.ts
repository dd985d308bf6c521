// A load-generator worker process: holds idle connections, drives churn,
// slowloris and floods, measures latency, and streams byte-exact transfers.
// It runs outside the proxy's process so the proxy's RSS and CPU are its own.
//
//   node loadgen.js '{}'     then JSON-lines RPC on stdin/stdout (see rpc.ts)
//
// Every operation is bounded in count and in time; every socket it opens is
// destroyed when the operation ends or the process exits.

import { createHash, randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { fileURLToPath } from 'node:url'
import { tlsFlight } from '../../fixtures/peek-helpers.js'
import { serveRpc, type RpcMessage } from './rpc.js'
import { bump, summarize } from './stats.js'

interface Target { host: string, port: number }

function target (m: RpcMessage): Target {
  return { host: String(m.host ?? '127.0.0.1'), port: Number(m.port) }
}

function sources (m: RpcMessage): string[] {
  return Array.isArray(m.sources) && m.sources.length > 0 ? m.sources.map(String) : []
}

function open (t: Target, localAddress: string | undefined): Socket {
  return connect({ host: t.host, port: t.port, allowHalfOpen: true, noDelay: true, ...(localAddress === undefined ? {} : { localAddress }) })
}

function codeOf (err: unknown): string {
  return (err as NodeJS.ErrnoException)?.code ?? 'ERROR'
}

/** Run `n` tasks with at most `width` in flight. */
async function pool (n: number, width: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  const lanes = Array.from({ length: Math.min(width, n) }, async () => {
    while (next < n) {
      const i = next++
      await task(i)
    }
  })
  await Promise.all(lanes)
}

/** Write `msg`, resolve true once exactly the same bytes came back (false on error, close or timeout). */
function echoOnce (s: Socket, msg: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let got = ''
    const done = (ok: boolean): void => {
      clearTimeout(timer)
      s.removeListener('data', onData)
      s.removeListener('close', onClose)
      resolve(ok)
    }
    const onData = (c: Buffer): void => {
      got += c.toString('latin1')
      if (got.length >= msg.length) done(got === msg)
    }
    const onClose = (): void => done(false)
    const timer = setTimeout(() => done(false), timeoutMs)
    s.on('data', onData)
    s.once('close', onClose)
    s.write(msg, 'latin1')
  })
}

// ---- idle connections ----------------------------------------------------

interface Held { s: Socket, dropped: boolean, err: string | undefined }
const held: Held[] = []
let closingIdle = false

async function idleOpen (m: RpcMessage): Promise<Record<string, unknown>> {
  const t = target(m)
  const src = sources(m)
  const count = Number(m.count)
  const hello = typeof m.hello === 'string' ? m.hello : undefined
  const timeoutMs = Number(m.timeoutMs ?? 10_000)
  const errors: Record<string, number> = {}
  let opened = 0
  const started = Date.now()
  closingIdle = false
  await pool(count, Number(m.concurrency ?? 200), async (i) => {
    const s = open(t, src.length > 0 ? src[i % src.length] : undefined)
    const h: Held = { s, dropped: false, err: undefined }
    s.on('error', (e) => { h.err ??= codeOf(e) })
    const ok = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs)
      s.once('connect', () => {
        clearTimeout(timer)
        echoOnce(s, hello ?? `HELLO ${i}\n`, timeoutMs).then(resolve, () => resolve(false))
      })
      s.once('close', () => { clearTimeout(timer); resolve(false) })
    })
    if (!ok) { bump(errors, h.err ?? 'no_echo'); s.destroy(); return }
    s.once('close', () => { if (!closingIdle) h.dropped = true })
    held.push(h)
    opened++
  })
  return { opened, failed: count - opened, errors, ms: Date.now() - started, held: held.length }
}

async function idleCheck (m: RpcMessage): Promise<Record<string, unknown>> {
  const errors: Record<string, number> = {}
  let ok = 0
  let dropped = 0
  const nonce = randomBytes(4).toString('hex')
  const list = held.slice()
  await pool(list.length, Number(m.concurrency ?? 500), async (i) => {
    const h = list[i] as Held
    if (h.dropped || h.s.destroyed) { dropped++; bump(errors, h.err ?? 'dropped'); return }
    if (await echoOnce(h.s, `ECHO ${i} ${nonce}\n`, 10_000)) ok++
    else bump(errors, h.err ?? 'no_echo')
  })
  return { checked: list.length, ok, dropped, errors }
}

function idleStatus (): Record<string, unknown> {
  let dropped = 0
  for (const h of held) if (h.dropped) dropped++
  return { held: held.length, dropped }
}

function idleClose (): Record<string, unknown> {
  closingIdle = true
  const n = held.length
  for (const h of held) h.s.destroy()
  held.length = 0
  return { closed: n }
}

// ---- churn -----------------------------------------------------------------

/**
 * Open-loop churn: `rate` new connections per second for `seconds`, each
 * writing one line starting with Q (the line backend echoes it and closes
 * first). Records connect-to-first-byte for each, and every failure by code.
 */
async function churn (m: RpcMessage): Promise<Record<string, unknown>> {
  const t = target(m)
  const src = sources(m)
  const rate = Number(m.rate)
  const seconds = Number(m.seconds)
  const timeoutMs = Number(m.timeoutMs ?? 10_000)
  const maxInflight = Number(m.maxInflight ?? 5000)
  // An optional first flight (an HTTP head naming a route) before the Q line.
  const prefix = typeof m.prefix === 'string' ? m.prefix : ''
  const keepRaw = m.raw === true
  const total = Math.round(rate * seconds)
  const lat = new Float64Array(total)
  let nLat = 0
  let launched = 0
  let ok = 0
  let inflight = 0
  let skipped = 0
  const errors: Record<string, number> = {}
  const start = performance.now()
  let lastDone = start

  const one = (seq: number): void => {
    inflight++
    const t0 = performance.now()
    const msg = `${prefix}Q ${seq} ${'x'.repeat(32)}\n`
    const s = open(t, src.length > 0 ? src[seq % src.length] : undefined)
    let got = ''
    let first = true
    let err: string | undefined
    let settled = false
    const timer = setTimeout(() => { err ??= 'TIMEOUT'; s.destroy() }, timeoutMs)
    s.on('data', (c: Buffer) => {
      if (first) { first = false; lat[nLat++] = performance.now() - t0 }
      got += c.toString('latin1')
    })
    s.on('end', () => { s.end() })
    s.on('error', (e) => { err ??= codeOf(e) })
    s.on('close', () => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      inflight--
      lastDone = performance.now()
      if (err === undefined && got === msg) ok++
      else bump(errors, err ?? (got.length === 0 ? 'closed_without_reply' : 'short_or_wrong_reply'))
    })
    s.write(msg, 'latin1')
  }

  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const elapsed = (performance.now() - start) / 1000
      const due = Math.min(total, Math.floor(elapsed * rate))
      while (launched < due) {
        if (inflight >= maxInflight) { skipped++; launched++; continue }
        one(launched++)
      }
      if (launched >= total) { clearInterval(iv); resolve() }
    }
    const iv = setInterval(tick, 5)
  })
  // Let the last ones finish (bounded).
  const end = Date.now() + timeoutMs + 1000
  while (inflight > 0 && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 20))
  if (skipped > 0) bump(errors, 'not_sent_inflight_cap', skipped)
  const failed = total - ok
  return {
    attempted: total,
    ok,
    failed,
    errors,
    stillInflight: inflight,
    seconds: (lastDone - start) / 1000,
    achievedRate: total / ((lastDone - start) / 1000),
    latency: summarize(lat, nLat),
    ...(keepRaw ? { raw: Array.from(lat.subarray(0, Math.min(nLat, 20_000)), (v) => Math.round(v * 100) / 100) } : {}),
  }
}

// ---- latency of normal clients ----------------------------------------------

/** `n` sequential requests (TLS with SNI, or plain HTTP with Host); connect to last byte of the response, ms. */
async function latency (m: RpcMessage): Promise<Record<string, unknown>> {
  const t = target(m)
  const n = Number(m.n)
  const servername = typeof m.servername === 'string' ? m.servername : undefined
  const gapMs = Number(m.gapMs ?? 0)
  const samples = new Float64Array(n)
  let k = 0
  const errors: Record<string, number> = {}
  const deadline = Date.now() + Number(m.budgetMs ?? 60_000)
  for (let i = 0; i < n && Date.now() < deadline; i++) {
    const t0 = performance.now()
    const ok = await new Promise<boolean>((resolve) => {
      const s: Socket = servername !== undefined
        ? tlsConnect({ host: t.host, port: t.port, servername, rejectUnauthorized: false })
        : connect({ host: t.host, port: t.port })
      let got = 0
      const timer = setTimeout(() => { bump(errors, 'TIMEOUT'); s.destroy(); resolve(false) }, 10_000)
      s.on('error', (e) => { bump(errors, codeOf(e)) })
      s.on('data', (c: Buffer) => { got += c.length })
      s.once(servername !== undefined ? 'secureConnect' : 'connect', () => {
        s.write(`GET / HTTP/1.1\r\nHost: ${servername ?? 'a.test'}\r\n\r\n`)
      })
      s.once('close', () => { clearTimeout(timer); resolve(got > 0) })
    })
    if (ok) samples[k++] = performance.now() - t0
    if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs))
  }
  return { ok: k, errors, latency: summarize(samples, k) }
}

// ---- slowloris -------------------------------------------------------------

/**
 * `count` clients that each send the first bytes of a real ClientHello one
 * byte every `intervalMs`, and never finish it. Resolves when every one was
 * cut (or at `budgetMs`): how long each lived, and how it was closed.
 */
async function slowloris (m: RpcMessage): Promise<Record<string, unknown>> {
  const t = target(m)
  const src = sources(m)
  const count = Number(m.count)
  const intervalMs = Number(m.intervalMs ?? 1000)
  const budgetMs = Number(m.budgetMs ?? 60_000)
  const hello = tlsFlight({ sni: 'slow.a.test' })
  // Never the whole hello: the peeker must not get a decision.
  const prefix = hello.subarray(0, Math.min(hello.length - 1, 120))
  const lifetimes = new Float64Array(count)
  let closed = 0
  let connected = 0
  const kinds: Record<string, number> = {}
  const sockets: Socket[] = []
  const pos = new Int32Array(count)
  const t0s = new Float64Array(count)
  await new Promise<void>((resolve) => {
    let iv: NodeJS.Timeout | undefined
    const finish = (): void => { clearInterval(iv); clearTimeout(budget); resolve() }
    const budget = setTimeout(finish, budgetMs)
    for (let i = 0; i < count; i++) {
      const s = open(t, src.length > 0 ? src[i % src.length] : undefined)
      sockets.push(s)
      let kind: string | undefined
      s.on('error', (e) => { kind ??= codeOf(e) === 'ECONNRESET' ? 'reset' : codeOf(e) })
      s.on('end', () => { kind ??= 'fin'; s.end() })
      s.once('connect', () => {
        connected++
        t0s[i] = performance.now()
        s.write(prefix.subarray(0, 1))
        pos[i] = 1
      })
      s.once('close', () => {
        lifetimes[closed++] = t0s[i] === 0 ? 0 : performance.now() - (t0s[i] as number)
        bump(kinds, kind ?? 'close')
        if (closed === count) finish()
      })
    }
    // One shared timer dribbles a byte into every live client.
    iv = setInterval(() => {
      for (let i = 0; i < count; i++) {
        const s = sockets[i] as Socket
        const p = pos[i] as number
        if (p === 0 || s.destroyed || p >= prefix.length) continue
        s.write(prefix.subarray(p, p + 1))
        pos[i] = p + 1
      }
    }, intervalMs)
  })
  for (const s of sockets) s.destroy()
  return { count, connected, closed, kinds, lifetime: summarize(lifetimes, closed) }
}

// ---- flood of random bytes and truncated hellos ------------------------------

type FloodKind = 'random' | 'random_tls_header' | 'truncated_hello' | 'hello' | 'http' | 'oversize_http' | 'empty'

/**
 * `n` connections with hostile or odd first flights. Most half-close after
 * writing (FIN), so each reaches a routing decision at once; `rstShare` of them
 * reset instead. Waits for every socket to close (bounded).
 */
async function flood (m: RpcMessage): Promise<Record<string, unknown>> {
  const t = target(m)
  const n = Number(m.n)
  const rstShare = Number(m.rstShare ?? 0.1)
  const all: FloodKind[] = ['random', 'random_tls_header', 'truncated_hello', 'hello', 'http', 'oversize_http', 'empty']
  const kinds = Array.isArray(m.kinds) ? all.filter((k) => (m.kinds as string[]).includes(k)) : all
  const hung: Record<string, number> = {}
  const fullHello = tlsFlight({ sni: 'a.test' })
  const byKind: Record<string, number> = {}
  const byEnd: Record<string, number> = {}
  const closes: Record<string, number> = {}
  let timeouts = 0
  await pool(n, Number(m.concurrency ?? 100), async (i) => {
    const kind = kinds[i % kinds.length] as FloodKind
    const rst = Math.random() < rstShare
    bump(byKind, kind)
    bump(byEnd, rst ? 'rst' : 'fin')
    let payload: Buffer
    switch (kind) {
      case 'random': payload = randomBytes(1 + Math.floor(Math.random() * 4096)); break
      case 'random_tls_header': payload = Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), randomBytes(2 + Math.floor(Math.random() * 2048))]); break
      case 'truncated_hello': payload = fullHello.subarray(0, 1 + Math.floor(Math.random() * (fullHello.length - 1))); break
      case 'hello': payload = fullHello; break
      case 'http': payload = Buffer.from('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n'); break
      case 'oversize_http': payload = Buffer.from('GET / HTTP/1.1\r\nX-Pad: ' + 'p'.repeat(17_000)); break
      case 'empty': payload = Buffer.alloc(0); break
    }
    await new Promise<void>((resolve) => {
      const s = open(t, undefined)
      let kindSeen: string | undefined
      const timer = setTimeout(() => { timeouts++; bump(hung, kind); s.destroy() }, Number(m.timeoutMs ?? 15_000))
      s.on('error', (e) => { kindSeen ??= codeOf(e) === 'ECONNRESET' ? 'reset' : codeOf(e) })
      s.on('data', () => {})
      s.on('end', () => { kindSeen ??= 'fin'; s.end() })
      s.once('connect', () => {
        if (payload.length > 0) s.write(payload)
        if (rst) setImmediate(() => { s.resetAndDestroy() })
        else s.end()
      })
      s.once('close', () => { clearTimeout(timer); bump(closes, rst ? 'client_reset' : (kindSeen ?? 'close')); resolve() })
    })
  })
  return { n, byKind, byEnd, closes, timeouts, hung }
}

// ---- byte-exact transfers ------------------------------------------------------

/**
 * `clients` concurrent transfers of `bytes` each through an echo backend,
 * optionally paced to `rateBytesPerSec`; each compares the sha256 of what it
 * sent with what came back. With `banner`, the backend's first line names it.
 */
async function stream (m: RpcMessage): Promise<Record<string, unknown>> {
  const t = target(m)
  const clients = Number(m.clients)
  const bytes = Number(m.bytes)
  const rate = Number(m.rateBytesPerSec ?? 0)
  const banner = m.banner === true
  const timeoutMs = Number(m.timeoutMs ?? 120_000)
  const chunk = 16 * 1024
  const results = await Promise.all(Array.from({ length: clients }, (_, idx) => new Promise<Record<string, unknown>>((resolve) => {
    const t0 = performance.now()
    const s = open(t, undefined)
    const sent = createHash('sha256')
    const recv = createHash('sha256')
    let received = 0
    let written = 0
    let backend: string | undefined
    let head = ''
    let err: string | undefined
    let ended = false
    const timer = setTimeout(() => { err ??= 'TIMEOUT'; s.destroy() }, timeoutMs)
    s.on('error', (e) => { err ??= codeOf(e) })
    s.on('data', (c: Buffer) => {
      if (banner && backend === undefined) {
        head += c.toString('latin1')
        const nl = head.indexOf('\n')
        if (nl < 0) return
        backend = head.slice(0, nl)
        c = Buffer.from(head.slice(nl + 1), 'latin1')
      }
      received += c.length
      recv.update(c)
    })
    s.on('end', () => { ended = true })
    s.once('close', () => {
      clearTimeout(timer)
      const a = sent.digest('hex')
      const b = recv.digest('hex')
      resolve({ client: idx, backend, written, received, exact: err === undefined && ended && written === bytes && received === bytes && a === b, error: err, cleanEnd: ended, ms: performance.now() - t0 })
    })
    const block = randomBytes(chunk)
    let seq = 0
    const pump = (): void => {
      while (written < bytes && !s.destroyed) {
        if (rate > 0) {
          // Paced: stay at `rate` on average, so a transfer is still running when a fault hits.
          const aheadMs = (written / rate) * 1000 - (performance.now() - t0)
          if (aheadMs > 1) { setTimeout(pump, aheadMs); return }
        }
        const n = Math.min(chunk, bytes - written)
        const b = Buffer.from(block.subarray(0, n))
        b.writeUInt32BE(seq++ >>> 0, 0)
        sent.update(b)
        written += n
        if (!s.write(b) && written < bytes) { s.once('drain', pump); return }
      }
      if (written >= bytes && !s.destroyed && !s.writableEnded) s.end()
    }
    s.once('connect', pump)
  })))
  return { results }
}

/**
 * Push into a backend that never reads: `clients` connections write as fast
 * as backpressure lets them for `seconds`; returns how many bytes each got
 * accepted (kernel buffers plus what the proxy holds).
 */
async function stall (m: RpcMessage): Promise<Record<string, unknown>> {
  const t = target(m)
  const clients = Number(m.clients)
  const seconds = Number(m.seconds)
  const block = randomBytes(64 * 1024)
  const sockets: Socket[] = []
  const accepted = new Float64Array(clients)
  const errors: Record<string, number> = {}
  for (let i = 0; i < clients; i++) {
    const s = open(t, undefined)
    sockets.push(s)
    s.on('error', (e) => { bump(errors, codeOf(e)) })
    const pump = (): void => {
      while (!s.destroyed) {
        const ok = s.write(block, () => { accepted[i] = (accepted[i] as number) + block.length })
        if (!ok) { s.once('drain', pump); return }
      }
    }
    s.once('connect', pump)
  }
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
  let open_ = 0
  for (const s of sockets) { if (!s.destroyed) open_++; s.destroy() }
  return { clients, stillOpen: open_, errors, acceptedBytes: summarize(accepted) }
}

const isMain = process.argv[1] === fileURLToPath(import.meta.url)
// Inert without a config (tap loads every file under dist/test).
if (isMain && process.argv[2] !== undefined && process.env.TAP !== '1') {
  serveRpc({
    'idle-open': idleOpen,
    'idle-check': idleCheck,
    'idle-status': idleStatus,
    'idle-close': idleClose,
    churn,
    latency,
    slowloris,
    flood,
    stream,
    stall,
  })
  process.stdout.write(JSON.stringify({ event: 'ready', pid: process.pid }) + '\n')
}
