// Round-robin by default; least-connections as an option.
import t from 'tap'
import type { Socket } from 'node:net'
import { dial, l4, readAll, startProxy, startServer, waitFor, type TestServer } from '../support/net.js'

async function tagged (n: number): Promise<TestServer[]> {
  const out: TestServer[] = []
  for (let i = 0; i < n; i++) out.push(await startServer((s) => { s.end(`b${i}`) }))
  return out
}

t.test('round-robin spreads connections evenly', async (t) => {
  const bs = await tagged(3)
  t.teardown(() => Promise.all(bs.map((b) => b.close())))
  const px = await startProxy([l4({ id: 'u', endpoints: bs.map((b) => ({ host: '127.0.0.1', port: b.port })) })])
  t.teardown(() => px.close())
  const seen: string[] = []
  for (let i = 0; i < 9; i++) {
    const c = await dial(px.port, px.host)
    seen.push((await readAll(c)).toString())
    c.end()
  }
  t.same(seen.slice(0, 3).sort(), ['b0', 'b1', 'b2'])
  t.same(bs.map((b) => b.accepts), [3, 3, 3])
})

t.test('least-connections avoids the busy backend', async (t) => {
  const held: Socket[] = []
  const bs: TestServer[] = []
  bs.push(await startServer((s) => { held.push(s); s.write('b0') })) // keeps connections open
  bs.push(await startServer((s) => { s.end('b1') }))
  t.teardown(() => Promise.all(bs.map((b) => b.close())))
  const px = await startProxy([l4({ id: 'u', policy: 'least-connections', endpoints: bs.map((b) => ({ host: '127.0.0.1', port: b.port })) })])
  t.teardown(() => px.close())
  // Open 3 long-lived connections: they spread, then b0 holds its ones.
  const longs: Socket[] = []
  for (let i = 0; i < 4; i++) {
    const c = await dial(px.port, px.host)
    c.on('data', () => {})
    c.on('end', () => c.end()) // the ones that landed on b1 finish at once
    longs.push(c)
    await new Promise((resolve) => setTimeout(resolve, 30))
  }
  const before = bs[1]?.accepts ?? 0
  const b1 = (): number => px.manager.upstreams.get('u')?.backends[1]?.active ?? -1
  for (let i = 0; i < 4; i++) {
    // Let the previous short connection be released so the counts are settled.
    await waitFor(() => b1() === 0, 'b1 idle', 2000)
    const c = await dial(px.port, px.host)
    t.equal((await readAll(c)).toString(), 'b1', 'new connections go to the idle backend')
    c.end()
  }
  t.equal((bs[1]?.accepts ?? 0) - before, 4)
  for (const c of longs) c.destroy()
})
