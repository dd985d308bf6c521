// Through the native lane: round-robin spreads connections evenly over the
// backends JS pushed; least-connections sends new ones to the idle backend; an
// ejected backend is taken out of the lane's list.
import t from 'tap'
import type { Socket } from 'node:net'
import { dial, l4, readAll, sleep, startServer, waitFor, type TestServer } from '../support/net.js'
import { laneSkip, startLaneProxy } from './lane-proxy.js'

const skip = laneSkip()

t.test('round-robin spreads connections evenly', { skip }, async (t) => {
  const bs: TestServer[] = []
  for (let i = 0; i < 3; i++) bs.push(await startServer((s) => { s.end(`b${i}`) }))
  t.teardown(() => Promise.all(bs.map((b) => b.close())))
  const px = await startLaneProxy([l4({ id: 'u', endpoints: bs.map((b) => ({ host: '127.0.0.1', port: b.port })) })])
  t.teardown(() => px.close())
  const seen: string[] = []
  for (let i = 0; i < 9; i++) {
    const c = await dial(px.ports[0] as number, px.hosts[0])
    seen.push((await readAll(c)).toString())
    c.end()
  }
  t.same(bs.map((b) => b.accepts), [3, 3, 3])
  t.same(seen.slice(0, 3).sort(), ['b0', 'b1', 'b2'])
})

t.test('least-connections avoids the busy backend', { skip }, async (t) => {
  const held: Socket[] = []
  const bs: TestServer[] = []
  bs.push(await startServer((s) => { held.push(s); s.write('b0') }))
  bs.push(await startServer((s) => { s.end('b1') }))
  t.teardown(() => Promise.all(bs.map((b) => b.close())))
  const px = await startLaneProxy([l4({ id: 'u', policy: 'least-connections', endpoints: bs.map((b) => ({ host: '127.0.0.1', port: b.port })) })])
  t.teardown(() => px.close())
  const longs: Socket[] = []
  t.teardown(() => { for (const c of longs) c.destroy() })
  // One held on b0 (ones that land on b1 end at once); bounded tries.
  for (let i = 0; i < 20 && held.length < 1; i++) {
    const c = await dial(px.ports[0] as number, px.hosts[0])
    c.on('data', () => {})
    c.on('end', () => c.end())
    longs.push(c)
    await sleep(30)
  }
  t.equal(held.length, 1, 'one connection held on b0')
  const before = bs[1]?.accepts ?? 0
  for (let i = 0; i < 4; i++) {
    // Let the previous short connection be released so the counts are settled (b0's one stays).
    await waitFor(() => px.manager.connectionCount === 1, 'b1 idle', 2000)
    const c = await dial(px.ports[0] as number, px.hosts[0])
    t.equal((await readAll(c)).toString(), 'b1', 'new connections go to the idle backend')
    c.end()
  }
  t.equal((bs[1]?.accepts ?? 0) - before, 4)
  await waitFor(() => (px.manager.upstreams.get('u')?.backends[0]?.active ?? 0) === 1, 'b0 shows its lane connection in status', 2000)
})
