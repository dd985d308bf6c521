// A LoadBalancer Service with TCP and UDP on the same port, through the
// controller and the test API server: one NodePort for both (as the real API
// server allocates), status ports[] with protocol UDP, and datagrams to IP:53/udp
// reach a node's UDP NodePort (issue #16).
import t from 'tap'
import { createSocket } from 'node:dgram'
import { once } from 'node:events'
import { httpGet, ingressOf, lbService, startHarness, waitFor } from '../control/fixtures/harness.js'
import { udpClient } from './support.js'

t.test('TCP and UDP on one port number, end to end through the controller', async (t) => {
  const h = await startHarness(t)
  h.api.create(lbService('dns', [{ name: 'dns-tcp', port: 18053, protocol: 'TCP' }, { name: 'dns-udp', port: 18053, protocol: 'UDP' }]))
  const svc = h.api.get('services', 'dns') as unknown as { spec: { ports: Array<{ nodePort: number, protocol: string }> } }
  const [tcpNp, udpNp] = svc.spec.ports.map((p) => p.nodePort)
  t.ok(typeof udpNp === 'number' && udpNp > 0, 'the UDP port got a NodePort')
  t.equal(udpNp, tcpNp, 'TCP and UDP on one port number share the NodePort, as the real API server allocates')
  await h.serveNodePorts('dns')
  // A UDP "node" on every node IP at the NodePort, answering with who it is.
  for (const ip of h.nodeIps) {
    const s = createSocket('udp4')
    s.on('message', (m, r) => { s.send(Buffer.from(`udp node=${ip}:${udpNp as number} ${m.toString()}`), r.port, r.address) })
    s.bind(udpNp, ip)
    await once(s, 'listening')
    t.teardown(() => { s.close() })
  }
  const ingress = await waitFor(() => { const i = ingressOf(h.api, 'dns'); return i.length > 0 ? i : undefined }, 'status', 3000)
  t.same(ingress[0]?.ports, [{ port: 18053, protocol: 'TCP' }, { port: 18053, protocol: 'UDP' }], 'status.loadBalancer.ingress[].ports[] has UDP, no error')
  const ip = ingress[0]?.ip as string
  t.match(await httpGet(ip, 18053), /^node=/, 'TCP 18053 reaches a node')
  const c = await udpClient()
  t.teardown(() => { c.close() })
  c.send('query', 18053, ip)
  const got = await c.waitCount(1)
  t.match(got[0]?.toString(), new RegExp(`^udp node=[\\d.]+:${udpNp as number} query$`), 'UDP 18053 reaches a node\'s UDP NodePort')
  const snap = h.snapshot()
  const s = snap.services.find((x) => x.key === 'default/dns')
  t.same(s?.ports.map((p) => [p.port, p.protocol, p.status, p.up]), [[18053, 'TCP', 'served', true], [18053, 'UDP', 'served', true]])
  t.same(s?.ports[1]?.listeners, [`${ip}:18053/udp`])
  const dpSnap = h.dp.snapshot()
  t.ok(dpSnap.listeners.some((l) => l.key === `${ip}:18053/udp` && l.active === 1), 'the data plane lists the UDP listener with its flow')
})
