// Many concurrent UDP flows through the real `proxy` CLI (issue #16, reliability):
// RSS per flow (least-squares slope over five steps), every flow answered
// exactly once, and every flow expiring on time after its last datagram.
// 1,000 flows by default (2,000 at load 15 took longer to build up than the idle timeout); KT_UDP_FLOWS=10000 KT_UDP_IDLE_MS=30000 for the docs/reliability.md figure.
import t from 'tap'
import { createSocket, type Socket } from 'node:dgram'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { echo, scrape, startUdpCli, udpServer } from './support.js'

const N = Number(process.env.KT_UDP_FLOWS ?? 1000)
// Long enough that the first step's flows are still open when the last step is in (KT_UDP_IDLE_MS for big runs).
const IDLE_MS = Number(process.env.KT_UDP_IDLE_MS ?? 8000)

function rssKiB (pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0)
}

async function settledRss (pid: number): Promise<number> {
  // Two readings 300 ms apart within 1 %, or the last of ten.
  let prev = rssKiB(pid)
  for (let i = 0; i < 10; i++) {
    await new Promise((resolve) => setTimeout(resolve, 300))
    const cur = rssKiB(pid)
    if (Math.abs(cur - prev) <= prev / 100) return cur
    prev = cur
  }
  return prev
}

function slope (xs: number[], ys: number[]): number {
  const n = xs.length
  const mx = xs.reduce((a, b) => a + b, 0) / n
  const my = ys.reduce((a, b) => a + b, 0) / n
  let num = 0
  let den = 0
  for (let i = 0; i < n; i++) { num += ((xs[i] as number) - mx) * ((ys[i] as number) - my); den += ((xs[i] as number) - mx) ** 2 }
  return num / den
}

t.test(`${N} concurrent flows: RSS per flow, one answer each, all expire on time`, async (t) => {
  const srv = await udpServer(echo)
  const p = await startUdpCli(['--listen', '127.0.0.1:0/udp', '--backend', `127.0.0.1:${srv.port}`, '--udp-idle-timeout', String(IDLE_MS),
    '--udp-max-flows', String(N + 100), '--max-connections', String(N + 100), '--metrics', '127.0.0.1:0', '--access-log=false'])
  const clients: Socket[] = []
  t.teardown(async () => { for (const c of clients) c.close(); await p.stop(); await srv.close() })
  const url = p.metricsUrl() as string
  const pid = p.child.pid as number
  const port = p.udpPort()
  const replies = new Map<Socket, number>()
  const lastSent = new Map<Socket, number>()
  const sends = new Map<Socket, number>()
  const before = await settledRss(pid)
  const xs: number[] = []
  const ys: number[] = []
  const step = N / 5
  for (let s = 1; s <= 5; s++) {
    const batch: Socket[] = []
    for (let i = 0; i < step; i++) {
      const c = createSocket('udp4')
      c.on('error', () => {})
      c.on('message', () => { replies.set(c, (replies.get(c) ?? 0) + 1) })
      c.bind(0, '127.0.0.1')
      batch.push(c)
    }
    await Promise.all(batch.map(async (c) => await once(c, 'listening')))
    for (const c of batch) { c.send('x', port, '127.0.0.1'); lastSent.set(c, Date.now()); sends.set(c, 1) }
    clients.push(...batch)
    // Bounded wait for every flow so far to be answered (a datagram lost to a
    // full socket buffer under load is sent again, at most 5 times).
    for (let attempt = 0; attempt < 5; attempt++) {
      const end = Date.now() + 3000
      while (clients.some((c) => !replies.has(c)) && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 20))
      const missing = clients.filter((c) => !replies.has(c))
      if (missing.length === 0) break
      for (const c of missing) { c.send('x', port, '127.0.0.1'); lastSent.set(c, Date.now()); sends.set(c, (sends.get(c) ?? 0) + 1) }
    }
    t.equal(clients.filter((c) => replies.has(c)).length, clients.length, `step ${s}: every flow answered`)
    xs.push(clients.length)
    await new Promise((resolve) => setTimeout(resolve, 200))
    ys.push(rssKiB(pid))
  }
  const active = await scrape(url, /^kt_udp_active_flows\{/)
  t.ok(Date.now() - Math.min(...lastSent.values()) < IDLE_MS, 'the build-up took less than the idle timeout (else the count below cannot hold)')
  t.equal(active, N, `${N} flows open at once`)
  const perFlow = slope(xs, ys)
  const whole = ((ys[4] as number) - before) / N
  t.comment(`proxy RSS before ${before} KiB, with ${N} flows ${ys[4] as number} KiB; steps ${xs.map((x, i) => `${x}→${ys[i] as number}`).join(', ')}`)
  t.comment(`RSS per flow: ${perFlow.toFixed(2)} KiB (slope), ${whole.toFixed(2)} KiB (whole set)`)
  t.ok(perFlow < 32, `RSS per flow ${perFlow.toFixed(2)} KiB (loose bound: 32 KiB)`)
  const extra = clients.filter((c) => (replies.get(c) ?? 0) > (sends.get(c) ?? 0)).length
  t.equal(extra, 0, 'no client got more answers than it sent datagrams (each its own)')
  t.comment(`resent after a loss: ${clients.filter((c) => (sends.get(c) ?? 0) > 1).length}`)

  // Expiry: nothing sends from here on. The last flow's idle timeout ends
  // IDLE_MS after its last datagram; all must be gone within that plus a
  // margin, and none may go before its own timeout (checked on the earliest).
  const newest = Math.max(...lastSent.values())
  const oldest = Math.min(...lastSent.values())
  let firstGoneAt = 0
  const deadline = newest + IDLE_MS + 10_000
  let flows = active
  while (Date.now() < deadline) {
    flows = await scrape(url, /^kt_udp_active_flows\{/)
    if (flows < N && firstGoneAt === 0) firstGoneAt = Date.now()
    if (flows === 0) break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.equal(flows, 0, 'every flow expired')
  t.ok(firstGoneAt - oldest >= IDLE_MS - 50, `the first flow went ${firstGoneAt - oldest} ms after the oldest flow's last datagram (timeout ${IDLE_MS} ms)`)
  t.comment(`all ${N} flows gone ${Date.now() - newest} ms after the newest flow's last datagram (timeout ${IDLE_MS} ms)`)
  const ended = await scrape(url, /^kt_udp_flows_total\{.*outcome="idle_timeout"/)
  t.equal(ended, N, 'each counted once as idle_timeout')
})
