// A kind cluster made with `networking.apiServerAddress: 0.0.0.0`, as close
// as this machine allows: the control-plane container publishes 6443 on
// 0.0.0.0 and forwards it byte for byte to the test API server, which serves
// TLS with a certificate carrying kind's SANs (localhost and 0.0.0.0, no
// 127.0.0.1). The kubeconfig kind-tunnel reads through Docker must pass
// TLS verification for real, and `up` must serve the cluster end to end.
import t from 'tap'
import { join } from 'node:path'
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node'
import { startApiServer } from '../../src/sim/apiserver.js'
import { connectDocker } from '../../src/docker/engine.js'
import { findCluster, getKubeconfig } from '../../src/docker/discover.js'
import { createNetwork, dockerAvailable, HTTP_PORT, makeKindCluster, useScratch } from '../support/docker.js'
import { forwardToLoopback, kindApiCert } from '../support/kind-api.js'
import { runCli, startCli } from '../support/cli.js'
import { curl, freePort, loopbackPool, scratchDir } from '../app/product-support.js'
import { waitFor } from '../support/wait.js'

const skip = await dockerAvailable()
if (skip !== null) t.plan(0, skip)
else {
  const prefix = await useScratch(t)
  const dir = await scratchDir(t)
  const { docker } = await connectDocker()
  const net = await createNetwork(prefix)
  const name = `${prefix}-w`
  const cert = kindApiCert(name, '0.0.0.0')
  const api = await startApiServer({ clusterName: name, token: 'fidelity-token', tls: { cert: cert.cert, key: cert.key } })
  t.teardown(() => api.close())
  const fwd = await forwardToLoopback(net, api.port)
  t.teardown(() => fwd.close())
  const cluster = await makeKindCluster({ prefix, name, network: net, workers: 1, apiServerAddress: '0.0.0.0', apiForward: fwd, adminConf: api.kubeconfig() })
  for (const n of cluster.nodes) api.addNode({ name: n.name, internalIP: n.ip })
  api.create({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web', namespace: 'default' },
    spec: { type: 'LoadBalancer', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 80, nodePort: HTTP_PORT, protocol: 'TCP' }] },
  })

  t.test('the certificate names localhost and 0.0.0.0, never 127.0.0.1 (kind\'s certSANs)', async (t) => {
    t.ok(cert.sans.includes('DNS:localhost'))
    t.ok(cert.sans.includes('IP:0.0.0.0'))
    t.notOk(cert.sans.some((s) => s.includes('127.0.0.1')))
  })

  t.test('discovery keeps the wildcard publish, and the kubeconfig passes TLS verification', async (t) => {
    const found = await findCluster({ docker, network: net.name, name })
    t.same(found.apiServer, { host: '0.0.0.0', port: cluster.apiPort })
    const text = await getKubeconfig(docker, found)
    t.match(text, new RegExp(`server: https://0\\.0\\.0\\.0:${cluster.apiPort}\\s*$`, 'm'))
    const kc = new KubeConfig()
    kc.loadFromString(text)
    const list = await kc.makeApiClient(CoreV1Api).listNamespace()
    t.ok(list.items.some((n) => n.metadata?.name === 'default'), 'listed namespaces through the published port, certificate verified')
    // What the old rewrite did: the same server under 127.0.0.1 fails hostname verification.
    const bad = new KubeConfig()
    bad.loadFromString(text.replace(/0\.0\.0\.0/g, '127.0.0.1'))
    await t.rejects(bad.makeApiClient(CoreV1Api).listNamespace(), /altnames|ERR_TLS_CERT_ALTNAME_INVALID|does not match/i)
  })

  t.test('up finds the cluster through Docker and serves it end to end; down cleans up', async (t) => {
    const stateDir = join(dir, 'state')
    const httpPort = await freePort()
    const up = await startCli(['up', '--cluster', name, '--mode', 'direct', '--address', 'both', '--ip-pool', loopbackPool(),
      '--http-port', String(httpPort), '--https-port', String(await freePort()), '--state-dir', stateDir, '--drain-timeout', '500'],
    { waitListening: 2, timeoutMs: 60_000, env: { KIND_EXPERIMENTAL_DOCKER_NETWORK: net.name } })
    t.teardown(() => up.stop('SIGKILL'))
    await waitFor(() => up.stdout.includes('ready'), 'ready', 60_000)
    const ip = /\s(127\.\d+\.\d+\.\d+):80(?=\s|$)/.exec(up.stdout.find((l) => l.startsWith('service ')) ?? '')?.[1] ?? ''
    t.not(ip, '', 'up printed the LB address')
    const seen = new Set<string>()
    for (let i = 0; i < 4; i++) {
      const r = await curl(`http://${ip}/`)
      t.equal(r.code, 0, r.stderr)
      seen.add(r.stdout.trim())
    }
    t.same([...seen].sort(), cluster.nodes.map((n) => n.name).sort())
    t.notOk(up.stderr.some((l) => /ALTNAME|certificate/i.test(l)), 'no TLS complaint in the logs')
    const down = await runCli(['down', '--state-dir', stateDir], { timeoutMs: 60_000 })
    t.equal(down.code, 0, down.stdout + down.stderr)
    const svc = api.get('services', 'web', 'default') as unknown as { status?: { loadBalancer?: { ingress?: unknown[] } } }
    t.same(svc.status?.loadBalancer?.ingress ?? [], [])
  })
}
