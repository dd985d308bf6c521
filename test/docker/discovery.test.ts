// kind discovery against the real engine: a kind-like cluster (busybox
// containers with kind's labels), a stranger without them, a second cluster
// on the same network, the kubeconfig, and the direct/relay mode probe.
import t from 'tap'
import { connectDocker } from '../../src/docker/engine.js'
import { discoverClusters, findCluster, getKubeconfig } from '../../src/docker/discover.js'
import { chooseMode } from '../../src/docker/mode.js'
import { probeReachable } from '../../src/dataplane/probe.js'
import { dockerAvailable, useScratch, createNetwork, makeKindCluster, makeStranger, docker as rawDocker, HTTP_PORT } from '../support/docker.js'

const skip = await dockerAvailable()
if (skip !== null) t.plan(0, skip)
else {
  const prefix = await useScratch(t)
  const { docker } = await connectDocker()
  const net = await createNetwork(prefix)
  const a = await makeKindCluster({ prefix, name: `${prefix}-a`, network: net, workers: 2 })
  const b = await makeKindCluster({ prefix, name: `${prefix}-b`, network: net, workers: 0 })
  await makeStranger(prefix, net)
  const mine = (c: { name: string }): boolean => c.name.startsWith(prefix)

  t.test('clusters, nodes, roles, addresses and the API port', async (t) => {
    const found = (await discoverClusters({ docker, network: net.name })).filter(mine)
    t.same(found.map((c) => c.name), [a.name, b.name], 'two clusters; the unlabelled container is ignored')
    const ca = found[0]
    if (ca === undefined) return
    t.equal(ca.network, net.name)
    t.same(ca.nodes.map((n) => [n.name, n.role, n.state]), [
      [`${a.name}-control-plane`, 'control-plane', 'running'],
      [`${a.name}-worker`, 'worker', 'running'],
      [`${a.name}-worker2`, 'worker', 'running'],
    ])
    for (const n of ca.nodes) t.equal(n.ipv4, a.nodes.find((x) => x.name === n.name)?.ip, `${n.name} address`)
    t.same(ca.apiServer, { host: '127.0.0.1', port: a.apiPort })
    t.notOk(found.some((c) => c.nodes.some((n) => n.name.endsWith('-stranger'))))
  })

  t.test('KIND_EXPERIMENTAL_DOCKER_NETWORK names the network, and a cluster on another one is still found', async (t) => {
    const viaEnv = (await discoverClusters({ docker, env: { KIND_EXPERIMENTAL_DOCKER_NETWORK: net.name } })).filter(mine)
    t.equal(viaEnv[0]?.nodes[0]?.ipv4, a.nodes[0]?.ip)
    // `kind` does not exist here: the nodes' one shared network is used instead.
    const fallback = (await discoverClusters({ docker, network: 'kind-missing' })).filter(mine)
    t.equal(fallback[0]?.network, net.name)
  })

  t.test('findCluster: by name, unknown name, ambiguity', async (t) => {
    t.equal((await findCluster({ docker, network: net.name, name: a.name })).name, a.name)
    await t.rejects(findCluster({ docker, network: net.name, name: `${prefix}-nope` }), { code: 'KT_ERR_NO_CLUSTER' })
    const all = await discoverClusters({ docker, network: net.name })
    if (all.length > 1) await t.rejects(findCluster({ docker, network: net.name }), { code: 'KT_ERR_CLUSTER_AMBIGUOUS' })
  })

  t.test('the kubeconfig comes from admin.conf with server: rewritten, and nothing is written', async (t) => {
    const ca = await findCluster({ docker, network: net.name, name: a.name })
    const kc = await getKubeconfig(docker, ca)
    t.match(kc, new RegExp(`^    server: https://127\\.0\\.0\\.1:${a.apiPort}$`, 'm'))
    t.notMatch(kc, /control-plane:6443/)
    t.equal(kc.replace(/server: .*/, ''), a.adminConf.replace(/server: .*/, ''), 'everything else verbatim')
  })

  t.test('kubeconfig errors carry KT_ERR_KUBECONFIG', async (t) => {
    const cb = await findCluster({ docker, network: net.name, name: b.name })
    const noApi = { ...cb, apiServer: undefined } as unknown as typeof cb
    await t.rejects(getKubeconfig(docker, noApi), { code: 'KT_ERR_KUBECONFIG' })
    const workerOnly = { ...cb, nodes: cb.nodes.filter((n) => n.role !== 'control-plane') }
    await t.rejects(getKubeconfig(docker, workerOnly), { code: 'KT_ERR_KUBECONFIG' })
    // A control plane without admin.conf (not made by kind).
    const stranger = { ...cb, nodes: cb.nodes.map((n) => ({ ...n, id: `${prefix}-stranger` })) }
    await t.rejects(getKubeconfig(docker, stranger), { code: 'KT_ERR_KUBECONFIG', message: /admin\.conf/ })
  })

  t.test('mode: direct when the host routes to the nodes, relay when it cannot', async (t) => {
    const ca = await findCluster({ docker, network: net.name, name: a.name })
    const direct = await chooseMode(ca, { timeoutMs: 800 })
    t.equal(direct.mode, 'direct', direct.reason)
    t.match(direct.reason, /reached .*:6443/)
    // The same cluster as a VM-backed engine would show it: addresses nobody answers on.
    const parts = net.gateway.split('.').map(Number)
    const silent = `${parts[0]}.${parts[1]}.${parts[2]}.${((parts[3] as number) + 200) % 255}`
    const hidden = { ...ca, nodes: ca.nodes.map((n) => ({ ...n, ipv4: silent })) }
    const started = Date.now()
    const relay = await chooseMode(hidden, { timeoutMs: 300 })
    t.equal(relay.mode, 'relay')
    t.match(relay.reason, /cannot route/)
    t.ok(Date.now() - started < 1500, 'bounded by the probe timeout')
    const stopped = { ...ca, nodes: ca.nodes.map((n) => ({ ...n, state: 'exited' })) }
    t.equal((await chooseMode(stopped)).mode, 'relay')
  })

  t.test('probeReachable reports each port', async (t) => {
    const ip = a.nodes[1]?.ip as string
    const r = await probeReachable(ip, [HTTP_PORT, 10256], 500)
    t.equal(r.reachable, true)
    t.equal(r.port, HTTP_PORT)
    t.same(r.results.map((x) => x.outcome), ['open', 'refused'])
  })

  t.test('a stopped node shows as such, without an address', async (t) => {
    const w = a.nodes.find((n) => n.name.endsWith('-worker2'))
    if (w === undefined) return
    await rawDocker.getContainer(w.id).kill()
    const ca = await findCluster({ docker, network: net.name, name: a.name })
    const n = ca.nodes.find((x) => x.name === w.name)
    t.not(n?.state, 'running')
    t.equal(n?.ipv4, undefined)
  })
}
