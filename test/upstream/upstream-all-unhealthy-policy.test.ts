// The Upstream under "every backend is down": try-all (default) still picks
// and connects; refuse picks nothing and names the condition
// KT_ERR_ALL_UNHEALTHY. Also: a removed upstream stops its checks and pools.

import t from 'tap'
import type { Socket } from 'node:net'
import { Upstream, type ClientInfo } from '../../src/dataplane/upstream.js'
import { silentLogger } from '../../src/observe/logger.js'
import { Registry } from '../../src/observe/metrics.js'
import type { UpstreamSpec } from '../../src/routing/types.js'
import { countingServer, exchange, waitFor } from './fixtures/net.js'

const client: ClientInfo = { address: '127.0.0.1', port: 40000, family: 4, localAddress: '127.0.0.1', localPort: 8080 }
const none = new Set<never>()

function make (spec: UpstreamSpec, metrics = new Registry()): Upstream {
  return new Upstream(spec, {
    dialers: new Map(),
    metrics,
    logger: silentLogger(),
    defaults: { connectTimeoutMs: 1000, policy: 'round-robin', poolSize: 0, health: { ejectAfterFailures: 2, ejectBaseMs: 60_000, ejectMaxMs: 60_000 } },
  })
}

function connect (up: Upstream, b: ReturnType<Upstream['pick']>): Promise<Socket | Error> {
  return new Promise((resolve) => up.connect(b as NonNullable<typeof b>, client, 1000, (err, s) => resolve(err ?? s as Socket)))
}

t.test('try-all keeps connecting when every backend is ejected', async (t) => {
  const be = await countingServer()
  t.teardown(() => be.close())
  const up = make({ id: 'u', endpoints: [be.endpoint] })
  t.teardown(() => up.close())
  const b = up.pick(client, none)
  t.ok(b)
  // Two failures eject it (ejectAfterFailures: 2 above).
  b?.health.connectFailed(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))
  b?.health.connectFailed(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))
  t.equal(up.allUnhealthy, true)
  t.equal(up.noBackendCode, 'KT_ERR_NO_BACKEND')
  const again = up.pick(client, none)
  t.equal(again, b, 'try-all: picked anyway')
  t.equal(up.pick(client, new Set([b as NonNullable<typeof b>])), undefined, 'but never an excluded one')
  const s = await connect(up, again)
  t.notOk(s instanceof Error, 'and the connect goes through')
  if (!(s instanceof Error)) { t.equal((await exchange(s, 'ok', 2)).toString(), 'ok'); s.destroy() }
  t.equal(up.allUnhealthy, false, 'the successful connect readmitted it')
})

t.test('refuse: no pick while every backend is down, with its own code', async (t) => {
  const be = await countingServer()
  t.teardown(() => be.close())
  const up = make({ id: 'u', endpoints: [be.endpoint], allUnhealthy: 'refuse' })
  t.teardown(() => up.close())
  const b = up.pick(client, none)
  b?.health.connectFailed(new Error('x'))
  b?.health.connectFailed(new Error('x'))
  t.equal(up.pick(client, none), undefined)
  t.equal(up.noBackendCode, 'KT_ERR_ALL_UNHEALTHY')
  up.update({ id: 'u', endpoints: [be.endpoint], allUnhealthy: 'try-all' })
  t.equal(up.pick(client, none), b, 'the policy follows a table update; the Backend object is kept')
})

t.test('PROXY header first, on fresh and warm sockets; close stops pools and checks', async (t) => {
  const seen: Buffer[] = []
  const be = await countingServer((s) => { s.on('data', (d: Buffer) => { seen.push(d) }) })
  t.teardown(() => be.close())
  const metrics = new Registry()
  const up = make({ id: 'u', endpoints: [be.endpoint], proxyProtocol: 'v1', poolSize: 1, health: { kind: 'tcp' } }, metrics)
  await waitFor(() => be.accepts >= 1, 'warm socket', 2000)
  const b = up.pick(client, none)
  const s = await connect(up, b)
  t.notOk(s instanceof Error)
  if (s instanceof Error) return
  up.acquired(b as NonNullable<typeof b>)
  s.write('payload')
  await waitFor(() => Buffer.concat(seen).toString().endsWith('payload'), 'Buffer.concat(seen).toString().endsWith(\'payload\')', 2000)
  t.equal(Buffer.concat(seen).toString(), 'PROXY TCP4 127.0.0.1 127.0.0.1 40000 8080\r\npayload', 'header, then the client bytes')
  t.match(metrics.render(), /kt_upstream_backend_active_connections\{backend="127\.0\.0\.1:\d+",upstream="u"\} 1/)
  up.release(b as NonNullable<typeof b>)
  s.destroy()
  up.close()
  t.equal(up.pick(client, none), undefined, 'closed: no picks')
  await waitFor(() => be.open.size === 0, 'warm sockets closed', 2000)
  const accepts = be.accepts
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(be.accepts, accepts, 'no refills or checks after close')
  t.notMatch(metrics.render(), /kt_upstream_backend_active_connections\{/, 'its series are gone')
  t.notMatch(metrics.render(), /kt_upstream_pool_idle\{/)
})

t.test('backend status for `kind-tunnel status`', async (t) => {
  const be = await countingServer()
  t.teardown(() => be.close())
  const up = make({ id: 'u', endpoints: [be.endpoint, { host: '127.0.0.1', port: 1 }], poolSize: 1 })
  t.teardown(() => up.close())
  await waitFor(() => up.backends[0]?.status().poolIdle === 1, 'up.backends[0]?.status().poolIdle === 1', 2000)
  await waitFor(() => up.backends[1]?.status().ejected === true, 'port 1 refuses: warm dials eject it', 3000)
  const [ok, bad] = up.backends.map((b) => b.status())
  t.same(ok, { key: `127.0.0.1:${be.port}`, active: 0, available: true, healthy: true, ejected: false, lastFailure: undefined, poolIdle: 1, poolHits: 0, poolMisses: 0 })
  t.equal(bad?.available, false)
  t.equal(bad?.lastFailure, 'ECONNREFUSED')
  t.equal(bad?.poolIdle, 0)
})
