// Two clusters in one `up`: their tables merge into one data plane. Both
// Services answer on the same shared HTTP port by name, each cluster's IPs
// come from its own half of the pool, and `down --cluster` from another
// terminal undoes one cluster while the other keeps serving.
//
// The clusters are two test API servers with simulated nodes; only the
// Docker discovery is given directly (the list of kind clusters and their
// kubeconfigs), so no container engine is involved.
import t from 'tap'
import { join } from 'node:path'
import { startDemoCluster } from '../../src/app/demo.js'
import { buildUpConfig } from '../../src/app/config.js'
import { loadController } from '../../src/app/controller-port.js'
import type { DockerAccess } from '../../src/app/docker.js'
import { runDown } from '../../src/app/down.js'
import { readState } from '../../src/app/state.js'
import { startUp, type UpEvent } from '../../src/app/up.js'
import { silentLogger } from '../../src/observe/logger.js'
import { Registry } from '../../src/observe/metrics.js'
import { cidrContainsIp, parseCidr } from '../../src/routing/cidr.js'
import { FINALIZER } from '../../src/routing/compute.js'
import type { KindCluster } from '../../src/docker/discover.js'
import { curl, freePort, loopbackPool, scratchDir, waitFor } from './product-support.js'

interface Svc { metadata: { finalizers?: string[] }, status?: { loadBalancer?: { ingress?: Array<{ ip?: string }> } } }

const alpha = await startDemoCluster({ cluster: 'alpha', service: 'hello', servicePort: 80, logger: silentLogger() })
const beta = await startDemoCluster({ cluster: 'beta', service: 'world', servicePort: 80, logger: silentLogger() })
t.teardown(() => Promise.all([alpha.close(), beta.close()]))
const byName = new Map([['alpha', alpha], ['beta', beta]])
const kind = (name: string): KindCluster => ({ name, network: 'kind', nodes: [{ name: `${name}-control-plane`, id: name, role: 'control-plane', state: 'running', ipv4: '127.0.0.1' }] })
const docker: DockerAccess = {
  clusters: async () => [kind('alpha'), kind('beta')],
  kubeconfig: async (name) => byName.get(name)?.kubeconfig(),
  chooseMode: async (c) => ({ mode: 'direct', reason: `test cluster ${c.name} is on loopback`, probes: [] }),
  ensureRelay: async () => { throw new Error('no relay in this test') },
  removeRelay: async () => 0,
}

const dir = await scratchDir(t)
const stateDir = join(dir, 'state')
const pool = loopbackPool()
const httpPort = await freePort()
const events: UpEvent[] = []
const cfg = buildUpConfig({ address: 'both', ipPool: pool, httpPort: String(httpPort), httpsPort: String(await freePort()), stateDir, drainTimeout: '300', accessLog: false })
const up = await startUp(cfg, { logger: silentLogger(), registry: new Registry(), controller: loadController, docker, onEvent: (e) => events.push(e) })
t.teardown(() => up.stop('teardown'))

const svc = (c: typeof alpha, name: string): Svc => c.api.get('services', name, 'demo') as unknown as Svc
const ipOf = (c: typeof alpha, name: string): string | undefined => svc(c, name).status?.loadBalancer?.ingress?.find((i) => i.ip !== undefined)?.ip
await waitFor(() => ipOf(alpha, 'hello') !== undefined && ipOf(beta, 'world') !== undefined, 'both statuses', 10_000)

t.test('both clusters serve on the one shared port, by name', async (t) => {
  t.same(events.filter((e) => e.type === 'cluster').map((e) => e.type === 'cluster' ? `${e.name} ${e.mode}` : ''), ['alpha direct', 'beta direct'])
  const hello = await curl(`http://hello.demo.localhost:${httpPort}/`)
  t.match(hello.stdout, /^hello from alpha-worker2? /)
  const world = await curl(`http://world.demo.localhost:${httpPort}/`)
  t.match(world.stdout, /^hello from beta-worker2? /)
  const listener = up.applied.listeners.find((l) => l.port === httpPort)
  t.same(listener?.routes.map((r) => r.names).flat().sort(), ['hello.demo.localhost', 'world.demo.localhost'])
})

t.test('each cluster allocates from its own half of the pool', async (t) => {
  const [lo, hi] = [parseCidr(pool.replace(/\/24$/, '/25')), parseCidr(pool.replace(/\.0\/24$/, '.128/25'))]
  t.ok(cidrContainsIp(lo, ipOf(alpha, 'hello') as string), `alpha ${ipOf(alpha, 'hello') ?? ''} in ${lo.text}`)
  t.ok(cidrContainsIp(hi, ipOf(beta, 'world') as string), `beta ${ipOf(beta, 'world') ?? ''} in ${hi.text}`)
  t.match((await curl(`http://${ipOf(beta, 'world') as string}/`)).stdout, /^hello from beta-worker/)
  const st = up.status()
  t.same(st.services.map((s) => `${s.cluster}/${s.namespace}/${s.name}`), ['alpha/demo/hello', 'beta/demo/world'])
})

t.test('down --cluster beta: beta is undone, alpha keeps serving', async (t) => {
  const printed: string[] = []
  const code = await runDown({ stateDir, cluster: 'beta', logger: silentLogger(), controller: loadController, docker, print: (l) => printed.push(l) })
  t.equal(code, 0, printed.join('\n'))
  t.same(svc(beta, 'world').status?.loadBalancer?.ingress ?? [], [], 'beta: no status')
  t.notOk((svc(beta, 'world').metadata.finalizers ?? []).includes(FINALIZER), 'beta: no finalizer')
  t.ok((svc(alpha, 'hello').metadata.finalizers ?? []).includes(FINALIZER), 'alpha untouched')
  t.match((await curl(`http://hello.demo.localhost:${httpPort}/`)).stdout, /^hello from alpha-worker/)
  t.same((await readState(stateDir))?.clusters.map((c) => c.name), ['alpha'])
})

t.test('stop: everything undone', async (t) => {
  await up.stop('test done')
  t.equal(up.cleanExit, true)
  t.same(svc(alpha, 'hello').status?.loadBalancer?.ingress ?? [], [])
  const kept = await readState(stateDir)
  t.same(kept?.clusters.map((c) => [c.name, c.kubeconfig.kind, c.addresses, Object.keys(c.allocations ?? {})]), [['alpha', 'ephemeral', [], ['demo/hello']]],
    'nothing left to undo; alpha\'s IP kept for the next up (beta\'s was forgotten by down --cluster)')
})
