// `kind-tunnel proxy --listen HOST:PORT/udp` end to end, through the built CLI,
// with real dgram servers and clients on loopback (issue #16).
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { dial, readAll } from '../support/net.js'
import { echo, echoTwice, freeTcpUdpPort, scrape, startUdpCli, udpClient, udpServer } from './support.js'

t.test('a server answering every datagram twice, 200 concurrent clients: each gets exactly its own replies, in order', async (t) => {
  const srv = await udpServer(echoTwice)
  const p = await startUdpCli(['--listen', '127.0.0.1:0/udp', '--backend', `127.0.0.1:${srv.port}`, '--access-log=false'])
  t.teardown(async () => { await p.stop(); await srv.close() })
  const port = p.udpPort()
  const N = 200
  const PER = 5
  const clients = await Promise.all(Array.from({ length: N }, async () => await udpClient()))
  t.teardown(() => { for (const c of clients) c.close() })
  // Each client sends its datagrams one after another (a lost datagram on a
  // busy machine would be a kernel buffer drop, not what this checks), all
  // 200 clients at once.
  await Promise.all(clients.map(async (c, i) => {
    for (let k = 0; k < PER; k++) {
      c.send(`client ${i} datagram ${k}`, port)
      await c.waitCount(2 * (k + 1), 10_000)
    }
  }))
  let exact = 0
  for (const [i, c] of clients.entries()) {
    const want = Array.from({ length: PER }, (_, k) => [`client ${i} datagram ${k}`, `client ${i} datagram ${k}`]).flat()
    if (JSON.stringify(c.inbox.map((b) => b.toString())) === JSON.stringify(want)) exact++
    else t.fail(`client ${i} got ${JSON.stringify(c.inbox.map(String))}`)
  }
  t.equal(exact, N, 'every client got exactly its own 10 replies, in order')
  t.equal(srv.received.length, N * PER, 'the server saw every datagram once')
  t.equal(new Set(srv.received.map((r) => r.from.port)).size, N, 'one upstream socket per flow')
})

t.test('datagram sizes from 1 to 65,507 bytes arrive byte-exact both ways (hashed)', async (t) => {
  const srv = await udpServer(echo)
  const p = await startUdpCli(['--listen', '127.0.0.1:0/udp', '--backend', `127.0.0.1:${srv.port}`, '--access-log=false'])
  const c = await udpClient()
  t.teardown(async () => { c.close(); await p.stop(); await srv.close() })
  const sizes = [1, 2, 3, 511, 512, 1471, 1472, 1473, 8191, 8192, 9000, 16_384, 32_767, 32_768, 65_000, 65_506, 65_507]
  for (let i = 0; i < 24; i++) sizes.push(1 + Math.floor(Math.random() * 65_507))
  const sent = createHash('sha256')
  for (const [k, n] of sizes.entries()) {
    const b = randomBytes(n)
    sent.update(b)
    c.send(b, p.udpPort())
    const inbox = await c.waitCount(k + 1, 5000)
    t.equal(inbox[k]?.length, n, `size ${n}`)
  }
  const got = createHash('sha256')
  for (const b of c.inbox) got.update(b)
  t.equal(got.digest('hex'), sent.digest('hex'), 'sha256 of every reply equals that of every datagram sent')
  const upstream = createHash('sha256')
  for (const r of srv.received) upstream.update(r.msg)
  t.equal(srv.received.length, sizes.length)
  t.equal(Buffer.concat(srv.received.map((r) => r.msg)).length, sizes.reduce((a, b) => a + b, 0), 'the backend got every byte')
})

t.test('idle expiry: a quiet flow ends on time and is logged once; a busy one stays', async (t) => {
  const srv = await udpServer(echo)
  const p = await startUdpCli(['--listen', '127.0.0.1:0/udp', '--backend', `127.0.0.1:${srv.port}`, '--udp-idle-timeout', '400'])
  const quiet = await udpClient()
  const busy = await udpClient()
  t.teardown(async () => { quiet.close(); busy.close(); await p.stop(); await srv.close() })
  const port = p.udpPort()
  quiet.send('q', port)
  await quiet.waitCount(1)
  const sentAt = Date.now()
  // The busy client keeps its flow alive past several timeouts.
  for (let k = 0; k < 8; k++) {
    busy.send(`b${k}`, port)
    await busy.waitCount(k + 1)
    await new Promise((resolve) => setTimeout(resolve, 150))
  }
  const end = await p.waitLog((l) => l.msg === 'udp flow ended' && l.clientPort === quiet.port, 5000, 'the quiet flow to end')
  t.equal(end.cause, 'idle_timeout')
  t.equal(end.datagramsIn, 1)
  t.equal(end.datagramsOut, 1)
  t.ok((end.ms as number) >= 400 && (end.ms as number) < 400 + 1500, `ended after ${String(end.ms)} ms (timeout 400 ms)`)
  t.ok(Date.now() - sentAt >= 400)
  t.notOk(p.logs().some((l) => l.msg === 'udp flow ended' && l.clientPort === busy.port), 'the busy flow (a datagram every 150 ms for 1.2 s) is still open')
  t.equal(new Set(srv.received.filter((r) => r.msg.toString().startsWith('b')).map((r) => r.from.port)).size, 1, 'the busy flow kept one upstream socket')
  // After it goes quiet, it ends too, once.
  const bend = await p.waitLog((l) => l.msg === 'udp flow ended' && l.clientPort === busy.port, 5000, 'the busy flow to end')
  t.equal(bend.datagramsIn, 8)
  t.equal(p.logs().filter((l) => l.msg === 'udp flow ended').length, 2, 'one access line per flow')
})

t.test('the flow cap holds and drops are counted; a flood of one-datagram flows cannot exhaust fds', async (t) => {
  const srv = await udpServer(echo)
  const p = await startUdpCli(['--listen', '127.0.0.1:0/udp', '--backend', `127.0.0.1:${srv.port}`, '--udp-max-flows', '20', '--metrics', '127.0.0.1:0', '--access-log=false'], 1)
  t.teardown(async () => { await p.stop(); await srv.close() })
  const url = p.metricsUrl() as string
  t.ok(url, 'metrics served')
  // The proxy's UDP sockets: its fds whose inodes /proc/net/udp or udp6 lists.
  const udpSockets = (): number => {
    const pid = p.child.pid as number
    const mine = new Set(readdirSync(`/proc/${pid}/fd`).map((fd) => { try { return /socket:\[(\d+)\]/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1] } catch { return undefined } }))
    // Both tables: a socket bound to a wildcard before its connect may be an IPv6 (dual-stack) one.
    const inodes = ['udp', 'udp6'].flatMap((f) => readFileSync(`/proc/${pid}/net/${f}`, 'utf8').split('\n').slice(1).map((l) => l.trim().split(/\s+/)[9]))
    return inodes.filter((i) => i !== undefined && mine.has(i)).length
  }
  t.equal(udpSockets(), 1, 'before: the listener only')
  const port = p.udpPort()
  // 300 source ports, one datagram each (a flood of one-datagram flows).
  const flood = await Promise.all(Array.from({ length: 300 }, async () => await udpClient()))
  t.teardown(() => { for (const c of flood) c.close() })
  // In bursts of 50, each accounted for before the next, so a receive buffer
  // capped small (net.core.rmem_max) cannot lose one of them.
  let drops = 0
  let flows = 0
  for (let sent = 50; sent <= flood.length; sent += 50) {
    for (const c of flood.slice(sent - 50, sent)) c.send('x', port)
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      drops = await scrape(url, /^kt_udp_drops_total\{.*reason="max_flows"/)
      flows = await scrape(url, /^kt_udp_active_flows\{/)
      if (drops + flows >= sent) break
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  await Promise.all(flood.slice(0, 20).map(async (c) => await c.waitCount(1)))
  t.equal(flows, 20, 'exactly the cap of flows is open')
  t.equal(drops, 280, 'every other datagram was dropped and counted')
  t.equal(flood.filter((c) => c.inbox.length > 0).length, 20, 'and only the flows inside the cap got answers')
  t.equal(udpSockets(), 21, 'UDP sockets: the listener and one per flow, no more')
  t.equal(srv.received.length, 20)
})

t.test('ICMP port unreachable marks the backend failed: the next datagram goes to another', async (t) => {
  // A port nothing listens on: bind, learn it, close.
  const gone = await udpServer(echo)
  const deadPort = gone.port
  await gone.close()
  const live = await udpServer((m) => [Buffer.from(`live:${m.toString()}`)])
  // Round-robin starts at the first backend: the dead one.
  const p = await startUdpCli(['--listen', '127.0.0.1:0/udp', '--backend', `127.0.0.1:${deadPort},127.0.0.1:${live.port}`, '--log-level', 'debug', '--udp-idle-timeout', '300'])
  const c = await udpClient()
  t.teardown(async () => { c.close(); await p.stop(); await live.close() })
  c.send('one', p.udpPort())
  await p.waitLog((l) => typeof l.msg === 'string' && l.msg.startsWith('udp backend refused') && l.clientPort === c.port, 5000, 'the refusal')
  t.equal(c.inbox.length, 0, 'the first datagram went to the dead backend and is lost')
  c.send('two', p.udpPort())
  const got = await c.waitCount(1)
  t.equal(got[0]?.toString(), 'live:two', 'the next datagram of the same flow reached the live backend')
  const end = await p.waitLog((l) => l.msg === 'udp flow ended' && l.clientPort === c.port, 5000, 'the flow end')
  t.equal(end.failovers, 1)
  t.equal(end.backend, `127.0.0.1:${live.port}`)
  t.equal(end.datagramsIn, 2)
  t.equal(end.datagramsOut, 1)
})

t.test('TCP and UDP on one port number', async (t) => {
  const port = await freeTcpUdpPort()
  // Backends share a port number too, as a Service with TCP and UDP 53 does.
  const bport = await freeTcpUdpPort()
  const tcp = createServer((c) => { c.pipe(c) }).listen(bport, '127.0.0.1')
  await once(tcp, 'listening')
  const udp = await udpServer((m) => [Buffer.from(`udp:${m.toString()}`)], '127.0.0.1', bport)
  const p = await startUdpCli(['--listen', `127.0.0.1:${port}`, '--listen', `127.0.0.1:${port}/udp`, '--backend', `127.0.0.1:${bport}`, '--access-log=false'], 2)
  t.teardown(async () => { await p.stop(); tcp.close(); await udp.close() })
  t.equal(p.tcpPort(), port)
  t.equal(p.udpPort(), port)
  const s = await dial(port)
  s.end('over tcp')
  t.equal((await readAll(s)).toString(), 'over tcp', 'tcp reaches the tcp backend')
  const c = await udpClient()
  t.teardown(() => { c.close() })
  c.send('over udp', port)
  t.equal((await c.waitCount(1))[0]?.toString(), 'udp:over udp')
})
