// A node killed with kill -9 leaves rotation within 7 s on the default
// timings (CPK's: 2 s interval, 3 s timeout, 2 failures), no client is sent
// to it afterwards, and it comes back once restarted. Each "node" is a child
// process on its own loopback address with the same NodePort and health
// port, as kind nodes are.

import t, { type Test } from 'tap'
import { HealthGroup, healthTimings, type BackendHealth } from '../../src/dataplane/health.js'
import { createBalancer } from '../../src/dataplane/balancer.js'
import { silentLogger } from '../../src/observe/logger.js'
import { Registry } from '../../src/observe/metrics.js'
import type { Endpoint } from '../../src/routing/types.js'
import { startChild, type ChildBackend } from './fixtures/child.js'
import { dialTcp, exchange, freePort, sleep, waitFor } from './fixtures/net.js'

class Backend {
  active = 0
  readonly key: string
  constructor (readonly endpoint: Endpoint, readonly health: BackendHealth) { this.key = health.key }
  get available (): boolean { return this.health.available }
}

async function nodes (t: Test): Promise<{ kids: ChildBackend[], dataPort: number, healthPort: number }> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const dataPort = await freePort('127.0.0.2')
    const healthPort = await freePort('127.0.0.2')
    const kids: ChildBackend[] = []
    try {
      for (const host of ['127.0.0.2', '127.0.0.3']) kids.push(await startChild(host, dataPort, healthPort))
      t.teardown(async () => { for (const k of kids) await k.kill9() })
      return { kids, dataPort, healthPort }
    } catch {
      for (const k of kids) await k.kill9()
    }
  }
  throw new Error('could not start the backend children')
}

t.test('active check alone: out within 7 s of kill -9, back after restart', async (t) => {
  // Completed probe connections per host, to wait for the first round.
  const probed = new Map<string, number>()
  const probeDial: typeof dialTcp = (ep, ms, cb) => dialTcp(ep, ms, (err, s) => { if (err === null) probed.set(ep.host, (probed.get(ep.host) ?? 0) + 1); cb(err, s) })
  const { kids, dataPort, healthPort } = await nodes(t)
  const metrics = new Registry()
  const group = new HealthGroup({
    upstream: 'default/web:http',
    check: { kind: 'http', port: healthPort, path: '/healthz' },
    timings: healthTimings(), // the defaults: 2 s / 3 s / 2 / 1
    dial: probeDial,
    logger: silentLogger(),
    metrics,
  })
  t.teardown(() => group.close())
  const hs = kids.map((k) => group.add({ host: k.host, port: dataPort }))
  const victim = hs[0] as BackendHealth
  await waitFor(() => kids.every((k) => (probed.get(k.host) ?? 0) >= 1), () => `every backend probed once (${JSON.stringify([...probed])})`, 8000)
  t.ok(hs.every((h) => h.available), 'both healthy')

  const killedAt = Date.now()
  await (kids[0] as ChildBackend).kill9()
  await waitFor(() => !victim.available, 'taken out of rotation', 8000)
  const took = Date.now() - killedAt
  t.ok(took <= 7000, `out after ${took} ms (≤ 7000)`)
  t.equal(victim.lastFailure, 'ECONNREFUSED')
  t.ok(hs[1]?.available, 'the other stays in')
  t.match(metrics.render(), new RegExp(`kt_upstream_backend_up\\{backend="127\\.0\\.0\\.2:${dataPort}",upstream="default/web:http"\\} 0`))

  kids[0] = await startChild('127.0.0.2', dataPort, healthPort)
  const restartedAt = Date.now()
  await waitFor(() => victim.available, 'back in rotation after restart', 5000)
  t.ok(Date.now() - restartedAt <= 2500, `back after ${Date.now() - restartedAt} ms (one interval + one success)`)
})

t.test('with traffic: ejected at once on connect failures; no client reaches it afterwards', async (t) => {
  const { kids, dataPort, healthPort } = await nodes(t)
  const group = new HealthGroup({
    upstream: 'u',
    check: { kind: 'http', port: healthPort, path: '/healthz' },
    timings: healthTimings(),
    dial: dialTcp,
    logger: silentLogger(),
  })
  t.teardown(() => group.close())
  const backends = kids.map((k) => { const e = { host: k.host, port: dataPort }; return new Backend(e, group.add(e)) })
  const bal = createBalancer<Backend>('round-robin')
  bal.setBackends(backends)
  const victim = backends[0] as Backend

  // Clients: pick, connect, on failure report it and retry once on another
  // backend (as the data plane does before the first byte), echo a line.
  let outAt = 0
  let sentToVictimAfterOut = 0
  let served = 0
  let failedClients = 0
  let running = true
  const client = async (): Promise<void> => {
    const tried = new Set<Backend>()
    for (let attempt = 0; attempt < 2; attempt++) {
      const b = bal.pick('10.0.0.1', tried)
      if (b === undefined) break
      tried.add(b)
      if (b === victim && outAt !== 0) sentToVictimAfterOut++
      const s = await new Promise<import('node:net').Socket | Error>((resolve) => dialTcp(b.endpoint, 1000, (err, sock) => resolve(err ?? sock as import('node:net').Socket)))
      if (s instanceof Error) { b.health.connectFailed(s); continue }
      b.health.connectSucceeded()
      const want = `${b.endpoint.host}|hi`
      const got = await exchange(s, 'hi', want.length, 2000).catch(() => Buffer.alloc(0))
      s.destroy()
      if (got.toString() === want) { served++; return }
    }
    failedClients++
  }
  const loop = (async () => { for (let i = 0; i < 2000 && running; i++) { await client(); await sleep(10) } })()
  t.teardown(async () => { running = false; await loop })

  await waitFor(() => served >= 10, () => `clients served before the kill (${served})`, 5000)
  const killedAt = Date.now()
  await (kids[0] as ChildBackend).kill9()
  await waitFor(() => !victim.available, 'out of rotation', 8000)
  outAt = Date.now()
  t.ok(outAt - killedAt < 1000, `ejected after ${outAt - killedAt} ms (3 refused connects)`)
  t.ok(victim.health.ejected, 'by passive ejection')
  // The active check confirms it meanwhile (two failed probes); still no client may reach it.
  await waitFor(() => !victim.health.healthy, 'active check has marked it unhealthy too', 5000)
  t.notOk(victim.available)
  t.equal(sentToVictimAfterOut, 0, 'no client was sent to it after it went out')
  t.equal(failedClients, 0, 'every client was served (retry on the other backend)')

  kids[0] = await startChild('127.0.0.2', dataPort, healthPort)
  await waitFor(() => victim.available, 'back after restart', 5000)
  const servedBefore = served
  await waitFor(() => served > servedBefore + 5, () => `traffic to continue (served ${served - servedBefore} since)`, 5000)
  running = false
  await loop
})
