// A dual-stack Service's EndpointSlices: the EndpointSlice controller keeps
// one set of slices per address family (pkg/controller/endpointslice,
// reconciler.go: "one set of slices per address family"), each listing the
// same pods. The ready count in the snapshot counts pods, not addresses.
import t from 'tap'
import { computeRoutes } from '../../src/routing/compute.js'
import { svc, KIND_NODES } from '../routing/compute-fixtures.js'

const label = { 'kubernetes.io/service-name': 'web' }
const ep = (a: string, ready = true): { addresses: string[], conditions: { ready: boolean } } => ({ addresses: [a], conditions: { ready } })

t.test('one IPv4 and one IPv6 slice for the same two pods count two ready endpoints', async (t) => {
  const slices = [
    { addressType: 'IPv4', metadata: { namespace: 'default', name: 'web-v4', labels: label }, endpoints: [ep('10.244.1.5'), ep('10.244.2.7')] },
    { addressType: 'IPv6', metadata: { namespace: 'default', name: 'web-v6', labels: label }, endpoints: [ep('fd00:10:244:1::5'), ep('fd00:10:244:2::7')] },
  ]
  const r = computeRoutes({ cluster: 'kind', services: [svc('web')], nodes: KIND_NODES, endpointSlices: slices }, { mode: 'ip', ipPool: '127.240.0.0/24' })
  t.equal(r.services[0]?.readyEndpoints, 2)
})

t.test('several slices of one family still add up', async (t) => {
  const slices = [
    { addressType: 'IPv4', metadata: { namespace: 'default', name: 'web-a', labels: label }, endpoints: [ep('10.244.1.5'), ep('10.244.2.7', false)] },
    { addressType: 'IPv4', metadata: { namespace: 'default', name: 'web-b', labels: label }, endpoints: [ep('10.244.3.9')] },
    { addressType: 'IPv6', metadata: { namespace: 'default', name: 'web-c', labels: label }, endpoints: [ep('fd00::5'), ep('fd00::9')] },
  ]
  const r = computeRoutes({ cluster: 'kind', services: [svc('web')], nodes: KIND_NODES, endpointSlices: slices }, { mode: 'ip', ipPool: '127.240.0.0/24' })
  t.equal(r.services[0]?.readyEndpoints, 2)
})
