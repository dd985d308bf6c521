import t from 'tap'
import { isUnspecifiedAddress } from '../../src/routing/types.js'
import { parseHostPort, parseEndpointList, parseRouteArg, parseIntOption } from '../../src/config/parse.js'

t.test('HOST:PORT forms', async (t) => {
  t.same(parseHostPort('127.0.0.1:8080'), { host: '127.0.0.1', port: 8080 })
  t.same(parseHostPort('[::1]:443'), { host: '::1', port: 443 })
  t.same(parseHostPort('localhost:1', { allowHostname: true }), { host: 'localhost', port: 1 })
})

t.test('wildcards are refused unless allowed', async (t) => {
  // Every spelling of an unspecified address, IPv4-mapped included (it binds every IPv4 address too).
  for (const raw of ['0.0.0.0:80', '[::]:80', ':80', '*:80', '0.00.0.0:80', '[::ffff:0.0.0.0]:80', '[::ffff:0:0]:80', '[0:0:0:0:0:0:0:0]:80', '[::0000]:80']) {
    t.throws(() => parseHostPort(raw), { code: 'KT_ERR_WILDCARD_BIND' }, raw)
  }
  t.same(parseHostPort('0.0.0.0:80', { allowWildcard: true }), { host: '0.0.0.0', port: 80 })
  t.same(parseHostPort('[::ffff:127.0.0.1]:80'), { host: '::ffff:127.0.0.1', port: 80 }, 'a specific IPv4-mapped address is not a wildcard')
})

t.test('isUnspecifiedAddress: by the address, not its spelling', async (t) => {
  for (const a of ['0.0.0.0', '::', '::0', '0:0::0', '::ffff:0.0.0.0', '::ffff:0:0']) t.ok(isUnspecifiedAddress(a), a)
  for (const a of ['127.0.0.1', '::1', '::ffff:127.0.0.1', '10.0.0.0', 'localhost', '']) t.notOk(isUnspecifiedAddress(a), a)
})

t.test('malformed addresses carry codes', async (t) => {
  for (const raw of ['127.0.0.1', '127.0.0.1:0', '127.0.0.1:65536', '127.0.0.1:http', '::1:80', '[::1]80', '[zz]:1', 'a b:1', '300.1.1.1:1']) {
    t.throws(() => parseHostPort(raw), { code: 'KT_ERR_INVALID_ADDRESS' }, raw)
  }
})

t.test('endpoint lists and routes', async (t) => {
  t.same(parseEndpointList('127.0.0.1:1, 127.0.0.2:2'), [{ host: '127.0.0.1', port: 1 }, { host: '127.0.0.2', port: 2 }])
  t.throws(() => parseEndpointList(''), { code: 'KT_ERR_INVALID_ADDRESS' })
  t.same(parseRouteArg('API.Example.Test.=127.0.0.1:1'), { names: ['api.example.test'], endpoints: [{ host: '127.0.0.1', port: 1 }] })
  t.same(parseRouteArg('*.apps.test=127.0.0.1:1').names, ['*.apps.test'])
  t.throws(() => parseRouteArg('a.*.test=127.0.0.1:1'), { code: 'KT_ERR_INVALID_ROUTE' })
  t.throws(() => parseRouteArg('=127.0.0.1:1'), { code: 'KT_ERR_INVALID_ROUTE' })
  t.throws(() => parseIntOption('5s', '--connect-timeout', 1), { code: 'KT_ERR_INVALID_ARG' })
  t.equal(parseIntOption('5000', '--connect-timeout', 1), 5000)
})
