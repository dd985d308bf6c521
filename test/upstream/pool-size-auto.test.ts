// `--pool-size`: `auto` (the default) holds no idle connection to any backend
// on any path (issue 12, bug 1: a warm backend socket breaks iperf3 and
// servers that speak first); the relay dialer keeps its own unbound warm
// connections instead. An explicit size (per Service, or --pool-size N) wins.

import t from 'tap'
import { connect, type Socket } from 'node:net'
import { parsePoolSize } from '../../src/config/parse.js'
import { buildProxyConfig } from '../../src/config/proxy.js'
import { KtError } from '../../src/errors.js'
import { DEFAULT_DATAPLANE_OPTIONS } from '../../src/dataplane/listener-manager.js'
import { effectivePoolSize } from '../../src/dataplane/pool.js'
import { Upstream } from '../../src/dataplane/upstream.js'
import type { Dialer, DialRequest } from '../../src/dataplane/dialer.js'
import { silentLogger } from '../../src/observe/logger.js'
import { Registry } from '../../src/observe/metrics.js'
import type { UpstreamSpec } from '../../src/routing/types.js'
import { countingServer, sleep, waitFor } from './fixtures/net.js'

t.test('effectivePoolSize: explicit wins, then a number, then auto (0 everywhere)', async (t) => {
  const cases: Array<[number | undefined, number | 'auto', string | undefined, NodeJS.Platform, number, string]> = [
    [5, 'auto', undefined, 'linux', 5, 'per-upstream size wins over auto'],
    [0, 'auto', 'relay:c1', 'darwin', 0, 'per-upstream 0 disables even on a slow path'],
    [undefined, 7, 'relay:c1', 'linux', 7, 'a numeric --pool-size applies everywhere'],
    [undefined, 0, undefined, 'darwin', 0, '--pool-size 0 disables everywhere'],
    [undefined, 'auto', undefined, 'linux', 0, 'auto, Linux direct: off'],
    [undefined, 'auto', 'direct', 'linux', 0, 'auto, explicit direct dialer: off'],
    [undefined, 'auto', 'relay:kind', 'linux', 0, 'auto through the relay: off (the relay dialer pools unbound connections)'],
    [undefined, 'auto', undefined, 'darwin', 0, 'auto on macOS: off'],
    [undefined, 'auto', undefined, 'win32', 0, 'auto on Windows: off'],
  ]
  for (const [explicit, setting, dialer, platform, want, name] of cases) t.equal(effectivePoolSize(explicit, setting, dialer, platform), want, name)
})

t.test('--pool-size parsing: auto or a whole number, a stable code otherwise', async (t) => {
  t.equal(parsePoolSize('auto', 10), 'auto')
  t.equal(parsePoolSize(' AUTO ', 10), 'auto')
  t.equal(parsePoolSize('0', 10), 0)
  t.equal(parsePoolSize('4', 10), 4)
  for (const bad of ['x', '-1', '1.5', '', '11', 'auto2']) {
    t.throws(() => parsePoolSize(bad, 10), { code: 'KT_ERR_INVALID_ARG' }, JSON.stringify(bad))
  }
  t.equal(DEFAULT_DATAPLANE_OPTIONS.poolSize, 'auto', 'the data plane default is auto')
  const cfg = buildProxyConfig({ listen: ['127.0.0.1:0'], backend: '127.0.0.1:9' })
  t.equal(cfg.dataplane.poolSize, undefined, 'proxy leaves the default (auto) alone')
  t.equal(buildProxyConfig({ listen: ['127.0.0.1:0'], backend: '127.0.0.1:9', poolSize: 'auto' }).dataplane.poolSize, 'auto')
  t.equal(buildProxyConfig({ listen: ['127.0.0.1:0'], backend: '127.0.0.1:9', poolSize: '3' }).dataplane.poolSize, 3)
  try {
    buildProxyConfig({ listen: ['127.0.0.1:0'], backend: '127.0.0.1:9', poolSize: 'lots' })
    t.fail('should throw')
  } catch (err) {
    t.ok(err instanceof KtError)
    t.match((err as Error).message, /--pool-size: "lots" is not `auto` or a whole number/)
  }
})

/** A Dialer registered under a relay name that dials straight to the target (the path shape, not the relay). */
class CountingDialer implements Dialer {
  dials = 0
  dial (req: DialRequest): Promise<Socket> {
    this.dials++
    return new Promise((resolve, reject) => {
      const s = connect({ host: req.host, port: req.port, allowHalfOpen: true })
      s.once('connect', () => { s.removeListener('error', reject); s.pause(); resolve(s) })
      s.once('error', reject)
    })
  }
}

function make (spec: UpstreamSpec, dialers: Map<string, Dialer>): Upstream {
  return new Upstream(spec, {
    dialers,
    metrics: new Registry(),
    logger: silentLogger(),
    defaults: { connectTimeoutMs: 1000, policy: 'round-robin', poolSize: 'auto' },
  })
}

t.test('auto through a relay-named dialer: no warm socket to any backend; a per-upstream size does pool', async (t) => {
  const a = await countingServer(() => {})
  t.teardown(() => a.close())
  const dialer = new CountingDialer()
  const up = make({ id: 'u', endpoints: [a.endpoint], dialer: 'relay:test' }, new Map([['relay:test', dialer]]))
  t.teardown(() => up.close())
  t.equal(up.backends[0]?.pool, undefined, 'no pool with auto')
  t.equal(dialer.dials, 0, 'nothing dialled ahead of time')
  up.update({ id: 'u', endpoints: [a.endpoint], dialer: 'relay:test', poolSize: 2 })
  await waitFor(() => a.open.size === 2, 'asked for (the Service annotation): 2 warm sockets', 3000)
  t.equal(dialer.dials, 2, 'through the named dialer')
})

t.test('auto on a Linux direct path: no pool, no pre-connections', { skip: process.platform !== 'linux' ? 'Linux only' : false }, async (t) => {
  const a = await countingServer(() => {})
  t.teardown(() => a.close())
  const up = make({ id: 'u', endpoints: [a.endpoint] }, new Map())
  t.teardown(() => up.close())
  await sleep(200)
  t.equal(a.accepts, 0, 'nothing dialled ahead of time')
  t.equal(up.backends[0]?.pool, undefined)
  // An explicit size on a table update starts a pool; dropping it closes the pool and its sockets.
  const up2 = make({ id: 'v', endpoints: [a.endpoint] }, new Map())
  t.teardown(() => up2.close())
  up2.update({ id: 'v', endpoints: [a.endpoint], poolSize: 2 })
  await waitFor(() => a.open.size === 2, '2 warm sockets when asked', 3000)
  up2.update({ id: 'v', endpoints: [a.endpoint] })
  t.equal(up2.backends[0]?.pool, undefined, 'and without the size the pool is closed')
  await waitFor(() => a.open.size === 0, 'its warm sockets with it', 3000)
})
