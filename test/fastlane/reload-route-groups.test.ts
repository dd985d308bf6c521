// Review finding (routed lane listeners, reload): JS pushes each upstream
// group's backends first and the hostname routes after. Group numbers were
// positions in the plan (default, then routed upstreams in route order), so a
// reload that removed or reordered a route gave a number a different upstream:
// between the backend pushes and the route push, the worker threads matched a
// name with the OLD routes against the NEW groups and sent it to another
// Service's backends. Here the JS thread is held just before the route push
// while a client, already accepted and peeking, sends `Host: a.test`: it must
// reach a.test's upstream (old routes) or the default (new ones), never b.test's.
import t from 'tap'
import { writeSync } from 'node:fs'
import { readAll, dial, startServer, waitFor } from '../support/net.js'
import type { LaneBinding } from '../../src/dataplane/native/index.js'
import type { ListenerSpec } from '../../src/routing/types.js'
import { laneSkip, startLaneProxy } from './lane-proxy.js'

const skip = laneSkip()

t.test('a reload that renumbers upstream groups never routes a name to another upstream', { skip }, async (t) => {
  const a = await startServer((s) => { s.end('A') })
  const b = await startServer((s) => { s.end('B') })
  const d = await startServer((s) => { s.end('D') })
  t.teardown(() => Promise.all([a.close(), b.close(), d.close()]))
  const up = (id: string, port: number) => ({ id, endpoints: [{ host: '127.0.0.1', port }] })
  const L: ListenerSpec = {
    host: '127.0.0.1',
    port: 0,
    routes: [
      { names: ['a.test'], upstream: up('a', a.port) },
      { names: ['b.test'], upstream: up('b', b.port) },
    ],
    default: up('d', d.port),
  }
  const px = await startLaneProxy([L], { peekTimeoutMs: 5000 })
  t.teardown(() => px.close())
  const port = px.ports[0] as number
  const lane = px.manager.listeners.get('127.0.0.1:0')?.lane
  t.ok(lane !== undefined, 'on the lane')
  // Sanity before the reload.
  for (const [host, want] of [['a.test', 'A'], ['b.test', 'B'], ['c.test', 'D']] as const) {
    const c = await dial(port)
    c.end(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`)
    t.equal((await readAll(c)).toString(), want, `${host} -> ${want} before the reload`)
  }

  // A client accepted by the lane and peeking (nothing sent yet).
  const client = await dial(port)
  t.teardown(() => client.destroy())
  const fd = (client as unknown as { _handle?: { fd?: number } })._handle?.fd
  t.ok(typeof fd === 'number' && fd >= 0, 'the client socket has an fd')
  await waitFor(() => { lane?.sync(); return (lane?.stats[0] ?? 0) >= 4 }, 'the lane accepted the client', 2000)

  // Hold the JS thread right before the route push, and let the client's
  // request arrive while it is held: the worker decides on its own meanwhile.
  const fl = px.manager.lane as unknown as { binding: LaneBinding }
  const real = fl.binding
  let held = false
  const setRoutes = real.laneSetRoutes?.bind(real)
  fl.binding = {
    ...real,
    laneSetRoutes: (...args: Parameters<NonNullable<LaneBinding['laneSetRoutes']>>) => {
      if (!held) {
        held = true
        writeSync(fd as number, 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n')
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300)
      }
      setRoutes?.(...args)
    },
  }
  t.teardown(() => { fl.binding = real })
  // Reload: the a.test route goes (it now falls to the default); b.test stays.
  const r = await px.manager.apply({ version: 2, listeners: [{ ...L, routes: [L.routes[1] as ListenerSpec['routes'][number]] }] })
  t.same(r.kept, ['127.0.0.1:0'])
  t.ok(held, 'the routes were pushed (and the thread held before it)')
  const got = (await readAll(client)).toString()
  t.ok(got === 'A' || got === 'D', `Host a.test reached ${got} (A: old routes, D: new; B is another Service)`)
  // After the reload: a.test to the default, b.test still to B.
  for (const [host, want] of [['a.test', 'D'], ['b.test', 'B']] as const) {
    const c = await dial(port)
    c.end(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`)
    t.equal((await readAll(c)).toString(), want, `${host} -> ${want} after the reload`)
  }
})
