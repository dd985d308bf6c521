// `--listen HOST:PORT/udp` parsing (pure): what becomes a UDP listener and what is refused.
import t from 'tap'
import { buildProxyConfig } from '../../src/config/proxy.js'
import { splitProtocol } from '../../src/config/parse.js'

function code (fn: () => unknown): string | undefined {
  try { fn(); return undefined } catch (err) { return (err as { code?: string }).code }
}

t.test('protocol suffixes', async (t) => {
  t.same(splitProtocol('127.0.0.1:53/udp'), { address: '127.0.0.1:53', protocol: 'udp' })
  t.same(splitProtocol('127.0.0.1:53/UDP'), { address: '127.0.0.1:53', protocol: 'udp' })
  t.same(splitProtocol('127.0.0.1:53/tcp'), { address: '127.0.0.1:53', protocol: 'tcp' })
  t.same(splitProtocol('127.0.0.1:53'), { address: '127.0.0.1:53', protocol: 'tcp' })
  t.same(splitProtocol('[::1]:53/udp'), { address: '[::1]:53', protocol: 'udp' })
  t.equal(code(() => splitProtocol('127.0.0.1:53/sctp')), 'KT_ERR_INVALID_PROTOCOL')
  t.equal(code(() => splitProtocol('127.0.0.1:53/')), 'KT_ERR_INVALID_PROTOCOL')
})

t.test('a UDP listener: its own upstream id, the --backend endpoints, no routes', async (t) => {
  const c = buildProxyConfig({ listen: ['127.0.0.1:5353/udp', '127.0.0.1:5353'], backend: '127.0.0.1:53,127.0.0.2:53', udpIdleTimeout: '30000', udpMaxFlows: '100' })
  const [u, tcp] = c.table.listeners
  t.equal(u?.protocol, 'udp')
  t.equal(u?.default?.id, 'default/udp')
  t.same(u?.default?.endpoints, [{ host: '127.0.0.1', port: 53 }, { host: '127.0.0.2', port: 53 }])
  t.same(u?.routes, [])
  t.equal(tcp?.protocol, undefined, 'tcp is the default')
  t.equal(tcp?.port, 5353)
  t.equal(c.udp.idleTimeoutMs, 30_000)
  t.equal(c.udp.maxFlowsPerListener, 100)
  t.equal(buildProxyConfig({ listen: ['127.0.0.1:1/udp'], backend: '127.0.0.1:1' }).udp.idleTimeoutMs, undefined, 'the default (60 s) comes from the data plane')
})

t.test('refused: wildcard, bad timeouts, PROXY header, routes, no backend', async (t) => {
  t.equal(code(() => buildProxyConfig({ listen: ['0.0.0.0:53/udp'], backend: '127.0.0.1:1' })), 'KT_ERR_WILDCARD_BIND')
  t.equal(code(() => buildProxyConfig({ listen: ['[::]:53/udp'], backend: '127.0.0.1:1' })), 'KT_ERR_WILDCARD_BIND')
  t.equal(code(() => buildProxyConfig({ listen: ['127.0.0.1:0/udp'], backend: '127.0.0.1:1', udpIdleTimeout: '1m' })), 'KT_ERR_INVALID_ARG')
  t.equal(code(() => buildProxyConfig({ listen: ['127.0.0.1:0/udp'], backend: '127.0.0.1:1', udpMaxFlows: '0' })), 'KT_ERR_INVALID_ARG')
  t.equal(code(() => buildProxyConfig({ listen: ['127.0.0.1:0/udp'], backend: '127.0.0.1:1', proxyProtocol: 'v2' })), 'KT_ERR_INVALID_ARG')
  t.equal(code(() => buildProxyConfig({ listen: ['127.0.0.1:0/udp'], backend: '127.0.0.1:1', route: ['a.test=127.0.0.1:2'] })), 'KT_ERR_INVALID_ROUTE')
  t.equal(code(() => buildProxyConfig({ listen: ['127.0.0.1:0/udp'], route: ['a.test=127.0.0.1:2'] })), 'KT_ERR_INVALID_ROUTE')
  t.equal(code(() => buildProxyConfig({ listen: ['127.0.0.1:70000/udp'], backend: '127.0.0.1:1' })), 'KT_ERR_INVALID_ADDRESS')
})
