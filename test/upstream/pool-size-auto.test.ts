// Issue #4: `--pool-size` defaults to a small number where it pays. `auto`
// gives every backend 2 warm sockets where connects cross Docker Desktop's VM
// (the relay dialer; macOS and Windows) and none on a Linux direct path, where
// the native accept lane is faster than any pool. An explicit size always wins.

import t from 'tap'
import { connect, type Socket } from 'node:net'
import { parsePoolSize } from '../../src/config/parse.js'
import { buildProxyConfig } from '../../src/config/proxy.js'
import { KtError } from '../../src/errors.js'
import { DEFAULT_DATAPLANE_OPTIONS } from '../../src/dataplane/listener-manager.js'
import { AUTO_POOL_SIZE, effectivePoolSize } from '../../src/dataplane/pool.js'
import { Upstream } from '../../src/dataplane/upstream.js'
import type { Dialer, DialRequest } from '../../src/dataplane/dialer.js'
import { silentLogger } from '../../src/observe/logger.js'
import { Registry } from '../../src/observe/metrics.js'
import type { UpstreamSpec } from '../../src/routing/types.js'
import { countingServer, sleep, waitFor } from './fixtures/net.js'

t.test('effectivePoolSize: explicit wins, then a number, then auto by path', async (t) => {
  t.equal(AUTO_POOL_SIZE, 2, 'a small number')
  const cases: Array<[number | undefined, number | 'auto', string | undefined, NodeJS.Platform, number, string]> = [
    [5, 'auto', undefined, 'linux', 5, 'per-upstream size wins over auto'],
    [0, 'auto', 'relay:c1', 'darwin', 0, 'per-upstream 0 disables even on a slow path'],
    [undefined, 7, 'relay:c1', 'linux', 7, 'a numeric --pool-size applies everywhere'],
    [undefined, 0, undefined, 'darwin', 0, '--pool-size 0 disables everywhere'],
    [undefined, 'auto', undefined, 'linux', 0, 'auto, Linux direct: off'],
    [undefined, 'auto', 'direct', 'linux', 0, 'auto, explicit direct dialer: off'],
    [undefined, 'auto', 'relay:kind', 'linux', 2, 'auto through the relay: on'],
    [undefined, 'auto', undefined, 'darwin', 2, 'auto on macOS: on (Docker Desktop forwarding)'],
    [undefined, 'auto', undefined, 'win32', 2, 'auto on Windows: on'],
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

t.test('auto through a relay-named dialer keeps 2 warm sockets per backend', async (t) => {
  const a = await countingServer(() => {})
  const b = await countingServer(() => {})
  t.teardown(async () => { await a.close(); await b.close() })
  const dialer = new CountingDialer()
  const up = make({ id: 'u', endpoints: [a.endpoint, b.endpoint], dialer: 'relay:test' }, new Map([['relay:test', dialer]]))
  t.teardown(() => up.close())
  await waitFor(() => a.open.size === 2 && b.open.size === 2, 'each backend holds 2 pre-connected sockets', 3000)
  for (const be of up.backends) t.equal(be.pool?.capacity, AUTO_POOL_SIZE, `${be.key}: pool of ${AUTO_POOL_SIZE}`)
  t.equal(dialer.dials, 4, 'through the named dialer')
})

t.test('auto on a Linux direct path: no pool, no pre-connections', { skip: process.platform !== 'linux' ? 'Linux only' : false }, async (t) => {
  const a = await countingServer(() => {})
  t.teardown(() => a.close())
  const up = make({ id: 'u', endpoints: [a.endpoint] }, new Map())
  t.teardown(() => up.close())
  await sleep(200)
  t.equal(a.accepts, 0, 'nothing dialled ahead of time')
  t.equal(up.backends[0]?.pool, undefined)
  // Switching the upstream to a slow-path dialer on a table update starts its pool.
  const dialer = new CountingDialer()
  const up2 = make({ id: 'v', endpoints: [a.endpoint] }, new Map([['relay:k', dialer]]))
  t.teardown(() => up2.close())
  up2.update({ id: 'v', endpoints: [a.endpoint], dialer: 'relay:k' })
  await waitFor(() => a.open.size === 2, 'the relay path gets its 2 warm sockets', 3000)
  up2.update({ id: 'v', endpoints: [a.endpoint] })
  t.equal(up2.backends[0]?.pool, undefined, 'and back on the direct path the pool is closed')
  await waitFor(() => a.open.size === 0, 'its warm sockets with it', 3000)
})
