// The test API server serves CustomResourceDefinitions as a real one does:
// the resources appear in discovery (legacy and aggregated) as soon as the
// CRD is written, the real kubectl applies, gets (by short name) and
// patches them, /status is a subresource, every served version reads the
// same objects, and deleting the CRD deletes its objects (watchers see it).

import t from 'tap'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startApiServer } from '../../src/sim/apiserver.js'
import { gatewayApiCrds } from '../../src/sim/gateway-impl.js'
import { apply, CRDS, kubectl } from './fixtures/gateway.js'

async function setup (t: { teardown: (fn: () => unknown) => void }): Promise<{ api: Awaited<ReturnType<typeof startApiServer>>, kc: string, dir: string }> {
  const api = await startApiServer()
  t.teardown(() => api.close())
  const dir = await mkdtemp(join(tmpdir(), 'kt-crds-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const kc = join(dir, 'kubeconfig')
  await api.writeKubeconfig(kc)
  return { api, kc, dir }
}

const getJson = async (url: string, accept = 'application/json'): Promise<{ status: number, body: any }> => {
  const r = await fetch(url, { headers: { accept } })
  return { status: r.status, body: r.status === 200 ? await r.json() : undefined }
}

t.test('discovery follows CRDs, kubectl works on custom resources', async (t) => {
  const { api, kc, dir } = await setup(t)
  t.equal((await getJson(`${api.url}/apis/gateway.networking.k8s.io`)).status, 404, 'no group before the CRDs')
  t.match(await apply(kc, dir, await readFile(CRDS, 'utf8'), 'crds.yaml'), /customresourcedefinition\.apiextensions\.k8s\.io\/gateways\.gateway\.networking\.k8s\.io created/)
  const crd = api.get('customresourcedefinitions', 'gateways.gateway.networking.k8s.io') as unknown as { status: { conditions: Array<{ type: string, status: string }>, storedVersions: string[] } }
  t.same(crd.status.conditions.map((c) => `${c.type}=${c.status}`), ['NamesAccepted=True', 'Established=True'])
  t.same(crd.status.storedVersions, ['v1'])

  const group = (await getJson(`${api.url}/apis/gateway.networking.k8s.io`)).body
  t.same(group.versions.map((v: { version: string }) => v.version), ['v1', 'v1beta1', 'v1alpha2'])
  const v1 = (await getJson(`${api.url}/apis/gateway.networking.k8s.io/v1`)).body
  t.same(v1.resources.map((r: { name: string }) => r.name).sort(), ['gatewayclasses', 'gatewayclasses/status', 'gateways', 'gateways/status', 'grpcroutes', 'grpcroutes/status', 'httproutes', 'httproutes/status'])
  const agg = (await getJson(`${api.url}/apis`, 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList')).body
  const gwGroup = agg.items.find((i: { metadata: { name: string } }) => i.metadata.name === 'gateway.networking.k8s.io')
  t.ok(gwGroup?.versions.some((v: { version: string, resources: Array<{ resource: string }> }) => v.version === 'v1alpha2' && v.resources.some((r) => r.resource === 'tlsroutes')), 'aggregated discovery lists tlsroutes v1alpha2')

  await apply(kc, dir, `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: eg
  namespace: default
spec:
  gatewayClassName: eg
  listeners:
  - name: http
    protocol: HTTP
    port: 80
`, 'gw.yaml')
  // The main resource ignores status; /status takes it.
  const r1 = await kubectl(kc, dir, ['patch', 'gtw', 'eg', '--type=merge', '-p', '{"status":{"addresses":[{"value":"1.2.3.4"}]}}'])
  t.equal(r1.code, 0, r1.stderr)
  t.same((api.get('gateways.gateway.networking.k8s.io', 'eg') as { status?: unknown }).status, undefined, 'status ignored on the main resource')
  const r2 = await kubectl(kc, dir, ['patch', 'gtw', 'eg', '--subresource=status', '--type=merge', '-p', '{"status":{"addresses":[{"type":"IPAddress","value":"1.2.3.4"}]}}'])
  t.equal(r2.code, 0, r2.stderr)
  const got = await kubectl(kc, dir, ['get', 'gtw', 'eg', '-o', 'jsonpath={.apiVersion} {.status.addresses[0].value} {.metadata.generation}'])
  t.equal(got.stdout, 'gateway.networking.k8s.io/v1 1.2.3.4 1', 'generation stays at 1 across status writes')
  const beta = (await getJson(`${api.url}/apis/gateway.networking.k8s.io/v1beta1/namespaces/default/gateways/eg`)).body
  t.equal(beta.apiVersion, 'gateway.networking.k8s.io/v1beta1', 'the same object at another served version')
  t.equal(beta.status.addresses[0].value, '1.2.3.4')
  const again = await kubectl(kc, dir, ['apply', '-f', join(dir, 'gw.yaml')])
  t.match(again.stdout, /gateway\.gateway\.networking\.k8s\.io\/eg unchanged/)
})

t.test('deleting a CRD deletes its objects and leaves discovery', async (t) => {
  const { api } = await setup(t)
  for (const c of gatewayApiCrds({ tlsRouteVersion: 'v1' })) api.create(c)
  api.create({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'TLSRoute', metadata: { name: 'r', namespace: 'default' }, spec: { hostnames: ['a.test'] } })
  const res = await fetch(`${api.url}/apis/gateway.networking.k8s.io/v1/tlsroutes?watch=true`)
  const reader = res.body?.getReader() as ReadableStreamDefaultReader<Uint8Array>
  let text = ''
  const read = async (): Promise<void> => { const c = await reader.read(); if (!c.done) text += Buffer.from(c.value).toString() }
  while (!text.includes('"ADDED"')) await read()
  api.delete('customresourcedefinitions', 'tlsroutes.gateway.networking.k8s.io')
  for (let i = 0; i < 20 && !text.includes('"DELETED"'); i++) await read()
  t.match(text, /"DELETED"/, 'the watcher saw the object go')
  t.equal((await fetch(`${api.url}/apis/gateway.networking.k8s.io/v1/tlsroutes`)).status, 404, 'the resource is gone')
  const v1 = (await getJson(`${api.url}/apis/gateway.networking.k8s.io/v1`)).body
  t.notOk(v1.resources.some((r: { name: string }) => r.name === 'tlsroutes'))
  for (const c of gatewayApiCrds({ tlsRouteVersion: 'v1' })) if (c.metadata.name === 'tlsroutes.gateway.networking.k8s.io') api.create(c)
  t.same(api.list('tlsroutes'), [], 'a re-created CRD starts empty')
})
