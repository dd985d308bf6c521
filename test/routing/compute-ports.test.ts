import t from 'tap'
import { computeRoutes, PORT_ERROR_NO_NODE_PORT, PORT_ERROR_PROTOCOL } from '../../src/routing/compute.js'
import { svc, tcp, KIND_NODES } from './compute-fixtures.js'

t.test('UDP and SCTP ports are reported unsupported, never silently dropped', async (t) => {
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
    [53, 'UDP', 'unsupported', PORT_ERROR_PROTOCOL],
    [9899, 'SCTP', 'unsupported', PORT_ERROR_PROTOCOL],
  ])
  t.same(r.table.listeners.map((l) => `${l.host}:${l.port}`), ['127.240.0.1:53'], 'only the TCP port is listened on')
  t.same(plan?.ingress, [{
    ip: '127.240.0.1',
    ipMode: 'Proxy',
    ports: [
      { port: 53, protocol: 'TCP' },
      { port: 53, protocol: 'UDP', error: PORT_ERROR_PROTOCOL },
      { port: 9899, protocol: 'SCTP', error: PORT_ERROR_PROTOCOL },
    ],
  }])
  const unsupported = plan?.events.filter((e) => e.kind === 'unsupported') ?? []
  t.equal(unsupported.length, 2)
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
  t.equal(plan?.events.filter((e) => e.kind === 'unsupported' && e.reason === 'NoNodePort').length, 2)
})

t.test('a port without protocol is TCP', async (t) => {
  const s = svc('web', { ports: [{ port: 80, nodePort: 30080 }] })
  const r = computeRoutes({ cluster: 'kind', services: [s], nodes: KIND_NODES }, { mode: 'ip', ipPool: '127.240.0.0/24' })
  t.equal(r.services[0]?.ports[0]?.status, 'served')
  t.equal(r.services[0]?.ports[0]?.protocol, 'TCP')
})
