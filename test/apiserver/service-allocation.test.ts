import t from 'tap'
import { request, startSim, svc } from './fixtures/helpers.js'

function ipInServiceCidr (ip: string): boolean {
  const [a, b] = ip.split('.').map(Number)
  return a === 10 && (b as number) >= 96 && (b as number) <= 111
}

t.test('create allocates clusterIP and nodePorts and fills defaults', async (t) => {
  const s = await startSim(t)
  const r = await request(s.url, 'POST', '/api/v1/namespaces/default/services', {
    body: svc('web', { ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53 }] }),
  })
  t.equal(r.status, 201)
  const spec = r.json.spec
  t.ok(ipInServiceCidr(spec.clusterIP), `clusterIP ${spec.clusterIP} in 10.96.0.0/12`)
  t.same(spec.clusterIPs, [spec.clusterIP])
  t.equal(spec.sessionAffinity, 'None')
  t.equal(spec.externalTrafficPolicy, 'Cluster')
  t.equal(spec.internalTrafficPolicy, 'Cluster')
  t.same(spec.ipFamilies, ['IPv4'])
  t.equal(spec.ipFamilyPolicy, 'SingleStack')
  t.equal(spec.allocateLoadBalancerNodePorts, true)
  t.same(r.json.status, { loadBalancer: {} })
  const [http, dnsUdp, dnsTcp] = spec.ports
  t.equal(http.protocol, 'TCP')
  t.equal(http.targetPort, 8080)
  t.equal(dnsUdp.targetPort, 53, 'targetPort defaults to port')
  for (const p of spec.ports) t.ok(p.nodePort >= 30000 && p.nodePort <= 32767, `nodePort ${p.nodePort} in range`)
  t.equal(dnsUdp.nodePort, dnsTcp.nodePort, 'TCP and UDP on one port number share a nodePort')
  t.notOk(http.nodePort >= 30000 && http.nodePort < 30086, 'dynamic nodePorts avoid the static band')
  t.equal(spec.healthCheckNodePort, undefined)

  const dup = await request(s.url, 'POST', '/api/v1/namespaces/default/services', { body: svc('web') })
  t.equal(dup.status, 409)
  t.equal(dup.json.reason, 'AlreadyExists')
  t.equal(dup.json.message, 'services "web" already exists')
})

t.test('healthCheckNodePort for externalTrafficPolicy Local; none without allocateLoadBalancerNodePorts', async (t) => {
  const s = await startSim(t)
  const local = s.create(svc('local', { externalTrafficPolicy: 'Local' }))
  const hc = (local.spec as { healthCheckNodePort: number }).healthCheckNodePort
  t.ok(hc >= 30000 && hc <= 32767)
  const noNp = s.create(svc('nonp', { allocateLoadBalancerNodePorts: false }))
  t.equal((noNp.spec as { ports: Array<{ nodePort?: number }> }).ports[0]?.nodePort, undefined)
  const cip = s.create(svc('cip', { type: 'ClusterIP' }))
  t.equal((cip.spec as { externalTrafficPolicy?: string }).externalTrafficPolicy, undefined)
  t.equal((cip.spec as { ports: Array<{ nodePort?: number }> }).ports[0]?.nodePort, undefined)
  const headless = s.create(svc('headless', { type: 'ClusterIP', clusterIP: 'None' }))
  t.equal((headless.spec as { clusterIP: string }).clusterIP, 'None')
})

t.test('422 for taken, duplicate and out-of-range nodePorts and clusterIPs', async (t) => {
  const s = await startSim(t)
  s.create(svc('first', { ports: [{ name: 'http', port: 80, nodePort: 30080 }], clusterIP: '10.96.0.50' }))

  const taken = await request(s.url, 'POST', '/api/v1/namespaces/default/services', { body: svc('second', { ports: [{ name: 'http', port: 80, nodePort: 30080 }] }) })
  t.equal(taken.status, 422)
  t.equal(taken.json.reason, 'Invalid')
  t.equal(taken.json.message, 'Service "second" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated')
  t.same(taken.json.details.causes, [{ reason: 'FieldValueInvalid', message: 'Invalid value: 30080: provided port is already allocated', field: 'spec.ports[0].nodePort' }])

  const dupInside = await request(s.url, 'POST', '/api/v1/namespaces/default/services', {
    body: svc('third', { ports: [{ name: 'a', port: 80, nodePort: 31000 }, { name: 'b', port: 81, nodePort: 31000 }] }),
  })
  t.equal(dupInside.status, 422)
  t.equal(dupInside.json.details.causes[0].reason, 'FieldValueDuplicate')
  t.equal(dupInside.json.details.causes[0].field, 'spec.ports[1].nodePort')

  const range = await request(s.url, 'POST', '/api/v1/namespaces/default/services', { body: svc('fourth', { ports: [{ name: 'a', port: 80, nodePort: 8080 }] }) })
  t.equal(range.status, 422)
  t.match(range.json.message, /provided port is not in the valid range\. The range of valid ports is 30000-32767/)

  const ipTaken = await request(s.url, 'POST', '/api/v1/namespaces/default/services', { body: svc('fifth', { clusterIP: '10.96.0.50' }) })
  t.equal(ipTaken.status, 422)
  t.match(ipTaken.json.message, /provided IP is already allocated/)

  const failedCreateLeaksNothing = await request(s.url, 'POST', '/api/v1/namespaces/default/services', {
    body: svc('sixth', { ports: [{ name: 'a', port: 80, nodePort: 31500 }, { name: 'b', port: 81, nodePort: 30080 }] }),
  })
  t.equal(failedCreateLeaksNothing.status, 422)
  const ok = await request(s.url, 'POST', '/api/v1/namespaces/default/services', { body: svc('seventh', { ports: [{ name: 'a', port: 80, nodePort: 31500 }] }) })
  t.equal(ok.status, 201, 'a failed create released the nodePorts it had reserved')

  const multiNoName = await request(s.url, 'POST', '/api/v1/namespaces/default/services', { body: svc('eighth', { ports: [{ port: 80 }, { port: 81 }] }) })
  t.equal(multiNoName.status, 422)
  t.equal(multiNoName.json.details.causes[0].field, 'spec.ports[0].name')
})

t.test('updates keep allocations, release what is dropped, and protect clusterIP', async (t) => {
  const s = await startSim(t)
  const web = s.create(svc('web', { ports: [{ name: 'http', port: 80 }, { name: 'https', port: 443 }] }))
  const spec = web.spec as { clusterIP: string, ports: Array<{ nodePort: number }> }
  const [np80, np443] = spec.ports.map((p) => p.nodePort)

  // PUT without nodePorts or clusterIP: the server carries them over (patchAllocatedValues).
  const put = await request(s.url, 'PUT', '/api/v1/namespaces/default/services/web', {
    body: { ...svc('web', { ports: [{ name: 'http', port: 80 }, { name: 'https', port: 443 }] }), metadata: { name: 'web', namespace: 'default' } },
  })
  t.equal(put.status, 200)
  t.equal(put.json.spec.clusterIP, spec.clusterIP)
  t.same(put.json.spec.ports.map((p: { nodePort: number }) => p.nodePort), [np80, np443])

  // Drop https: its nodePort goes back to the pool and can be claimed.
  s.patch('services', 'web', { spec: { ports: [{ name: 'http', port: 80, nodePort: np80 }] } })
  const claim = s.create(svc('claim', { ports: [{ name: 'x', port: 1, nodePort: np443 }] }))
  t.equal((claim.spec as { ports: Array<{ nodePort: number }> }).ports[0]?.nodePort, np443)

  const ipChange = await request(s.url, 'PATCH', '/api/v1/namespaces/default/services/web', {
    body: { spec: { clusterIP: '10.96.0.77', clusterIPs: ['10.96.0.77'] } }, headers: { 'content-type': 'application/merge-patch+json' },
  })
  t.equal(ipChange.status, 422)
  t.match(ipChange.json.message, /may not change once set/)

  // LoadBalancer -> ClusterIP drops the nodePorts and externalTrafficPolicy (dropTypeDependentFields).
  const toCip = s.patch('services', 'web', { spec: { type: 'ClusterIP' } })
  const cs = toCip.spec as Record<string, unknown> & { ports: Array<{ nodePort?: number }> }
  t.equal(cs.ports[0]?.nodePort, undefined)
  t.equal(cs.externalTrafficPolicy, undefined)
  t.equal(cs.allocateLoadBalancerNodePorts, undefined)
  const reuse = s.create(svc('reuse', { ports: [{ name: 'x', port: 1, nodePort: np80 }] }))
  t.equal((reuse.spec as { ports: Array<{ nodePort: number }> }).ports[0]?.nodePort, np80, 'the dropped nodePort is free again')

  // Local gets a healthCheckNodePort; back to Cluster releases it.
  const local = s.patch('services', 'claim', { spec: { externalTrafficPolicy: 'Local' } })
  const hc = (local.spec as { healthCheckNodePort: number }).healthCheckNodePort
  t.ok(hc > 0)
  const cluster = s.patch('services', 'claim', { spec: { externalTrafficPolicy: 'Cluster' } })
  t.equal((cluster.spec as { healthCheckNodePort?: number }).healthCheckNodePort, undefined)

  // Delete releases the clusterIP.
  s.delete('services', 'claim')
  const again = s.create(svc('again', { clusterIP: (claim.spec as { clusterIP: string }).clusterIP }))
  t.equal((again.spec as { clusterIP: string }).clusterIP, (claim.spec as { clusterIP: string }).clusterIP)
})

t.test('status validation and ipMode defaulting', async (t) => {
  const s = await startSim(t)
  s.create(svc('web'))
  const bad = await request(s.url, 'PATCH', '/api/v1/namespaces/default/services/web/status', {
    body: { status: { loadBalancer: { ingress: [{ ip: 'not-an-ip' }] } } }, headers: { 'content-type': 'application/merge-patch+json' },
  })
  t.equal(bad.status, 422)
  t.equal(bad.json.details.causes[0].field, 'status.loadBalancer.ingress[0].ip')

  const ok = await request(s.url, 'PATCH', '/api/v1/namespaces/default/services/web/status', {
    body: { status: { loadBalancer: { ingress: [{ ip: '127.0.0.50', ports: [{ port: 80, protocol: 'TCP' }] }, { hostname: 'web.default.localhost' }] } } },
    headers: { 'content-type': 'application/merge-patch+json' },
  })
  t.equal(ok.status, 200)
  t.same(ok.json.status.loadBalancer.ingress, [
    { ip: '127.0.0.50', ports: [{ port: 80, protocol: 'TCP' }], ipMode: 'VIP' },
    { hostname: 'web.default.localhost' },
  ], 'an ingress with an IP gets ipMode VIP (LoadBalancerIPMode, on since 1.30)')

  const proxy = s.patch('services', 'web', { status: { loadBalancer: { ingress: [{ ip: '127.0.0.51', ipMode: 'Proxy' }] } } }, { subresource: 'status' })
  t.same((proxy.status as { loadBalancer: unknown }).loadBalancer, { ingress: [{ ip: '127.0.0.51', ipMode: 'Proxy' }] })
  const noIp = await request(s.url, 'PATCH', '/api/v1/namespaces/default/services/web/status', {
    body: { status: { loadBalancer: { ingress: [{ hostname: 'a.test', ipMode: 'Proxy' }] } } }, headers: { 'content-type': 'application/merge-patch+json' },
  })
  t.equal(noIp.status, 422)
})
