// The real kubectl (/usr/bin/kubectl) against the test API server.

import t from 'tap'
import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { kubectl, startSim, svc, tmpDir, waitFor } from './fixtures/helpers.js'
import type { ApiServer } from '../../src/sim/apiserver.js'

interface Ctx { s: ApiServer, kc: string, cache: string, dir: string }

async function setup (t: Parameters<typeof startSim>[0], opts: Parameters<typeof startSim>[1] = {}): Promise<Ctx> {
  const s = await startSim(t, opts)
  const dir = await tmpDir(t)
  const kc = join(dir, 'kubeconfig')
  await s.writeKubeconfig(kc)
  return { s, kc, cache: join(dir, 'cache'), dir }
}

/** Splits kubectl's table output into rows of whitespace-separated cells. */
function rows (out: string): string[][] {
  return out.trim().split('\n').map((l) => l.trim().split(/\s{2,}/))
}

t.test('kubectl get svc shows the EXTERNAL-IP once a status patch sets it', async (t) => {
  const { s, kc, cache } = await setup(t)
  s.create(svc('web', { ports: [{ name: 'http', port: 80, nodePort: 30080 }, { name: 'https', port: 443, nodePort: 30443 }] }))
  const before = await kubectl(kc, cache, ['get', 'svc', 'web'])
  t.equal(before.code, 0, before.stderr)
  const [head, row] = rows(before.stdout)
  t.same(head, ['NAME', 'TYPE', 'CLUSTER-IP', 'EXTERNAL-IP', 'PORT(S)', 'AGE'])
  t.equal(row?.[0], 'web')
  t.equal(row?.[1], 'LoadBalancer')
  t.equal(row?.[3], '<pending>')
  t.equal(row?.[4], '80:30080/TCP,443:30443/TCP')

  s.patch('services', 'web', { status: { loadBalancer: { ingress: [{ ip: '127.0.0.50' }] } } }, { subresource: 'status' })
  const after = await kubectl(kc, cache, ['get', 'svc'])
  const web = rows(after.stdout).find((r) => r[0] === 'web')
  t.equal(web?.[3], '127.0.0.50')
  t.ok(rows(after.stdout).some((r) => r[0] === 'kubernetes' && r[2] === '10.96.0.1'), 'the default kubernetes Service is listed')

  const wide = await kubectl(kc, cache, ['get', 'svc', 'web', '-o', 'wide'])
  t.equal(rows(wide.stdout)[0]?.at(-1), 'SELECTOR')
  t.equal(rows(wide.stdout)[1]?.at(-1), 'app=web')

  const json = await kubectl(kc, cache, ['get', 'svc', '-o', 'json'])
  t.equal(json.code, 0, json.stderr)
  const list = JSON.parse(json.stdout)
  const item = list.items.find((i: { metadata: { name: string } }) => i.metadata.name === 'web')
  t.equal(item.kind, 'Service')
  t.equal(item.status.loadBalancer.ingress[0].ip, '127.0.0.50')
  t.equal(item.spec.ports[0].nodePort, 30080)

  const all = await kubectl(kc, cache, ['get', 'svc', '-A', '-o', 'name'])
  t.same(all.stdout.trim().split('\n').sort(), ['service/kubernetes', 'service/web'])

  const missing = await kubectl(kc, cache, ['get', 'svc', 'nope'])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /Error from server \(NotFound\): services "nope" not found/)
})

t.test('kubectl create -f, patch, describe', async (t) => {
  const { s, kc, cache, dir } = await setup(t)
  const file = join(dir, 'svc.yaml')
  await writeFile(file, [
    'apiVersion: v1',
    'kind: Service',
    'metadata:',
    '  name: api',
    'spec:',
    '  type: LoadBalancer',
    '  externalTrafficPolicy: Local',
    '  selector: {app: api}',
    '  ports:',
    '  - {name: https, port: 443, targetPort: 8443}',
    '',
  ].join('\n'))
  const created = await kubectl(kc, cache, ['create', '-f', file])
  t.equal(created.code, 0, created.stderr)
  t.equal(created.stdout.trim(), 'service/api created')
  const obj = s.get('services', 'api') as unknown as { spec: { healthCheckNodePort: number, ports: Array<{ nodePort: number }> } }
  t.ok(obj.spec.healthCheckNodePort > 0)
  t.ok(s.requests.some((r) => r.verb === 'create' && r.resource === 'services' && r.code === 201))

  const dup = await kubectl(kc, cache, ['create', '-f', file])
  t.equal(dup.code, 1)
  t.match(dup.stderr, /AlreadyExists/)

  const patched = await kubectl(kc, cache, ['patch', 'svc', 'api', '-p', '{"spec":{"ports":[{"port":443,"targetPort":9443}]}}'])
  t.equal(patched.code, 0, patched.stderr)
  t.equal((s.get('services', 'api') as unknown as { spec: { ports: Array<{ targetPort: number, name: string }> } }).spec.ports[0]?.targetPort, 9443)
  t.equal(s.requestCount({ verb: 'patch', resource: 'services' }), 1)

  const status = await kubectl(kc, cache, ['patch', 'svc', 'api', '--subresource=status', '--type=merge', '-p', '{"status":{"loadBalancer":{"ingress":[{"ip":"127.0.0.77"}]}}}'])
  t.equal(status.code, 0, status.stderr)

  s.setServiceEndpoints({ service: 'api', endpoints: [{ ip: '10.244.1.7', nodeName: 'kind-worker' }] })
  const desc = await kubectl(kc, cache, ['describe', 'svc', 'api'])
  t.equal(desc.code, 0, desc.stderr)
  t.match(desc.stdout, /LoadBalancer Ingress:\s+127\.0\.0\.77/)
  t.match(desc.stdout, /External Traffic Policy:\s+Local/)
  t.match(desc.stdout, /HealthCheck NodePort:\s+\d+/)
  t.match(desc.stdout, /Endpoints:\s+10\.244\.1\.7:9443/)
})

t.test('kubectl delete svc, without and with a finalizer', async (t) => {
  const { s, kc, cache } = await setup(t)
  s.create(svc('plain'))
  const plain = await kubectl(kc, cache, ['delete', 'svc', 'plain'])
  t.equal(plain.code, 0, plain.stderr)
  t.equal(plain.stdout.trim(), 'service "plain" deleted')
  t.equal(s.tryGet('services', 'plain'), undefined)

  s.create({ ...svc('held'), metadata: { name: 'held', namespace: 'default', finalizers: ['service.kubernetes.io/load-balancer-cleanup'] } })
  // kubectl waits for the object to be gone; it can only finish once the finalizer is removed.
  const child = kubectl(kc, cache, ['delete', 'svc', 'held', '--timeout=20s'])
  await waitFor(() => s.tryGet('services', 'held')?.metadata.deletionTimestamp !== undefined, 'deletionTimestamp set')
  await waitFor(() => s.watchCount('services') >= 1, 'kubectl is waiting on a watch')
  s.patch('services', 'held', [{ op: 'remove', path: '/metadata/finalizers' }], { type: 'json' })
  const held = await child
  t.equal(held.code, 0, held.stderr)
  t.equal(held.stdout.trim(), 'service "held" deleted')
  t.equal(s.tryGet('services', 'held'), undefined)

  s.create({ ...svc('nowait'), metadata: { name: 'nowait', namespace: 'default', finalizers: ['example.test/hold'] } })
  const nowait = await kubectl(kc, cache, ['delete', 'svc', 'nowait', '--wait=false'])
  t.equal(nowait.code, 0)
  t.ok(s.get('services', 'nowait').metadata.deletionTimestamp, 'still there, marked for deletion')
})

t.test('kubectl get nodes, endpointslices, namespaces, events', async (t) => {
  const { s, kc, cache } = await setup(t)
  s.addNode({ name: 'kind-control-plane', internalIP: '172.18.0.2', roles: ['control-plane'] })
  s.addNode({ name: 'kind-worker', internalIP: '172.18.0.3' })
  s.addNode({ name: 'kind-worker2', internalIP: '172.18.0.4', ready: false })
  const nodes = await kubectl(kc, cache, ['get', 'nodes', '-o', 'wide'])
  t.equal(nodes.code, 0, nodes.stderr)
  const r = rows(nodes.stdout)
  t.same(r[0]?.slice(0, 6), ['NAME', 'STATUS', 'ROLES', 'AGE', 'VERSION', 'INTERNAL-IP'])
  t.same(r[1]?.slice(0, 3), ['kind-control-plane', 'Ready', 'control-plane'])
  t.equal(r[1]?.[5], '172.18.0.2')
  t.same(r[2]?.slice(0, 3), ['kind-worker', 'Ready', '<none>'])
  t.same(r[3]?.slice(0, 2), ['kind-worker2', 'NotReady'])

  s.create(svc('web'))
  s.setServiceEndpoints({ service: 'web', endpoints: [{ ip: '10.244.1.5' }, { ip: '10.244.2.5' }] })
  const eps = await kubectl(kc, cache, ['get', 'endpointslices'])
  t.equal(eps.code, 0, eps.stderr)
  const er = rows(eps.stdout)
  t.same(er[0], ['NAME', 'ADDRESSTYPE', 'PORTS', 'ENDPOINTS', 'AGE'])
  t.match(er[1]?.[0], /^web-[a-z0-9]{5}$/)
  t.same(er[1]?.slice(1, 4), ['IPv4', '8080', '10.244.1.5,10.244.2.5'])

  const ns = await kubectl(kc, cache, ['get', 'ns'])
  t.ok(rows(ns.stdout).some((x) => x[0] === 'kube-system' && x[1] === 'Active'))

  s.create({ apiVersion: 'v1', kind: 'Event', metadata: { name: 'web.1', namespace: 'default' }, involvedObject: { kind: 'Service', name: 'web', namespace: 'default' }, reason: 'IPAllocated', message: 'Assigned IP 127.0.0.50', type: 'Normal', count: 1, lastTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z') })
  const ev = await kubectl(kc, cache, ['get', 'events'])
  t.equal(ev.code, 0, ev.stderr)
  t.match(ev.stdout, /Normal\s+IPAllocated\s+service\/web\s+Assigned IP 127\.0\.0\.50/)
})

t.test('kubectl over HTTPS with a bearer token (kubectl sends no token over plain HTTP)', async (t) => {
  const dir = await tmpDir(t)
  const keyFile = join(dir, 'key.pem')
  const certFile = join(dir, 'cert.pem')
  const gen = await new Promise<number | null>((resolve) => {
    execFile('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile,
      '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-addext', 'basicConstraints=critical,CA:TRUE'],
    { timeout: 20_000 }, (err) => resolve(err === null ? 0 : 1))
  })
  t.equal(gen, 0, 'openssl made a self-signed certificate')
  const { s, kc, cache } = await setup(t, { token: 'kubectl-token', tls: { cert: await readFile(certFile), key: await readFile(keyFile) } })
  t.match(s.url, /^https:\/\/127\.0\.0\.1:\d+$/)
  const ok = await kubectl(kc, cache, ['get', 'svc', '-o', 'name'])
  t.equal(ok.code, 0, ok.stderr)
  t.equal(ok.stdout.trim(), 'service/kubernetes')

  const bad = join(cache, '..', 'bad-kubeconfig')
  await writeFile(bad, s.kubeconfig({ token: 'nope' }))
  const denied = await kubectl(bad, cache + '-bad', ['get', 'svc'])
  t.equal(denied.code, 1)
  t.match(denied.stderr, /provide credentials|Unauthorized/)

  s.forbid({ verb: 'list', resource: 'services' })
  const forbidden = await kubectl(kc, cache, ['get', 'svc'])
  t.equal(forbidden.code, 1)
  t.match(forbidden.stderr, /Error from server \(Forbidden\): services is forbidden: User "kubernetes-admin" cannot list resource "services" in API group "" in the namespace "default"/)
})
