// A kind cluster without kube-proxy (kubeProxyMode: none, e.g. with Cilium's
// kube-proxy replacement) has nothing listening on :10256, the health port
// kind-tunnel checks by default. When it refuses on every node, the checks
// fall back to a TCP connect to the NodePort, said once; the backends stay
// in rotation. Real sockets: the "nodes" are loopback addresses serving a
// NodePort and nothing on 10256.
import t from 'tap'
import { connect, createServer, type Server } from 'node:net'
import { once } from 'node:events'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { HealthGroup, healthTimings, type DialFn } from '../../src/dataplane/health.js'
import { waitFor } from '../control/fixtures/harness.js'

const dial: DialFn = (e, ms, cb) => {
  const s = connect({ host: e.host, port: e.port })
  const timer = setTimeout(() => { s.destroy(); cb(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })) }, ms)
  s.once('connect', () => { clearTimeout(timer); s.pause(); cb(null, s) })
  s.once('error', (err) => { clearTimeout(timer); cb(err) })
}

t.test('kube-proxy-less nodes: TCP check of the NodePort, said once, nobody out of rotation', async (t) => {
  const a = 16 + Math.floor(Math.random() * 200)
  const nodes = [`127.${a}.7.1`, `127.${a}.7.2`]
  const servers: Server[] = []
  let port = 0
  for (const host of nodes) {
    const srv = createServer((s) => s.destroy())
    srv.listen({ host, port })
    await once(srv, 'listening')
    port = (srv.address() as { port: number }).port
    servers.push(srv)
  }
  t.teardown(() => { for (const s of servers) s.close() })
  const lines: string[] = []
  const logger = pino({ level: 'info' }, new Writable({ write (c: Buffer, _e, cb) { lines.push(c.toString('utf8')); cb() } }))
  const timings = healthTimings({ intervalMs: 50, timeoutMs: 500 })
  const groups = [1, 2].map((i) => new HealthGroup({ upstream: `kind/default/web${i}:80`, check: { kind: 'http', port: 10256, path: '/healthz' }, timings, dial, logger }))
  t.teardown(() => { for (const g of groups) g.close() })
  const members = groups.map((g) => nodes.map((host) => g.add({ host, port })))
  // Long enough for many probe rounds; every member must have stayed in rotation.
  await waitFor(() => members.flat().every((h) => h.checkSpec?.kind === 'tcp'), 'both groups to switch to TCP checks', 5000)
  // Then several TCP probe rounds (bounded): each must pass.
  const probes = (h: { lastFailure: string | undefined }): string | undefined => h.lastFailure
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.same(members.flat().map(probes).filter((f) => f !== undefined && f !== 'ECONNREFUSED'), [], 'no failure other than the refused kube-proxy port')
  t.ok(members.flat().every((h) => h.available), 'every backend in rotation')
  t.notOk(groups.some((g) => g.allUnhealthy), 'no upstream all-unhealthy')
  t.equal(lines.filter((l) => l.includes('refuses connections on every node')).length, 1, 'said once')
  t.notOk(lines.some((l) => l.includes('every backend of the upstream is unhealthy')), 'no all-unhealthy error line')
  t.notOk(lines.some((l) => l.includes('backend out of rotation')), 'no backend taken out')
})

t.test('with kube-proxy answering on one node, a refusing node is still taken out', async (t) => {
  const a = 16 + Math.floor(Math.random() * 200)
  const good = `127.${a}.8.1`
  const bad = `127.${a}.8.2`
  const hp = createServer((s) => { s.once('data', () => s.end('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')) })
  hp.listen({ host: good, port: 10256 })
  const ok = await once(hp, 'listening').then(() => true, () => false)
  if (!ok) { t.comment('10256 is taken on this machine'); return }
  t.teardown(() => hp.close())
  const logger = pino({ level: 'silent' })
  const g = new HealthGroup({ upstream: 'kind/default/mixed:80', check: { kind: 'http', port: 10256, path: '/healthz' }, timings: healthTimings({ intervalMs: 50, timeoutMs: 500 }), dial, logger })
  t.teardown(() => g.close())
  const hg = g.add({ host: good, port: 30080 })
  const hb = g.add({ host: bad, port: 30080 })
  await waitFor(() => !hb.healthy, 'the node without kube-proxy to go out', 5000)
  t.ok(hg.healthy)
  t.equal(hb.checkSpec?.kind, 'http', 'still the kube-proxy check')
})
