// doctor and UDP: a UDP NodePort is never TCP-probed (it would read as a
// refusal); the UDP ports and the UDP listeners of a running up are listed.
// Also: endpoint findings carry the Service as structured fields.
import t from 'tap'
import { checkEndpoints, endpointTargets, type EndpointTarget, udpLines } from '../../src/doctor/checks.js'
import type { ClusterFacts } from '../../src/doctor/kube.js'
import type { UpStatus } from '../../src/app/status.js'

const facts = {
  cluster: 'kind',
  services: { ok: true, value: [{ metadata: { name: 'dns', namespace: 'default', uid: 'u' }, spec: { type: 'LoadBalancer', ports: [{ name: 'tcp', port: 53, protocol: 'TCP', nodePort: 30053 }, { name: 'udp', port: 53, protocol: 'UDP', nodePort: 30053 }] } }] },
  nodes: { ok: true, value: [{ metadata: { name: 'kind-control-plane' }, status: { addresses: [{ type: 'InternalIP', address: '172.18.0.2' }], conditions: [{ type: 'Ready', status: 'True' }] } }] },
} as unknown as ClusterFacts

t.test('endpoint probes cover the TCP port only', async (t) => {
  const targets = endpointTargets(facts)
  t.same(targets.map((x) => `${x.port}@${x.endpoint.host}:${x.endpoint.port}`), ['53@172.18.0.2:30053'])
})

t.test('udp lines: the cluster\'s UDP ports and up\'s UDP listeners', async (t) => {
  const a = udpLines(facts, undefined)
  t.equal(a.length, 1)
  t.match(a[0]?.message, /default\/dns 53\/UDP \(NodePort 30053\).*not connect-probed/)
  const st = { listeners: [{ key: '127.240.0.1:53/udp', name: '127.240.0.1:53/udp', active: 3 }, { key: '127.240.0.1:53', name: '127.240.0.1:53', active: 0 }] } as unknown as UpStatus
  const b = udpLines(undefined, st)
  t.same(b.map((l) => [l.check, l.status, l.message]), [['udp', 'ok', 'up serves 1 UDP listener: 127.240.0.1:53/udp (3 flows)']])
  t.same(udpLines(undefined, undefined), [])
})

t.test('endpoint findings name the Service by its namespace and name fields, not by splitting the display key', async (t) => {
  const [target] = endpointTargets(facts)
  t.same([target?.namespace, target?.name, target?.service], ['default', 'dns', 'default/dns'])
  const tgt = { ...(target as EndpointTarget), namespace: 'shop', name: 'cart', service: 'shop/cart' }
  const healthyRefused = await checkEndpoints('kind', [tgt], { health: async () => ({ ok: true, cause: 'ok' }), connect: async () => ({ outcome: 'refused' }) })
  t.match(healthyRefused[0]?.fix, /service-name=cart -n shop/)
  const down = await checkEndpoints('kind', [tgt], { health: async () => ({ ok: false, cause: 'http 503' }), connect: async () => ({ outcome: 'refused' }) })
  t.match(down[0]?.fix, /kubectl get pods -o wide -n shop; kubectl describe svc -n shop cart/)
})
