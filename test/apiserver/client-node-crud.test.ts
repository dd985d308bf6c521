// The real @kubernetes/client-node 1.4 against the test API server: the
// calls kind-tunnel's controller makes, and the errors it must handle.

import t from 'tap'
import { ApiException, CoreV1Api, DiscoveryV1Api, KubeConfig, PatchStrategy, setHeaderOptions, type V1Service } from '@kubernetes/client-node'
import { startSim, svc, waitFor } from './fixtures/helpers.js'

function client (yaml: string): { core: CoreV1Api, discovery: DiscoveryV1Api } {
  const kc = new KubeConfig()
  kc.loadFromString(yaml)
  return { core: kc.makeApiClient(CoreV1Api), discovery: kc.makeApiClient(DiscoveryV1Api) }
}

/** Awaits a rejected call and returns its ApiException code and parsed Status body. */
async function failure (p: Promise<unknown>): Promise<{ code: number, status: any }> {
  try {
    await p
  } catch (err) {
    if (err instanceof ApiException) {
      let status: unknown
      try { status = JSON.parse(String(err.body)) } catch { status = undefined }
      return { code: err.code, status }
    }
    throw err
  }
  throw new Error('expected the call to fail')
}

t.test('create, list, get, status patch (merge-patch), stale update, not found', async (t) => {
  const s = await startSim(t, { token: 'controller-token' })
  const { core } = client(s.kubeconfig())

  const created = await core.createNamespacedService({ namespace: 'default', body: svc('web') as V1Service })
  t.equal(created.metadata?.name, 'web')
  t.ok((created.spec?.ports?.[0]?.nodePort ?? 0) >= 30000)
  t.type(created.spec?.clusterIP, 'string')

  const list = await core.listNamespacedService({ namespace: 'default' })
  t.same(list.items.map((i) => i.metadata?.name).sort(), ['kubernetes', 'web'])
  t.equal(list.metadata?.resourceVersion, s.resourceVersion)

  const patched = await core.patchNamespacedServiceStatus(
    { name: 'web', namespace: 'default', body: { status: { loadBalancer: { ingress: [{ ip: '127.0.0.50', ipMode: 'Proxy', ports: [{ port: 80, protocol: 'TCP' }] }] } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  )
  t.equal(patched.status?.loadBalancer?.ingress?.[0]?.ip, '127.0.0.50')
  t.equal(patched.status?.loadBalancer?.ingress?.[0]?.ipMode, 'Proxy')
  t.equal(s.requestCount({ verb: 'patch', resource: 'services', subresource: 'status', code: 200 }), 1)

  const smp = await core.patchNamespacedService(
    { name: 'web', namespace: 'default', body: { metadata: { annotations: { 'kind-tunnel.dev/hostnames': 'web.test' } } } },
    setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
  )
  t.equal(smp.metadata?.annotations?.['kind-tunnel.dev/hostnames'], 'web.test')
  const jp = await core.patchNamespacedService(
    { name: 'web', namespace: 'default', body: [{ op: 'add', path: '/metadata/labels', value: { a: 'b' } }] },
    setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
  )
  t.same(jp.metadata?.labels, { a: 'b' })

  // Stale update: a PUT with an old resourceVersion is a 409 Conflict.
  const stale = { ...created, metadata: { ...created.metadata, labels: { stale: 'yes' } } }
  const conflict = await failure(core.replaceNamespacedService({ name: 'web', namespace: 'default', body: stale }))
  t.equal(conflict.code, 409)
  t.equal(conflict.status.reason, 'Conflict')
  t.equal(conflict.status.message, 'Operation cannot be fulfilled on services "web": the object has been modified; please apply your changes to the latest version and try again')

  const fresh = await core.readNamespacedService({ name: 'web', namespace: 'default' })
  fresh.metadata = { ...fresh.metadata, labels: { fresh: 'yes' } }
  const replaced = await core.replaceNamespacedService({ name: 'web', namespace: 'default', body: fresh })
  t.same(replaced.metadata?.labels, { fresh: 'yes' })
  t.equal(replaced.status?.loadBalancer?.ingress?.[0]?.ip, '127.0.0.50', 'a PUT of the main resource keeps status')

  const nf = await failure(core.readNamespacedService({ name: 'nope', namespace: 'default' }))
  t.equal(nf.code, 404)
  t.equal(nf.status.reason, 'NotFound')
  t.equal(nf.status.details.name, 'nope')

  const dup = await failure(core.createNamespacedService({ namespace: 'default', body: svc('web') as V1Service }))
  t.equal(dup.code, 409)
  t.equal(dup.status.reason, 'AlreadyExists')
})

t.test('finalizers hold a deletion until a later patch empties them', async (t) => {
  const s = await startSim(t)
  const { core, discovery } = client(s.kubeconfig())
  await core.createNamespacedService({ namespace: 'default', body: { ...svc('web'), metadata: { name: 'web', finalizers: ['service.kubernetes.io/load-balancer-cleanup'] } } as V1Service })
  s.setServiceEndpoints({ service: 'web', endpoints: [{ ip: '10.244.1.5', nodeName: 'kind-worker' }] })

  const pending = await core.deleteNamespacedService({ name: 'web', namespace: 'default' })
  t.type(pending.metadata?.deletionTimestamp, Date, 'the object stays, with a deletionTimestamp')
  const still = await core.readNamespacedService({ name: 'web', namespace: 'default' })
  t.same(still.metadata?.finalizers, ['service.kubernetes.io/load-balancer-cleanup'])
  const again = await core.deleteNamespacedService({ name: 'web', namespace: 'default' })
  t.equal(again.metadata?.resourceVersion, still.metadata?.resourceVersion, 'deleting again changes nothing')

  const added = await failure(core.patchNamespacedService(
    { name: 'web', namespace: 'default', body: { metadata: { finalizers: ['service.kubernetes.io/load-balancer-cleanup', 'x.test/new'] } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  ))
  t.equal(added.code, 422, 'no new finalizers on an object being deleted')

  await core.patchNamespacedService(
    { name: 'web', namespace: 'default', body: { metadata: { finalizers: null } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  )
  const gone = await failure(core.readNamespacedService({ name: 'web', namespace: 'default' }))
  t.equal(gone.code, 404, 'emptying the finalizers completed the deletion')
  await waitFor(async () => (await discovery.listNamespacedEndpointSlice({ namespace: 'default' })).items.length === 0, 'the owned EndpointSlice garbage collected')

  await core.createNamespacedService({ namespace: 'default', body: svc('plain') as V1Service })
  const del = await core.deleteNamespacedService({ name: 'plain', namespace: 'default' })
  t.equal(del.metadata?.name, 'plain', 'Services answer DELETE with the deleted object')
  t.equal((await failure(core.readNamespacedService({ name: 'plain', namespace: 'default' }))).code, 404)
})

t.test('401 without the token, 403 from a forbid rule, both with real Status bodies', async (t) => {
  const s = await startSim(t, { token: 'right' })
  const { core: wrong } = client(s.kubeconfig({ token: 'wrong' }))
  const unauth = await failure(wrong.listNamespacedService({ namespace: 'default' }))
  t.equal(unauth.code, 401)

  const raw = await fetch(`${s.url}/api/v1/namespaces/default/services`)
  t.equal(raw.status, 401)
  t.same(await raw.json(), { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 })
  t.equal(s.requestCount({ verb: 'list', resource: 'services', code: 401 }), 2, 'refused requests are counted by verb and resource')

  const { core } = client(s.kubeconfig())
  await core.createNamespacedService({ namespace: 'default', body: svc('web') as V1Service })
  const lift = s.forbid({ verb: 'patch', resource: 'services', subresource: 'status' })
  const denied = await failure(core.patchNamespacedServiceStatus(
    { name: 'web', namespace: 'default', body: { status: { loadBalancer: { ingress: [{ ip: '127.0.0.5' }] } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  ))
  t.equal(denied.code, 403)
  t.same(denied.status, {
    kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
    message: 'services "web" is forbidden: User "kubernetes-admin" cannot patch resource "services/status" in API group "" in the namespace "default"',
    reason: 'Forbidden', details: { name: 'web', kind: 'services' }, code: 403,
  })
  t.ok((await core.patchNamespacedService(
    { name: 'web', namespace: 'default', body: { metadata: { labels: { ok: 'yes' } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  )).metadata, 'the main resource is still allowed')
  lift()
  const allowed = await core.patchNamespacedServiceStatus(
    { name: 'web', namespace: 'default', body: { status: { loadBalancer: { ingress: [{ ip: '127.0.0.5' }] } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  )
  t.equal(allowed.status?.loadBalancer?.ingress?.[0]?.ip, '127.0.0.5')
  t.equal(s.requestCount({ verb: 'patch', resource: 'services', subresource: 'status', code: 403 }), 1)
})
