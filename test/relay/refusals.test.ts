// Every refusal is counted and happens BEFORE any dial: the counters show
// nothing dialled. Protocol v2: a refusal the host waits for (before or at an
// ACKed AUTH, a BIND with ANSWER) is a status then close; any other is a TCP
// reset, so no byte of the relay's can reach a client as data.
import t from 'tap'
import { connect, type Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import { NonceCache, type RelayHandle } from '../../src/relay/server.js'
import { startTestRelay, relayPath } from '../support/relay-path.js'
import { RelayDialer, relayHandshake } from '../../src/relay/client.js'
import { encodeAuth, encodeConnect, Status, VERSION, INFO_UDP, INFO_MUX, INFO_LANE, INFO_MUX_LANE } from '../../src/relay/protocol.js'
import { Registry } from '../../src/observe/metrics.js'
import { silentLogger } from '../../src/observe/logger.js'

const token = randomBytes(32)
// Never dialled: every destination below is refused first.
const ALLOW = ['10.255.255.0/24']

async function relay (t: Tap, extra: { headerTimeoutMs?: number, authWindowMs?: number } = {}): Promise<RelayHandle> {
  const r = await startTestRelay({ host: '127.0.0.1', port: 0, token, allow: ALLOW, ports: { min: 30000, max: 32767, extra: [10256] }, connectTimeoutMs: 500, headerTimeoutMs: extra.headerTimeoutMs ?? 300, metrics: new Registry(), logger: silentLogger(), ...(extra.authWindowMs !== undefined ? { authWindowMs: extra.authWindowMs } : {}) })
  t.teardown(() => r.destroy())
  return r
}
type Tap = { teardown (fn: () => unknown): void }

/** Send bytes, collect what the relay answers until it closes (bounded), and whether it reset. */
function exchange (port: number, bytes: Buffer, opts: { end?: boolean } = {}): Promise<{ reply: Buffer, ms: number, reset: boolean }> {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const s: Socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true })
    const parts: Buffer[] = []
    let reset = false
    const timer = setTimeout(() => { s.destroy(); reject(new Error('relay did not close within 5 s')) }, 5000)
    s.on('data', (c: Buffer) => parts.push(c))
    s.on('error', (err: NodeJS.ErrnoException) => { if (err.code === 'ECONNRESET') reset = true })
    s.once('close', () => { clearTimeout(timer); resolve({ reply: Buffer.concat(parts), ms: Date.now() - started, reset }) })
    s.once('connect', () => {
      s.write(bytes)
      if (opts.end === true) s.end()
    })
    s.once('end', () => s.end())
  })
}

const auth = (tok = token, o: { ack?: boolean, now?: number, nonce?: Buffer } = { ack: true }): Buffer => encodeAuth(tok, o)
// info: INFO_UDP (this relay carries UDP flows) and INFO_MUX (multiplexed connections), not native.
// The addon's lane says so in its answers (INFO_LANE), and that it serves the carriers too (INFO_MUX_LANE).
const ok = Buffer.from([VERSION, Status.OK, INFO_UDP | INFO_MUX | (relayPath() === 'native' ? INFO_LANE | INFO_MUX_LANE : 0)])
const status = (st: number): number[] => [VERSION, st, 0]
const bind = (address: string, port: number, answer = true): Buffer => encodeConnect({ address, port }, undefined, false, answer)

t.test('a wrong token: AUTH to a host that waits, a reset to one that does not', async (t) => {
  const r = await relay(t)
  const waits = await exchange(r.address.port, Buffer.concat([auth(randomBytes(32)), bind('10.255.255.1', 30080)]))
  t.same([...waits.reply], status(Status.AUTH))
  const zeroRtt = await exchange(r.address.port, Buffer.concat([auth(randomBytes(32), {}), bind('10.255.255.1', 30080, false), Buffer.from('GET / HTTP/1.1\r\n\r\n')]))
  t.same([...zeroRtt.reply], [], 'not one byte of the relay reaches the client')
  t.ok(zeroRtt.reset, 'a reset')
  t.equal(r.counters.refusedAuth, 2)
  t.equal(r.counters.authenticated, 0)
  t.equal(r.counters.dialed, 0)
})

t.test('a stale timestamp (either way) and a replayed AUTH are refused', async (t) => {
  const r = await relay(t)
  const old = await exchange(r.address.port, auth(token, { ack: true, now: Date.now() - 31_000 }))
  t.same([...old.reply], status(Status.STALE), '31 s old')
  const ahead = await exchange(r.address.port, auth(token, { ack: true, now: Date.now() + 31_000 }))
  t.same([...ahead.reply], status(Status.STALE), '31 s ahead')
  t.equal(r.counters.refusedStale, 2)
  const once = auth(token, { ack: true })
  const first = await exchange(r.address.port, Buffer.concat([once, bind('10.255.255.1', 22)]))
  t.same([...first.reply], [...ok, ...status(Status.DENIED)], 'the first use authenticates')
  const again = await exchange(r.address.port, Buffer.concat([once, bind('10.255.255.1', 22)]))
  t.same([...again.reply], status(Status.AUTH), 'the same AUTH bytes again: a replay')
  t.equal(r.counters.refusedReplay, 1)
  t.equal(r.counters.authenticated, 1)
  t.equal(r.counters.dialed, 0)
})

t.test('an AUTH dated just past the window is refused STALE; once inside it, it works once, then is a replay', async (t) => {
  // On the addon's path the first one is judged stale by the addon's clock and
  // handed back with that verdict: JS, reading its clock a little later, must
  // not find it fresh (its nonce would then be in neither cache).
  const r = await relay(t, { authWindowMs: 1000 })
  const early = auth(token, { ack: true, now: Date.now() + 1200 })
  const first = await exchange(r.address.port, Buffer.concat([early, bind('10.255.255.1', 22)]))
  t.same([...first.reply], status(Status.STALE), 'ahead of the window: STALE')
  await new Promise((resolve) => setTimeout(resolve, 500))
  const second = await exchange(r.address.port, Buffer.concat([early, bind('10.255.255.1', 22)]))
  t.same([...second.reply], [...ok, ...status(Status.DENIED)], 'inside the window now: it authenticates (its nonce was never taken)')
  const third = await exchange(r.address.port, Buffer.concat([early, bind('10.255.255.1', 22)]))
  t.same([...third.reply], status(Status.AUTH), 'then a replay')
  t.equal(r.counters.authenticated, 1)
})

t.test('NonceCache remembers a nonce for more than two windows, through any rotations', async (t) => {
  // An AUTH stays acceptable at most two windows after its nonce is first seen
  // (its timestamp within a window of the clock then, and for a window after).
  let misses = 0
  for (let i = 0; i < 2000; i++) {
    const w = 1 + Math.floor(Math.random() * 1000)
    const start = 1_700_000_000_000 + Math.floor(Math.random() * 10_000)
    const c = new NonceCache(w, 1_000_000, start)
    const first = start + Math.floor(Math.random() * 3 * w)
    const n = randomBytes(16)
    let now = first
    c.add(n, now)
    const until = first + 2 * w
    // Other AUTHs at random times force rotations on the way.
    while (now < until) {
      now = Math.min(until, now + Math.floor(Math.random() * w * 0.7) + 1)
      c.add(randomBytes(16), now)
      if (c.add(n, now) !== 'seen') { misses++; break }
    }
  }
  t.equal(misses, 0, 'never forgotten within two windows of its first use')
})

t.test('a truncated AUTH is refused at the header deadline', async (t) => {
  const r = await relay(t, { headerTimeoutMs: 200 })
  const h = auth()
  const { reply, ms } = await exchange(r.address.port, h.subarray(0, h.length - 5))
  t.same([...reply], status(Status.HEADER))
  t.ok(ms >= 150 && ms < 2000, `refused after ${ms} ms`)
  t.equal(r.counters.refusedHeader, 1)
  t.equal(r.counters.dialed, 0)
})

t.test('a truncated BIND is reset at the deadline, and one cut by FIN at once', async (t) => {
  const r = await relay(t, { headerTimeoutMs: 200 })
  const c = bind('10.255.255.1', 30080)
  const slow = await exchange(r.address.port, Buffer.concat([auth(), c.subarray(0, 4)]))
  t.same([...slow.reply], [...ok])
  t.ok(slow.reset)
  // The FIN case against a relay with a 5 s deadline: refused well before it
  // (a 150 ms bound against a 200 ms deadline failed at load 15).
  const patient = await relay(t, { headerTimeoutMs: 5000 })
  const cut = await exchange(patient.address.port, Buffer.concat([auth(), c.subarray(0, 4)]), { end: true })
  t.same([...cut.reply], [...ok])
  t.ok(cut.ms < 2500, `FIN inside a header is refused without waiting for the 5 s deadline (${cut.ms} ms)`)
  t.equal(r.counters.refusedHeader + patient.counters.refusedHeader, 2)
  t.equal(r.counters.dialed + patient.counters.dialed, 0)
})

t.test('garbage, and a version-1 HELLO, are answered on their first bytes', async (t) => {
  const r = await relay(t, { headerTimeoutMs: 5000 })
  const { reply, ms } = await exchange(r.address.port, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))
  t.same([...reply], status(Status.HEADER))
  t.ok(ms < 1000)
  const v1 = await exchange(r.address.port, Buffer.concat([Buffer.from('KTRL'), Buffer.from([1, 32]), token]))
  t.same([...v1.reply], status(Status.VERSION), 'an older host is told the version, and its raw token is never read')
  t.equal(r.counters.dialed, 0)
})

t.test('loopback, link-local, unlisted addresses and ports are DENIED before any dial', async (t) => {
  const r = await relay(t)
  const dests: Array<[string, number]> = [
    ['127.0.0.1', 30080], ['::1', 30080], ['::ffff:127.0.0.1', 30080], ['169.254.169.254', 30080], ['169.254.169.254', 80],
    ['fe80::1', 30080], ['0.0.0.0', 30080], ['10.255.255.1', 22], ['10.255.255.1', 6443], ['10.255.255.1', 29999],
    ['10.255.254.1', 30080], ['8.8.8.8', 30080],
  ]
  for (const [address, port] of dests) {
    const { reply } = await exchange(r.address.port, Buffer.concat([auth(), bind(address, port)]))
    t.same([...reply], [...ok, ...status(Status.DENIED)], `${address}:${port}`)
    const quiet = await exchange(r.address.port, Buffer.concat([auth(token, {}), bind(address, port, false), Buffer.from('payload')]))
    t.ok(quiet.reply.length === 0 && quiet.reset, `${address}:${port} without ANSWER: a reset, no bytes`)
  }
  t.equal(r.counters.refusedDenied, dests.length * 2)
  t.equal(r.counters.dialed, 0, 'nothing dialled')
})

t.test('the dialer surfaces refusals as codes', async (t) => {
  const r = await relay(t)
  const d = new RelayDialer({ host: '127.0.0.1', port: r.address.port, token, poolSize: 2, transport: 'pool' })
  t.teardown(() => d.close())
  t.ok(await d.warm(2000), 'pool filled')
  await t.rejects(d.dial({ host: '127.0.0.1', port: 30080, timeoutMs: 2000 }), { code: 'KT_ERR_RELAY_DENIED' }, 'loopback: refused on the host')
  await t.rejects(d.dial({ host: '169.254.169.254', port: 30080, timeoutMs: 2000 }), { code: 'KT_ERR_RELAY_DENIED' })
  await t.rejects(d.dial({ host: '10.255.255.1', port: 22, timeoutMs: 2000 }, { answer: true }), { code: 'KT_ERR_RELAY_DENIED' }, 'the relay\'s own refusal, when asked')
  await t.rejects(d.dial({ host: 'node.example', port: 30080, timeoutMs: 2000 }), { code: 'KT_ERR_INVALID_ADDRESS' })
  t.ok(d.stats().hits >= 1, 'pooled connections were used')
  t.equal(d.stats().dataPath, 'js', 'the relay reported its data path')
  const wrong = new RelayDialer({ host: '127.0.0.1', port: r.address.port, token: randomBytes(32), poolSize: 0, transport: 'pool' })
  await t.rejects(wrong.dial({ host: '10.255.255.1', port: 30080, timeoutMs: 2000 }, { answer: true }), { code: 'KT_ERR_RELAY_AUTH' })
  await wrong.close()
  const pooledWrong = new RelayDialer({ host: '127.0.0.1', port: r.address.port, token: randomBytes(32), poolSize: 1, transport: 'pool' })
  t.teardown(() => pooledWrong.close())
  const deadline = Date.now() + 3000
  while (pooledWrong.stats().lastError === undefined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  t.match(pooledWrong.stats().lastError, /KT_ERR_RELAY_AUTH/, 'the pool learns why from the relay\'s answer to its ACKed AUTH')
  t.equal(r.counters.dialed, 0)
})

t.test('a version-1 relay (an older image) is named as such, and never sees the token', async (t) => {
  const { createServer } = await import('node:net')
  const seen: Buffer[] = []
  const old = createServer((s) => {
    s.on('error', () => {})
    s.once('data', (c: Buffer) => { seen.push(c); s.end(Buffer.from([1, Status.VERSION])) })
  })
  await new Promise<void>((resolve) => old.listen(0, '127.0.0.1', resolve))
  t.teardown(() => old.close())
  const port = (old.address() as { port: number }).port
  await t.rejects(relayHandshake({ host: '127.0.0.1', port, token }, 2000), { code: 'KT_ERR_RELAY_PROTOCOL', message: /older relay image/ })
  t.notOk(Buffer.concat(seen).includes(token), 'the AUTH carries a MAC, not the token')
  const d = new RelayDialer({ host: '127.0.0.1', port, token, poolSize: 1, transport: 'pool' })
  t.teardown(() => d.close())
  const deadline = Date.now() + 3000
  while (d.stats().lastError === undefined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  t.match(d.stats().lastError, /KT_ERR_RELAY_PROTOCOL.*older relay image/, 'status shows why the pool is empty')
  t.equal(d.stats().idle, 0)
})

t.test('connections over the cap are reset (a status could reach a client as data)', async (t) => {
  const r = await startTestRelay({ host: '127.0.0.1', port: 0, token, allow: ALLOW, maxConnections: 1 })
  t.teardown(() => r.destroy())
  const first = connect({ host: '127.0.0.1', port: r.address.port })
  first.on('error', () => {})
  t.teardown(() => first.destroy())
  await new Promise((resolve) => first.once('connect', resolve))
  const deadline = Date.now() + 2000
  while (r.counters.active < 1 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
  const { reply, reset } = await exchange(r.address.port, auth())
  t.same([...reply], [])
  t.ok(reset)
  t.equal(r.counters.refusedBusy, 1)
})

t.test('startRelay refuses bad options with codes', async (t) => {
  await t.rejects(startTestRelay({ host: '0.0.0.0', port: 0, token, allow: ALLOW }), { code: 'KT_ERR_WILDCARD_BIND' })
  await t.rejects(startTestRelay({ host: '::', port: 0, token, allow: ALLOW }), { code: 'KT_ERR_WILDCARD_BIND' })
  await t.rejects(startTestRelay({ host: 'localhost', port: 0, token, allow: ALLOW }), { code: 'KT_ERR_INVALID_ADDRESS' })
  await t.rejects(startTestRelay({ host: '127.0.0.1', port: 0, token: randomBytes(15), allow: ALLOW }), { code: 'KT_ERR_INVALID_ARG' })
  await t.rejects(startTestRelay({ host: '127.0.0.1', port: 0, token, allow: ['0.0.0.0/0'] }), { code: 'KT_ERR_INVALID_CIDR' })
})
