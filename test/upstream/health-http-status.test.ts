// An HTTP health endpoint answering 503 takes its backend out of rotation
// even though the data port still accepts; 200 brings it back. Only 2xx passes.

import t, { type Test } from 'tap'
import { createServer as createHttpServer } from 'node:http'
import { HealthGroup, healthTimings, probe } from '../../src/dataplane/health.js'
import { silentLogger } from '../../src/observe/logger.js'
import { connectTo, countingServer, dialTcp, waitFor } from './fixtures/net.js'

const fast = healthTimings({ intervalMs: 100, timeoutMs: 300, unhealthyThreshold: 2, healthyThreshold: 1 })

async function healthServer (t: Test, status: { code: number }): Promise<{ port: number, hits: { n: number, paths: string[] } }> {
  const hits = { n: 0, paths: [] as string[] }
  const srv = createHttpServer((req, res) => {
    hits.n++
    hits.paths.push(req.url ?? '')
    res.writeHead(status.code, { 'content-type': 'application/json' })
    res.end('{}')
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()))
  t.teardown(() => new Promise<void>((resolve) => { srv.closeAllConnections(); srv.close(() => resolve()) }))
  return { port: (srv.address() as { port: number }).port, hits }
}

t.test('503 on /healthz takes the backend out while its data port accepts', async (t) => {
  const data = await countingServer()
  t.teardown(() => data.close())
  const status = { code: 200 }
  const hs = await healthServer(t, status)
  const group = new HealthGroup({
    upstream: 'u',
    check: { kind: 'http', port: hs.port, path: '/livez' },
    timings: fast,
    dial: dialTcp,
    logger: silentLogger(),
  })
  t.teardown(() => group.close())
  const h = group.add(data.endpoint)
  await waitFor(() => hs.hits.n >= 2, 'probed', 2000)
  t.ok(h.available)
  t.equal(hs.hits.paths[0], '/livez', 'the configured path')

  status.code = 503
  await waitFor(() => !h.available, 'out on 503', 2000)
  t.equal(h.lastFailure, 'http 503')
  const s = await connectTo(data.endpoint)
  t.pass('the data port still accepts')
  s.destroy()
  t.equal(data.accepts, 1, 'probes never touched the data port')

  status.code = 204
  await waitFor(() => h.available, 'any 2xx brings it back', 2000)
  status.code = 302
  await waitFor(() => !h.available, 'a redirect is not healthy', 2000)
})

t.test('probe verdicts, one by one', async (t) => {
  const run = (port: number, path = '/healthz'): Promise<[boolean, string]> => new Promise((resolve) =>
    probe(dialTcp, { host: '127.0.0.1', port: 1 }, { kind: 'http', port, path }, 500, (ok, cause) => resolve([ok, cause])))
  const status = { code: 200 }
  const hs = await healthServer(t, status)
  t.same(await run(hs.port), [true, 'http 200'])
  status.code = 500
  t.same(await run(hs.port), [false, 'http 500'])

  // Garbage instead of HTTP, and a server that says nothing: both fail, bounded in time.
  const junk = await countingServer((s) => { s.end('SSH-2.0-OpenSSH\r\n') })
  t.teardown(() => junk.close())
  t.same(await run(junk.port), [false, 'malformed status line'])
  const mute = await countingServer((s) => { s.resume() }) // reads, never answers
  t.teardown(() => mute.close())
  const t0 = Date.now()
  t.same(await run(mute.port), [false, 'timeout'])
  t.ok(Date.now() - t0 < 1500, 'within the timeout')
  await waitFor(() => mute.open.size === 0, 'probe socket closed', 1000)

  const closed = await countingServer()
  const port = closed.port
  await closed.close()
  t.same(await run(port), [false, 'ECONNREFUSED'])
  const tcp = await new Promise<[boolean, string]>((resolve) => probe(dialTcp, junk.endpoint, { kind: 'tcp' }, 500, (ok, c) => resolve([ok, c])))
  t.same(tcp, [true, 'connected'])
})
