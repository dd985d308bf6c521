// cleanup() (Ctrl-C) and undoCluster() (`down`) take back everything the
// controller wrote: statuses, finalizers, listeners and addresses.

import t from 'tap'
import { undoCluster } from '../../src/control/controller.js'
import { silentLogger } from '../../src/observe/logger.js'
import { FINALIZER } from '../../src/routing/compute.js'
import { finalizersOf, ingressOf, lbService, startHarness, tryConnect, waitFor } from './fixtures/harness.js'

t.test('cleanup() removes statuses and finalizers, closes listeners and releases IPs', async (t) => {
  const h = await startHarness(t)
  h.api.create(lbService('a', [{ port: 18080 }]))
  h.api.create(lbService('b', [{ port: 18080 }, { port: 18081 }]))
  h.api.create(lbService('foreign', [{ port: 18080 }], { spec: { loadBalancerClass: 'example.com/other' } }))
  h.api.patch('services', 'foreign', { metadata: { finalizers: [FINALIZER] } })
  const ips = await waitFor(() => {
    const a = ingressOf(h.api, 'a')[0]?.ip
    const b = ingressOf(h.api, 'b')[0]?.ip
    return a !== undefined && b !== undefined ? [a, b] : undefined
  }, 'both IPs')
  t.equal(h.dp.snapshot().listeners.length, 3)

  await h.ctl.cleanup()
  t.same(ingressOf(h.api, 'a'), [], 'status of a cleared')
  t.same(ingressOf(h.api, 'b'), [], 'status of b cleared')
  t.same(finalizersOf(h.api, 'a'), [], 'finalizer of a removed')
  t.same(finalizersOf(h.api, 'b'), [], 'finalizer of b removed')
  t.same(finalizersOf(h.api, 'foreign'), [FINALIZER], 'a Service of another class is left alone')
  t.equal(h.dp.snapshot().listeners.length, 0, 'every listener closed')
  t.equal(h.addresses.held.size, 0, 'every address released')
  for (const ip of ips) t.equal(await tryConnect(ip, 18080), 'ECONNREFUSED')

  // Paused for good: a new Service is not picked up.
  h.api.create(lbService('late', [{ port: 18080 }]))
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.same(ingressOf(h.api, 'late'), [], 'no reconcile after cleanup')
})

t.test('undoCluster() does the same from a fresh process, for `down`', async (t) => {
  const h = await startHarness(t)
  h.api.create(lbService('a', [{ port: 18080 }]))
  const ip = await waitFor(() => ingressOf(h.api, 'a')[0]?.ip, 'the IP')
  await h.ctl.stop()
  const releases = h.addresses.releases
  const n = await undoCluster({ cluster: 'sim', kubeconfig: h.kubeconfig, routing: { mode: 'ip', ipPool: h.pool }, addresses: h.addresses, logger: silentLogger() })
  t.equal(n, 1)
  t.same(ingressOf(h.api, 'a'), [])
  t.same(finalizersOf(h.api, 'a'), [])
  t.equal(h.addresses.releases, releases + 1, `${ip} released`)
})
