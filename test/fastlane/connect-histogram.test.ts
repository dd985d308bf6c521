// kt_upstream_connect_duration_seconds covers lane connects: the workers time
// each successful connect into per-backend buckets with upstream.ts's bounds,
// and JS folds the deltas into the same cell a JS dial observes (labels
// upstream and backend). After N lane connections the backend's count rose by
// N, the rendered buckets are cumulative and end at the count, and a JS-path
// listener's backend (PROXY protocol keeps it off the lane) shows up alike.
import t from 'tap'
import { dial, readAll, startServer, waitFor } from '../support/net.js'
import type { UpstreamSpec } from '../../src/routing/types.js'
import { laneSkip, startLaneProxy, type LaneProxy } from './lane-proxy.js'

const skip = laneSkip()
const N = 25
const M = 5
const NAME = 'kt_upstream_connect_duration_seconds'

interface Series { buckets: Array<[string, number]>, count: number, sum: number }

/** The histogram's series for these labels, from the rendered exposition text. */
function series (px: LaneProxy, upstream: string, backend: string): Series {
  px.manager.lane?.sync()
  const out: Series = { buckets: [], count: -1, sum: -1 }
  for (const line of px.registry.render().split('\n')) {
    if (!line.startsWith(NAME) || !line.includes(`upstream="${upstream}"`) || !line.includes(`backend="${backend}"`)) continue
    const v = Number(line.slice(line.lastIndexOf(' ') + 1))
    const le = /le="([^"]+)"/.exec(line)?.[1]
    if (line.startsWith(`${NAME}_bucket`) && le !== undefined) out.buckets.push([le, v])
    else if (line.startsWith(`${NAME}_count`)) out.count = v
    else if (line.startsWith(`${NAME}_sum`)) out.sum = v
  }
  return out
}

t.test('lane connects are counted into kt_upstream_connect_duration_seconds, as JS dials are', { skip }, async (t) => {
  const a = await startServer((s) => { s.on('error', () => {}); s.end('A') })
  const b = await startServer((s) => { s.on('error', () => {}); s.once('data', () => { s.end('B') }) })
  t.teardown(() => Promise.all([a.close(), b.close()]))
  const lu: UpstreamSpec = { id: 'lane-u', endpoints: [{ host: '127.0.0.1', port: a.port }] }
  const ju: UpstreamSpec = { id: 'js-u', endpoints: [{ host: '127.0.0.1', port: b.port }], proxyProtocol: 'v1' }
  const px = await startLaneProxy([
    { host: '127.0.0.1', port: 0, routes: [], default: lu },
    { host: '127.0.0.2', port: 0, routes: [], default: ju },
  ])
  t.teardown(() => px.close())
  const laneL = px.manager.listeners.get('127.0.0.1:0')
  t.ok(laneL?.lane !== undefined && laneL.server.listening === false, 'listener 1 is on the lane')
  t.equal(px.manager.listeners.get('127.0.0.2:0')?.lane, undefined, 'listener 2 (PROXY protocol) is on the JS path')
  const la = `127.0.0.1:${a.port}`
  const jb = `127.0.0.1:${b.port}`
  const before = series(px, 'lane-u', la)
  t.equal(before.count, -1, 'no lane series before any connect')

  for (let i = 0; i < N; i++) {
    const c = await dial(px.ports[0] as number)
    c.end()
    t.equal((await readAll(c)).toString(), 'A')
  }
  for (let i = 0; i < M; i++) {
    const c = await dial(px.ports[1] as number, '127.0.0.2')
    c.end('x')
    t.match((await readAll(c)).toString(), /B$/)
  }
  const ll = laneL?.lane
  ll?.sync()
  t.equal(ll?.stats[0], N, `the lane accepted all ${N}`)

  await waitFor(() => series(px, 'lane-u', la).count >= N, 'lane connects folded in', 2000)
  const s = series(px, 'lane-u', la)
  t.equal(s.count, N, `count rose by ${N}`)
  t.ok(s.sum > 0 && s.sum < N * 5, `sum is a plausible number of seconds (${s.sum})`)
  t.equal(s.buckets.length, 14, '13 bounds and +Inf')
  t.same(s.buckets.map(([le]) => le), ['0.0005', '0.001', '0.0025', '0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '+Inf'], 'the JS path\'s bounds')
  for (let i = 1; i < s.buckets.length; i++) t.ok((s.buckets[i]?.[1] ?? 0) >= (s.buckets[i - 1]?.[1] ?? 0), `cumulative at le=${s.buckets[i]?.[0]}`)
  t.equal(s.buckets.at(-1)?.[1], N, '+Inf equals the count')
  // Loopback connects are far below a second.
  t.equal(s.buckets.find(([le]) => le === '1')?.[1], N, 'every loopback connect under 1 s')

  const j = series(px, 'js-u', jb)
  t.equal(j.count, M, `the JS-path backend's series counts its ${M} dials`)
  t.equal(j.buckets.at(-1)?.[1], M)

  // Later reads add only the new connects (deltas, not totals).
  for (let i = 0; i < 3; i++) {
    const c = await dial(px.ports[0] as number)
    c.end()
    await readAll(c)
  }
  await waitFor(() => series(px, 'lane-u', la).count >= N + 3, 'three more folded in', 2000)
  px.manager.lane?.sync()
  px.manager.lane?.sync()
  t.equal(series(px, 'lane-u', la).count, N + 3, 'repeated reads do not count twice')
})
