// `doctor` reports a running cloud-provider-kind as a conflict: its Envoy
// containers (named kindccm-<hash>, labelled io.x-k8s.cloud-provider-kind.*
// as cloud-provider-kind's pkg/loadbalancer/server.go does) beside a
// kind-like cluster in the real engine. Without them the check says ok.
// `up` for that cluster warns with KT_ERR_LB_CONFLICT (found through the same
// real engine); `up` for another cluster does not.
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { buildUpConfig } from '../../src/app/config.js'
import { loadController } from '../../src/app/controller-port.js'
import { startUp, type UpEvent } from '../../src/app/up.js'
import { silentLogger } from '../../src/observe/logger.js'
import { Registry } from '../../src/observe/metrics.js'
import { startApiServer } from '../../src/sim/apiserver.js'
import { runDoctor } from '../../src/doctor/index.js'
import { dockerAccess } from '../../src/app/docker.js'
import { CPK_CLUSTER_LABEL, CPK_LB_LABEL } from '../../src/docker/cloud-provider-kind.js'
import { checkCoexistence } from '../../src/doctor/coexist.js'
import { parseCidr } from '../../src/routing/cidr.js'
import { busyboxImage, createNetwork, docker, dockerAvailable, makeKindCluster, TEST_LABEL, useScratch } from '../support/docker.js'
import { freePort, loopbackPool, scratchDir } from '../app/product-support.js'

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
  t.test('up for that cluster warns that both controllers claim its Services; up for another cluster does not', async (t) => {
    const api = await startApiServer({ clusterName: name })
    t.teardown(() => api.close())
    const kubeconfig = join(dir, 'kubeconfig')
    await writeFile(kubeconfig, api.kubeconfig(), { mode: 0o600 })
    const warnings = async (cluster: string): Promise<Array<{ message: string, code?: string }>> => {
      const events: UpEvent[] = []
      // --mode direct with a kubeconfig file: Docker is asked only about cloud-provider-kind.
      const cfg = buildUpConfig({ kubeconfig, cluster, mode: 'direct', address: 'hostname', ipPool: loopbackPool(), httpPort: String(await freePort()), httpsPort: String(await freePort()), stateDir: join(dir, `up-${cluster}`), drainTimeout: '100', accessLog: false })
      const up = await startUp(cfg, { logger: silentLogger(), registry: new Registry(), controller: loadController, docker: access, onEvent: (e) => events.push(e) })
      await up.stop('test')
      return events.flatMap((e) => e.type === 'warn' ? [{ message: e.message, ...(e.code !== undefined ? { code: e.code } : {}) }] : [])
    }
    const mine = await warnings(name)
    t.equal(mine.length, 1, JSON.stringify(mine))
    t.equal(mine[0]?.code, 'KT_ERR_LB_CONFLICT')
    t.match(mine[0]?.message, new RegExp(`^cluster ${name}: cloud-provider-kind runs for it too \\(1 container\\); both claim every class-less LoadBalancer Service`))
    t.match(mine[0]?.message, /spec\.loadBalancerClass: kind-tunnel\.dev\/lb/, 'says how to avoid it')
    t.same(await warnings(`${prefix}-other`), [], 'another cluster: no warning')
  })
}
