import t from 'tap'
import { planStatus } from '../../src/control/status-plan.js'
import { computeRoutes, PORT_ERROR_NO_NODE_PORT, PORT_ERROR_PROTOCOL } from '../../src/routing/compute.js'
import { svc, tcp, KIND_NODES } from './compute-fixtures.js'

t.test('UDP is served on its own listener next to TCP on the same port; SCTP is reported unsupported, never silently dropped', async (t) => {
  const s = svc('dns', {
    ports: [
      tcp(53, 30053, { name: 'dns-tcp' }),
      { name: 'dns', port: 53, protocol: 'UDP', nodePort: 30054 },
      { name: 'sig', port: 9899, protocol: 'SCTP', nodePort: 30055 },
    ],
  })
  const r = computeRoutes({ cluster: 'kind', services: [s], nodes: KIND_NODES }, { mode: 'ip', ipPool: '127.240.0.0/24' })
  const plan = r.services[0]
  t.same(plan?.ports.map((p) => [p.port, p.protocol, p.status, p.error]), [
    [53, 'TCP', 'served', undefined],
    [53, 'UDP', 'served', undefined],
    [9899, 'SCTP', 'unsupported', PORT_ERROR_PROTOCOL],
  ])
  t.same(r.table.listeners.map((l) => `${l.host}:${l.port}/${l.protocol ?? 'tcp'}`).sort(), ['127.240.0.1:53/tcp', '127.240.0.1:53/udp'], 'TCP and UDP 53 each get a listener; SCTP none')
  const udp = r.table.listeners.find((l) => l.protocol === 'udp')
  t.same(udp?.default?.endpoints.map((e) => e.port), [30054, 30054, 30054].slice(0, udp?.default?.endpoints.length), 'the UDP nodePort')
  t.equal(udp?.default?.id, 'kind/default/dns:53/udp')
  t.equal(udp?.default?.poolSize, 0, 'no warm (TCP) sockets for UDP')
  t.equal(udp?.default?.health?.kind, 'http', 'health from the node, never a TCP connect')
  t.same(plan?.ports.find((p) => p.protocol === 'UDP')?.listeners, ['127.240.0.1:53/udp'])
  t.same(plan?.ingress, [{
    ip: '127.240.0.1',
    ipMode: 'Proxy',
    ports: [
      { port: 53, protocol: 'TCP' },
      { port: 53, protocol: 'UDP' },
      { port: 9899, protocol: 'SCTP', error: PORT_ERROR_PROTOCOL },
    ],
  }])
  const unsupported = plan === undefined ? [] : planStatus(s, plan).events.filter((e) => e.kind === 'unsupported')
  t.equal(unsupported.length, 1)
  t.ok(unsupported.every((e) => e.type === 'Warning' && e.reason === 'ProtocolNotSupported'))
})

t.test('allocateLoadBalancerNodePorts: false (no nodePort) is reported the same way', async (t) => {
  const s = svc('web', { spec: { allocateLoadBalancerNodePorts: false }, ports: [tcp(80, undefined, { name: 'http' }), tcp(8080, 0)] })
  const r = computeRoutes({ cluster: 'kind', services: [s], nodes: KIND_NODES }, { mode: 'hostname' })
  const plan = r.services[0]
  t.same(plan?.ports.map((p) => [p.port, p.status, p.error]), [[80, 'unsupported', PORT_ERROR_NO_NODE_PORT], [8080, 'unsupported', PORT_ERROR_NO_NODE_PORT]])
  t.same(r.table.listeners, [])
  t.equal(plan?.action, 'serve', 'the Service is handled; its ports just cannot be reached')
  t.same(plan?.ingress, [{ hostname: 'web.default.localhost', ports: [{ port: 80, protocol: 'TCP', error: PORT_ERROR_NO_NODE_PORT }, { port: 8080, protocol: 'TCP', error: PORT_ERROR_NO_NODE_PORT }] }])
  t.equal(plan === undefined ? 0 : planStatus(s, plan).events.filter((e) => e.kind === 'unsupported' && e.reason === 'NoNodePort').length, 2)
})

t.test('a port without protocol is TCP', async (t) => {
  const s = svc('web', { ports: [{ port: 80, nodePort: 30080 }] })
  const r = computeRoutes({ cluster: 'kind', services: [s], nodes: KIND_NODES }, { mode: 'ip', ipPool: '127.240.0.0/24' })
  t.equal(r.services[0]?.ports[0]?.status, 'served')
  t.equal(r.services[0]?.ports[0]?.protocol, 'TCP')
})

t.test('UDP in hostname mode: the listen host at the port number; a later Service with the same UDP port is refused, not shared', async (t) => {
  const a = svc('dns-a', { created: '2025-01-01T00:00:00Z', ports: [{ name: 'dns', port: 53, protocol: 'UDP', nodePort: 30001 }] })
  const b = svc('dns-b', { created: '2025-01-02T00:00:00Z', ports: [{ name: 'dns', port: 53, protocol: 'UDP', nodePort: 30002 }] })
  const r = computeRoutes({ cluster: 'kind', services: [b, a], nodes: KIND_NODES }, { mode: 'hostname' })
  const udp = r.table.listeners.filter((l) => l.protocol === 'udp')
  t.equal(udp.length, 1)
  t.equal(udp[0]?.port, 53)
  t.equal(udp[0]?.owner, 'default/dns-a', 'the older Service serves it')
  const pb = r.services.find((s) => s.name === 'dns-b')
  t.equal(pb?.ports[0]?.status, 'unsupported')
  t.match(pb?.ports[0]?.message, /datagrams cannot be routed by name/)
  // In ip mode each has its own address, so both are served.
  const ip = computeRoutes({ cluster: 'kind', services: [b, a], nodes: KIND_NODES }, { mode: 'ip', ipPool: '127.240.0.0/24' })
  t.equal(ip.table.listeners.filter((l) => l.protocol === 'udp').length, 2)
  t.ok(ip.services.every((s) => s.ports[0]?.status === 'served'))
})
