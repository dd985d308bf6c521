// Adding a port to a served Service binds one more listener; the listener
// of the first port is kept (never rebound) and a transfer through it goes
// on, byte for byte, while the change is applied.

import t from 'tap'
import { httpGet, ingressOf, lbService, startHarness, startTransfer, waitFor } from './fixtures/harness.js'

t.test('a second port is served while a transfer on the first goes on unharmed', async (t) => {
  const h = await startHarness(t)
  h.api.create(lbService('web', [{ name: 'a', port: 18080 }]))
  await h.serveNodePorts('web')
  const ip = await waitFor(() => ingressOf(h.api, 'web')[0]?.ip, 'the IP in status')
  const first = `${ip}:18080`
  const second = `${ip}:18081`

  const transfer = await startTransfer(ip, 18080, 96, 64 * 1024, 8)
  await waitFor(() => transfer.written() >= 16, 'the transfer under way')
  const appliesBefore = h.applies.length

  // Add the port the way kubectl edit would: the API server allocates its nodePort.
  const cur = h.api.get('services', 'web') as unknown as { spec: { ports: Array<Record<string, unknown>> } }
  h.api.patch('services', 'web', { spec: { ports: [...cur.spec.ports, { name: 'b', port: 18081, protocol: 'TCP', targetPort: 8080 }] } })
  await h.serveNodePorts('web')
  const ports = await waitFor(() => {
    const p = ingressOf(h.api, 'web')[0]?.ports
    return p !== undefined && p.length === 2 ? p : undefined
  }, 'both ports in status', 3000)
  t.same(ports, [{ port: 18080, protocol: 'TCP' }, { port: 18081, protocol: 'TCP' }])
  t.ok(transfer.written() < 96, `the status changed mid-transfer (${transfer.written()}/96 chunks written)`)
  t.match(await httpGet(ip, 18081), /^node=/, 'the new port answers')

  const r = await transfer.done
  t.equal(r.bytes, 96 * 64 * 1024, 'every byte came back')
  t.equal(r.received, r.sent, 'byte for byte')

  const later = h.applies.slice(appliesBefore)
  t.ok(later.length >= 1, 'the change was applied')
  t.ok(later.some((a) => a.bound.some((b) => b.key === second)), 'the second listener was bound')
  t.notOk(later.some((a) => a.bound.some((b) => b.key === first) || a.removed.includes(first)), 'the first listener was never rebound or removed')
  t.ok(later.every((a) => a.kept.includes(first)), 'the first listener was kept by every apply')
  const l = h.dp.snapshot().listeners.find((x) => x.key === first)
  t.equal(l?.accepted, 1, 'one connection, never re-made')
})
