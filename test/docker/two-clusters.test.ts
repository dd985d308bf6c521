// Two kind clusters on the same `kind`-like network (as kind does it): two
// relays, each forwarding only to its own cluster's nodes, each accepting only
// its own token; removing one leaves the other running.
import t from 'tap'
import { connectDocker } from '../../src/docker/engine.js'
import { findCluster } from '../../src/docker/discover.js'
import { ensureRelay, removeRelay, listRelays } from '../../src/docker/relay-container.js'
import { RelayDialer } from '../../src/relay/client.js'
import { dockerAvailable, useScratch, createNetwork, makeKindCluster, relayBaseImage, httpGet, HTTP_PORT } from '../support/docker.js'

const skip = await dockerAvailable()
if (skip !== null) t.plan(0, skip)
else {
  const prefix = await useScratch(t)
  const { docker } = await connectDocker()
  const [net, base] = await Promise.all([createNetwork(prefix), relayBaseImage()])
  const [ta, tb] = await Promise.all([
    makeKindCluster({ prefix, name: `${prefix}-a`, network: net, workers: 1 }),
    makeKindCluster({ prefix, name: `${prefix}-b`, network: net, workers: 1 }),
  ])
  const ca = await findCluster({ docker, network: net.name, name: ta.name })
  const cb = await findCluster({ docker, network: net.name, name: tb.name })
  t.teardown(async () => { await removeRelay(docker, ca.name); await removeRelay(docker, cb.name) })
  const [ra, rb] = await Promise.all([
    ensureRelay({ docker, cluster: ca, base, connectTimeoutMs: 1000 }),
    ensureRelay({ docker, cluster: cb, base, connectTimeoutMs: 1000 }),
  ])
  const da = new RelayDialer({ host: ra.host, port: ra.port, token: ra.token, poolSize: 1 })
  const db = new RelayDialer({ host: rb.host, port: rb.port, token: rb.token, poolSize: 1 })
  t.teardown(() => Promise.all([da.close(), db.close()]))

  t.test('two relays, two ports, two tokens', async (t) => {
    t.not(ra.containerId, rb.containerId)
    t.not(ra.port, rb.port)
    t.notOk(ra.token.equals(rb.token))
    const mine = (await listRelays(docker)).filter((r) => r.cluster.startsWith(prefix)).map((r) => r.cluster).sort()
    t.same(mine, [ca.name, cb.name])
  })

  t.test('each relay reaches its own nodes', async (t) => {
    for (const [d, tc] of [[da, ta], [db, tb]] as const) {
      for (const n of tc.nodes) {
        t.equal(await httpGet(await d.dial({ host: n.ip, port: HTTP_PORT, timeoutMs: 3000 })), `${n.name}\n`)
      }
    }
  })

  t.test('no cross-talk: the other cluster\'s nodes are DENIED though routable', async (t) => {
    for (const n of tb.nodes) await t.rejects(da.dial({ host: n.ip, port: HTTP_PORT, timeoutMs: 3000 }, { answer: true }), { code: 'KT_ERR_RELAY_DENIED' }, `A → ${n.name}`)
    for (const n of ta.nodes) await t.rejects(db.dial({ host: n.ip, port: HTTP_PORT, timeoutMs: 3000 }, { answer: true }), { code: 'KT_ERR_RELAY_DENIED' }, `B → ${n.name}`)
  })

  t.test('no cross-talk: one cluster\'s token does not open the other\'s relay', async (t) => {
    const crossed = new RelayDialer({ host: rb.host, port: rb.port, token: ra.token, poolSize: 0 })
    await t.rejects(crossed.dial({ host: tb.nodes[0]?.ip as string, port: HTTP_PORT, timeoutMs: 3000 }, { answer: true }), { code: 'KT_ERR_RELAY_AUTH' })
    await crossed.close()
  })

  t.test('removing one relay leaves the other serving', async (t) => {
    t.equal(await removeRelay(docker, ca.name), 1)
    const left = (await listRelays(docker)).filter((r) => r.cluster.startsWith(prefix)).map((r) => r.cluster)
    t.same(left, [cb.name])
    t.equal(await httpGet(await db.dial({ host: tb.nodes[0]?.ip as string, port: HTTP_PORT, timeoutMs: 3000 })), `${tb.nodes[0]?.name}\n`)
    t.equal(await removeRelay(docker, cb.name), 1)
    t.same((await listRelays(docker)).filter((r) => r.cluster.startsWith(prefix)), [])
  })
}
