// Every refusal is answered with a status, counted, and happens BEFORE any
// dial: the counters show nothing dialled.
import t from 'tap'
import { connect, type Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import { startRelay, type RelayHandle } from '../../src/relay/server.js'
import { RelayDialer } from '../../src/relay/client.js'
import { encodeHello, encodeConnect, Status, VERSION } from '../../src/relay/protocol.js'
import { Registry } from '../../src/observe/metrics.js'
import { silentLogger } from '../../src/observe/logger.js'

const token = randomBytes(32)
// Never dialled: every destination below is refused first.
const ALLOW = ['10.255.255.0/24']

async function relay (t: Tap, extra: { headerTimeoutMs?: number } = {}): Promise<RelayHandle> {
  const r = await startRelay({ host: '127.0.0.1', port: 0, token, allow: ALLOW, ports: { min: 30000, max: 32767, extra: [10256] }, connectTimeoutMs: 500, headerTimeoutMs: extra.headerTimeoutMs ?? 300, metrics: new Registry(), logger: silentLogger() })
  t.teardown(() => r.destroy())
  return r
}
type Tap = { teardown (fn: () => unknown): void }

/** Send bytes, collect what the relay answers until it closes (bounded). */
function exchange (port: number, bytes: Buffer, opts: { end?: boolean } = {}): Promise<{ reply: Buffer, ms: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const s: Socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true })
    const parts: Buffer[] = []
    const timer = setTimeout(() => { s.destroy(); reject(new Error('relay did not close within 5 s')) }, 5000)
    s.on('data', (c: Buffer) => parts.push(c))
    s.on('error', () => {})
    s.once('close', () => { clearTimeout(timer); resolve({ reply: Buffer.concat(parts), ms: Date.now() - started }) })
    s.once('connect', () => {
      s.write(bytes)
      if (opts.end === true) s.end()
    })
    s.once('end', () => s.end())
  })
}

const hello = (tok = token): Buffer => encodeHello(tok)
const ok = Buffer.from([VERSION, Status.OK])

t.test('a wrong token is refused with AUTH', async (t) => {
  const r = await relay(t)
  const { reply } = await exchange(r.address.port, Buffer.concat([hello(randomBytes(32)), encodeConnect({ address: '10.255.255.1', port: 30080 })]))
  t.same([...reply], [VERSION, Status.AUTH])
  const shorter = await exchange(r.address.port, hello(token.subarray(0, 16)))
  t.same([...shorter.reply], [VERSION, Status.AUTH], 'a prefix of the right token is still wrong')
  t.equal(r.counters.refusedAuth, 2)
  t.equal(r.counters.authenticated, 0)
  t.equal(r.counters.dialed, 0)
})

t.test('a truncated HELLO is refused at the header deadline', async (t) => {
  const r = await relay(t, { headerTimeoutMs: 200 })
  const h = hello()
  const { reply, ms } = await exchange(r.address.port, h.subarray(0, h.length - 5))
  t.same([...reply], [VERSION, Status.HEADER])
  t.ok(ms >= 150 && ms < 2000, `refused after ${ms} ms`)
  t.equal(r.counters.refusedHeader, 1)
  t.equal(r.counters.dialed, 0)
})

t.test('a truncated CONNECT is refused at the deadline, and one cut by FIN at once', async (t) => {
  const r = await relay(t, { headerTimeoutMs: 200 })
  const c = encodeConnect({ address: '10.255.255.1', port: 30080 })
  const slow = await exchange(r.address.port, Buffer.concat([hello(), c.subarray(0, 4)]))
  t.same([...slow.reply], [...ok, VERSION, Status.HEADER])
  const cut = await exchange(r.address.port, Buffer.concat([hello(), c.subarray(0, 4)]), { end: true })
  t.same([...cut.reply], [...ok, VERSION, Status.HEADER])
  t.ok(cut.ms < 150, `FIN inside a header is refused without waiting (${cut.ms} ms)`)
  t.equal(r.counters.refusedHeader, 2)
  t.equal(r.counters.dialed, 0)
})

t.test('garbage is refused on its first bytes', async (t) => {
  const r = await relay(t, { headerTimeoutMs: 5000 })
  const { reply, ms } = await exchange(r.address.port, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))
  t.same([...reply], [VERSION, Status.HEADER])
  t.ok(ms < 1000)
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
    const { reply } = await exchange(r.address.port, Buffer.concat([hello(), encodeConnect({ address, port })]))
    t.same([...reply], [...ok, VERSION, Status.DENIED], `${address}:${port}`)
  }
  t.equal(r.counters.refusedDenied, dests.length)
  t.equal(r.counters.dialed, 0, 'nothing dialled')
})

t.test('the dialer surfaces refusals as codes', async (t) => {
  const r = await relay(t)
  const d = new RelayDialer({ host: '127.0.0.1', port: r.address.port, token, poolSize: 2 })
  t.teardown(() => d.close())
  t.ok(await d.warm(2000), 'pool filled')
  await t.rejects(d.dial({ host: '127.0.0.1', port: 30080, timeoutMs: 2000 }), { code: 'KT_ERR_RELAY_DENIED' })
  await t.rejects(d.dial({ host: '169.254.169.254', port: 30080, timeoutMs: 2000 }), { code: 'KT_ERR_RELAY_DENIED' })
  await t.rejects(d.dial({ host: '10.255.255.1', port: 22, timeoutMs: 2000 }), { code: 'KT_ERR_RELAY_DENIED' })
  await t.rejects(d.dial({ host: 'node.example', port: 30080, timeoutMs: 2000 }), { code: 'KT_ERR_INVALID_ADDRESS' })
  t.ok(d.stats().hits >= 2, 'pooled connections were used')
  const wrong = new RelayDialer({ host: '127.0.0.1', port: r.address.port, token: randomBytes(32), poolSize: 0 })
  await t.rejects(wrong.dial({ host: '10.255.255.1', port: 30080, timeoutMs: 2000 }), { code: 'KT_ERR_RELAY_AUTH' })
  await wrong.close()
  t.equal(r.counters.dialed, 0)
})

t.test('connections over the cap are refused BUSY', async (t) => {
  const r = await startRelay({ host: '127.0.0.1', port: 0, token, allow: ALLOW, maxConnections: 1 })
  t.teardown(() => r.destroy())
  const first = connect({ host: '127.0.0.1', port: r.address.port })
  first.on('error', () => {})
  t.teardown(() => first.destroy())
  await new Promise((resolve) => first.once('connect', resolve))
  await new Promise((resolve) => setTimeout(resolve, 50))
  const { reply } = await exchange(r.address.port, hello())
  t.same([...reply], [VERSION, Status.BUSY])
  t.equal(r.counters.refusedBusy, 1)
})

t.test('startRelay refuses bad options with codes', async (t) => {
  await t.rejects(startRelay({ host: '0.0.0.0', port: 0, token, allow: ALLOW }), { code: 'KT_ERR_WILDCARD_BIND' })
  await t.rejects(startRelay({ host: '::', port: 0, token, allow: ALLOW }), { code: 'KT_ERR_WILDCARD_BIND' })
  await t.rejects(startRelay({ host: 'localhost', port: 0, token, allow: ALLOW }), { code: 'KT_ERR_INVALID_ADDRESS' })
  await t.rejects(startRelay({ host: '127.0.0.1', port: 0, token: randomBytes(15), allow: ALLOW }), { code: 'KT_ERR_INVALID_ARG' })
  await t.rejects(startRelay({ host: '127.0.0.1', port: 0, token, allow: ['0.0.0.0/0'] }), { code: 'KT_ERR_INVALID_CIDR' })
})
