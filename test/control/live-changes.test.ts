// Live changes arrive as new tables and are applied as diffs: a node joins
// and leaves, a NodePort changes, a port is removed. The listener of the
// untouched port is never rebound, and a transfer through it goes on, byte
// for byte, across all of it.

import t from 'tap'
import { httpGet, ingressOf, lbService, startHarness, startTransfer, tryConnect, waitFor } from './fixtures/harness.js'

type Port = { name: string, port: number, protocol: string, targetPort: number, nodePort: number }

t.test('node join/leave, a NodePort change and a port removal leave the other listener and its connection alone', async (t) => {
  const h = await startHarness(t)
  h.api.create(lbService('web', [{ name: 'a', port: 18080 }, { name: 'b', port: 18081 }]))
  await h.serveNodePorts('web')
  const ip = await waitFor(() => ingressOf(h.api, 'web')[0]?.ip, 'the IP in status')
  const keyA = `${ip}:18080`
  const upstreamA = 'sim/default/web:18080'
  const upstreamB = 'sim/default/web:18081'
  const backends = (id: string): readonly string[] => h.ctl.snapshot().services.find((s) => s.key === 'default/web')?.backends[id] ?? []

  const transfer = await startTransfer(ip, 18080, 200, 16 * 1024, 10)
  const appliesBefore = h.applies.length

  // A node joins: both upstreams get a third endpoint.
  const ip3 = await h.addNode('sim-worker3')
  await waitFor(() => backends(upstreamA).length === 3 && backends(upstreamB).length === 3, 'three backends')
  t.ok(backends(upstreamA).some((e) => e.startsWith(`${ip3}:`)), 'the new node is a backend')

  // The NodePort of port b changes.
  const ports = (h.api.get('services', 'web') as unknown as { spec: { ports: Port[] } }).spec.ports
  const oldB = ports[1]?.nodePort as number
  let newB = 0
  for (let i = 0; i < 20 && newB === 0; i++) {
    const candidate = 30000 + Math.floor(Math.random() * 2700)
    try {
      h.api.patch('services', 'web', { spec: { ports: [ports[0], { ...ports[1], nodePort: candidate }] } })
      newB = candidate
    } catch { /* taken: draw again */ }
  }
  t.not(newB, 0, 'a new NodePort was set')
  await h.serveNodePorts('web')
  await waitFor(() => backends(upstreamB).every((e) => e.endsWith(`:${newB}`)), 'port b on the new NodePort')
  t.match(await httpGet(ip, 18081), new RegExp(`^node=.*:${newB}$`), `port b reaches NodePort ${newB}, not ${oldB}`)

  // The node leaves (NotReady): back to two endpoints.
  h.api.setNodeReady('sim-worker3', false)
  await waitFor(() => backends(upstreamA).length === 2, 'two backends again')

  // Port b is removed: its listener closes, the status shrinks.
  const now = (h.api.get('services', 'web') as unknown as { spec: { ports: Port[] } }).spec.ports
  h.api.patch('services', 'web', { spec: { ports: [now[0]] } })
  await waitFor(() => ingressOf(h.api, 'web')[0]?.ports?.length === 1, 'one port in status')
  t.equal(await tryConnect(ip, 18081), 'ECONNREFUSED', 'port b no longer listens')
  t.ok(transfer.written() < 200, `all of this happened mid-transfer (${transfer.written()}/200 chunks)`)

  const r = await transfer.done
  t.equal(r.bytes, 200 * 16 * 1024, 'every byte came back')
  t.equal(r.received, r.sent, 'byte for byte')
  const later = h.applies.slice(appliesBefore)
  t.ok(later.length >= 4, `${later.length} tables applied`)
  t.ok(later.every((a) => a.kept.includes(keyA) && !a.bound.some((b) => b.key === keyA) && !a.removed.includes(keyA)), 'the listener of port a was kept by every apply')
  t.ok(later.some((a) => a.removed.includes(`${ip}:18081`)), 'the listener of port b was removed')
  t.equal(h.dp.snapshot().listeners.find((l) => l.key === keyA)?.accepted, 1, 'one connection on port a, never re-made')
})
