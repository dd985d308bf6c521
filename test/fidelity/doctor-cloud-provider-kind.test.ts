// `doctor` reports a running cloud-provider-kind as a conflict: its Envoy
// containers (named kindccm-<hash>, labelled io.x-k8s.cloud-provider-kind.*
// as cloud-provider-kind's pkg/loadbalancer/server.go does) beside a
// kind-like cluster in the real engine. Without them the check says ok.
import t from 'tap'
import { join } from 'node:path'
import { runDoctor } from '../../src/doctor/index.js'
import { dockerAccess } from '../../src/app/docker.js'
import { CPK_CLUSTER_LABEL, CPK_LB_LABEL } from '../../src/docker/cloud-provider-kind.js'
import { checkCoexistence } from '../../src/doctor/coexist.js'
import { parseCidr } from '../../src/routing/cidr.js'
import { busyboxImage, createNetwork, docker, dockerAvailable, makeKindCluster, TEST_LABEL, useScratch } from '../support/docker.js'
import { scratchDir } from '../app/product-support.js'

t.test('Services whose status another controller wrote are a conflict too (pure)', async (t) => {
  const lines = checkCoexistence({
    containers: [],
    clusters: ['kind'],
    pools: [parseCidr('127.240.0.0/16')],
    services: [{ cluster: 'kind', items: [
      { metadata: { name: 'ours', namespace: 'default' }, spec: { type: 'LoadBalancer' }, status: { loadBalancer: { ingress: [{ ip: '127.240.0.5' }] } } },
      { metadata: { name: 'theirs', namespace: 'default' }, spec: { type: 'LoadBalancer' }, status: { loadBalancer: { ingress: [{ ip: '172.18.0.5' }] } } },
    ] }],
  })
  t.equal(lines.length, 1)
  t.equal(lines[0]?.status, 'FAIL')
  t.match(lines[0]?.message, /default\/theirs/)
  t.notMatch(lines[0]?.message, /default\/ours/)
})

const skip = await dockerAvailable()
if (skip !== null) t.plan(0, skip)
else {
  const prefix = await useScratch(t)
  const dir = await scratchDir(t)
  const net = await createNetwork(prefix)
  const name = `${prefix}-c`
  await makeKindCluster({ prefix, name, network: net, workers: 0 })
  const access = dockerAccess({ network: net.name })
  const doctor = async (): Promise<Array<{ check: string, status: string, message: string }>> =>
    (await runDoctor({ stateDir: join(dir, 'state'), docker: access, cluster: name, facts: [], timeoutMs: 1000 })).lines.filter((l) => l.check === 'lb-controllers')

  t.test('without cloud-provider-kind: ok', async (t) => {
    const lines = await doctor()
    t.same(lines.map((l) => l.status), ['ok'])
  })

  t.test('with cloud-provider-kind\'s Envoy container running for the cluster: FAIL, saying what conflicts', async (t) => {
    const c = await docker.createContainer({
      name: `kindccm-${prefix}`,
      Image: await busyboxImage(),
      Cmd: ['/bin/sh', '-c', 'exec sleep 600'],
      Labels: { [CPK_CLUSTER_LABEL]: name, [CPK_LB_LABEL]: `${name}/default/web`, [TEST_LABEL]: prefix },
      HostConfig: { NetworkMode: net.name },
    })
    await c.start()
    const lines = await doctor()
    t.equal(lines.length, 1)
    t.equal(lines[0]?.status, 'FAIL')
    t.match(lines[0]?.message, new RegExp(`cluster ${name}: cloud-provider-kind runs for it`))
    t.match(lines[0]?.message, /serving default\/web/)
    t.match(lines[0]?.message, /overwrite each other's status/)
  })
}
