// A new LoadBalancer Service gets its IP in status within 2 s, carries the
// finalizer, gets an EnsuredLoadBalancer event, and IP:port reaches a node.

import t from 'tap'
import { FINALIZER } from '../../src/routing/compute.js'
import { finalizersOf, httpGet, ingressOf, lbService, startHarness, waitFor } from './fixtures/harness.js'

t.test('a new LoadBalancer Service is served and its IP is in status within 2 s', async (t) => {
  const h = await startHarness(t)
  h.api.create(lbService('web', [{ name: 'http', port: 18080 }]))
  await h.serveNodePorts('web')
  const t0 = Date.now()
  const ingress = await waitFor(() => {
    const i = ingressOf(h.api, 'web')
    return i.length > 0 ? i : undefined
  }, 'status.loadBalancer.ingress', 2000)
  const ms = Date.now() - t0
  t.ok(ms < 2000, `status in ${ms} ms`)
  const ip = ingress[0]?.ip
  t.ok(ip !== undefined && ip.startsWith(h.pool.replace(/\.0\/24$/, '.')), `IP ${ip} from the pool ${h.pool}`)
  t.same(ingress, [{ ip, ipMode: 'Proxy', ports: [{ port: 18080, protocol: 'TCP' }] }], 'ip, ipMode Proxy and per-port status')
  t.same(finalizersOf(h.api, 'web'), [FINALIZER], 'the finalizer is on')

  const body = await httpGet(ip as string, 18080)
  t.match(body, /^node=127\.\d+\.\d+\.\d+:\d+$/, 'IP:port reaches a node\'s NodePort')
  const nodePort = (h.api.get('services', 'web') as unknown as { spec: { ports: Array<{ nodePort: number }> } }).spec.ports[0]?.nodePort
  t.ok(body.endsWith(`:${nodePort}`), 'through the NodePort the API server allocated')

  const events = await waitFor(() => {
    const evs = h.api.list('events', 'default').filter((e) => (e as unknown as { involvedObject: { name: string } }).involvedObject.name === 'web')
    return evs.length > 0 ? evs : undefined
  }, 'an event on the Service')
  const ev = events[0] as unknown as { reason: string, type: string, count: number, message: string, involvedObject: { kind: string, uid: string } }
  t.equal(ev.reason, 'EnsuredLoadBalancer')
  t.equal(ev.type, 'Normal')
  t.equal(ev.count, 1)
  t.equal(ev.involvedObject.kind, 'Service')
  t.equal(ev.involvedObject.uid, h.api.get('services', 'web').metadata.uid)
  t.match(ev.message, ip as string)

  const snap = h.snapshot()
  const s = snap.services.find((x) => x.key === 'default/web')
  t.equal(s?.ip, ip)
  t.equal(s?.statusPatched, true)
  t.equal(s?.finalizer, true)
  t.same(s?.ports.map((p) => [p.port, p.status, p.up]), [[18080, 'served', true]])
  t.equal(Object.values(s?.backends ?? {})[0]?.length, 2, 'both nodes are backends')
  t.same(snap.addresses, [ip])
  t.ok(snap.informers.every((i) => i.synced && i.watching), 'every informer is watching')
})

t.test('UDP ports are served next to TCP; allocateLoadBalancerNodePorts: false is reported, not dropped', async (t) => {
  const h = await startHarness(t)
  h.api.create(lbService('dns', [{ name: 'dns-tcp', port: 18053, protocol: 'TCP' }, { name: 'dns-udp', port: 18053, protocol: 'UDP' }]))
  h.api.create(lbService('nonp', [{ name: 'tcp', port: 18054 }], { spec: { allocateLoadBalancerNodePorts: false } }))
  await h.serveNodePorts('dns')
  const ingress = await waitFor(() => {
    const a = ingressOf(h.api, 'dns')
    const b = ingressOf(h.api, 'nonp')
    return a.length > 0 && b.length > 0 ? { a, b } : undefined
  }, 'both statuses', 3000)
  t.same(ingress.a[0]?.ports, [{ port: 18053, protocol: 'TCP' }, { port: 18053, protocol: 'UDP' }])
  t.same(ingress.b[0]?.ports, [{ port: 18054, protocol: 'TCP', error: 'kind-tunnel.dev/NoNodePort' }])
  const reasons = await waitFor(() => {
    const rs = h.api.list('events', 'default').map((e) => `${(e as unknown as { involvedObject: { name: string } }).involvedObject.name}:${(e as unknown as { reason: string }).reason}`).sort()
    return rs.length >= 3 ? rs : undefined
  }, 'three events')
  t.same(reasons, ['dns:EnsuredLoadBalancer', 'nonp:EnsuredLoadBalancer', 'nonp:NoNodePort'])
  const body = await httpGet(ingress.a[0]?.ip as string, 18053)
  t.match(body, /^node=/, 'the TCP port is served')
})
