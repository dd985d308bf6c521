// `up --mode relay` in the real Docker engine: the kind-like test cluster is
// found through Docker, its relay container started and registered as the
// dialer `relay:<cluster>`, and a connection to the LB address goes
// host → 127.0.0.1:<published> → relay → node:NodePort. The API is the test
// API server (the test cluster's API server is a stand-in). `down` from
// another terminal removes the relay container and the statuses.
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startApiServer } from '../../src/sim/apiserver.js'
import { relayName, RELAY_LABEL } from '../../src/docker/relay-container.js'
import { createNetwork, docker, dockerAvailable, HTTP_PORT, makeKindCluster, relayBaseImage, useScratch } from '../support/docker.js'
import { runCli, startCli } from '../support/cli.js'
import { spawn } from 'node:child_process'
import { udpClient } from '../udp/support.js'
import { curl, freePort, loopbackPool, scratchDir, waitFor } from './product-support.js'

const skip = await dockerAvailable()
if (skip !== null) t.plan(0, skip)
else {
  const prefix = await useScratch(t)
  const dir = await scratchDir(t)
  const [net, base] = await Promise.all([createNetwork(prefix), relayBaseImage()])
  const cluster = await makeKindCluster({ prefix, name: `${prefix}-r`, network: net, workers: 1 })
  const api = await startApiServer({ clusterName: cluster.name })
  t.teardown(() => api.close())
  for (const n of cluster.nodes) api.addNode({ name: n.name, internalIP: n.ip })
  // A real UDP server on every node's address and NodePort 30053 (in the node
  // container's network namespace), answering with the node's name.
  for (const n of cluster.nodes) {
    const pid = (await docker.getContainer(n.id).inspect()).State.Pid
    const c = spawn('nsenter', ['-t', String(pid), '-n', process.execPath, '-e',
      `const s = require('node:dgram').createSocket('udp4'); s.on('message', (m, r) => s.send(Buffer.from(${JSON.stringify(n.name)} + ':' + m), r.port, r.address)); s.bind(30053, ${JSON.stringify(n.ip)})`], { stdio: 'ignore' })
    t.teardown(() => { c.kill('SIGKILL') })
  }
  api.create({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web', namespace: 'default' },
    spec: { type: 'LoadBalancer', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 80, nodePort: HTTP_PORT, protocol: 'TCP' }, { name: 'dns', port: 53, targetPort: 53, nodePort: 30053, protocol: 'UDP' }] },
  })
  const kubeconfig = join(dir, 'kubeconfig')
  await writeFile(kubeconfig, api.kubeconfig(), { mode: 0o600 })
  const stateDir = join(dir, 'state')
  const httpPort = await freePort()

  const up = await startCli(['up', '--kubeconfig', kubeconfig, '--cluster', cluster.name, '--mode', 'relay', '--relay-base', base, '--address', 'both',
    '--ip-pool', loopbackPool(), '--http-port', String(httpPort), '--https-port', String(await freePort()), '--state-dir', stateDir, '--drain-timeout', '500'],
  { waitListening: 2, timeoutMs: 120_000 })
  t.teardown(() => up.stop('SIGKILL'))
  await waitFor(() => up.stdout.includes('ready'), 'ready', 60_000)
  const ip = /\s(127\.\d+\.\d+\.\d+):80(?=\s|$)/.exec(up.stdout.find((l) => l.startsWith('service ')) ?? '')?.[1] ?? ''

  t.test('the relay container runs and up says why relay', async (t) => {
    const info = await docker.getContainer(relayName(cluster.name)).inspect()
    t.equal(info.State.Running, true)
    t.equal(info.Config.Labels[RELAY_LABEL], cluster.name)
    t.ok(up.stderr.some((l) => l.includes('"mode":"relay"') && l.includes('--mode relay')), 'the mode and the reason are logged')
  })

  t.test('connections go through the relay to the nodes (by IP and by name)', async (t) => {
    const seen = new Set<string>()
    for (let i = 0; i < 4; i++) {
      const a = await curl(`http://${ip}/`)
      t.equal(a.code, 0, a.stderr)
      seen.add(a.stdout.trim())
      const b = await curl(`http://web.default.localhost:${httpPort}/`)
      t.equal(b.code, 0, b.stderr)
      seen.add(b.stdout.trim())
    }
    t.same([...seen].sort(), cluster.nodes.map((n) => n.name).sort())
    const st = await runCli(['status', '--json', '--state-dir', stateDir])
    const status = JSON.parse(st.stdout) as { clusters: Array<{ mode: string, relay?: { name: string, pool?: { hits: number, misses: number, hitRate: number, dataPath: string, transport?: string, mux?: { opened: number } } } }> }
    t.equal(status.clusters[0]?.mode, 'relay')
    t.equal(status.clusters[0]?.relay?.name, relayName(cluster.name))
    const pool = status.clusters[0]?.relay?.pool
    // The default transport (auto) is the pool while new connections come slowly, as here; with mux, connections are streams over the mux connections once they are up (the pool before).
    t.ok((pool?.hits ?? 0) + (pool?.mux?.opened ?? 0) >= 8, 'the warm relay pool or the mux connections served every connection')
    if (pool?.transport === 'mux') t.ok((pool.mux?.opened ?? 0) > 0, 'status says mux, and its streams are counted')
    else t.ok((pool?.hitRate ?? 0) > 0, 'and its hit rate is reported')
    t.match(status.clusters[0]?.relay?.pool?.dataPath, /^(js|native)$/, 'the relay container reported its data path')
    const text = await runCli(['status', '--state-dir', stateDir])
    t.match(text.stdout, /relay kind-tunnel-relay-\S+ on 127\.0\.0\.1:\d+, data path (js|native)( \((js|native) accept\))?(, transport mux \(2 connections, \d+ streams open, \d+ opened\)|, transport auto: (pool|mux for \d+ destinations?, pool for the rest) \(mux from \d+ new connections\/s to a destination(; [^)]*)?\))?, pool \d+ idle \(target \d+\), (hit rate \d+%|no dials yet)/, 'the text status says it per relay')
  })

  t.test('UDP: the Service\'s UDP port is served through the relay, and status shows it', async (t) => {
    const c = await udpClient()
    t.teardown(() => c.close())
    // The relay pool and the UDP listener may still be settling: ask again (bounded).
    await waitFor(async () => { c.send('q', 53, ip); return await c.waitCount(1, 500).then(() => true, () => false) }, 'a UDP answer through the relay', 15_000)
    t.match(c.inbox[0]?.toString(), new RegExp(`^(${cluster.nodes.map((n) => n.name).join('|')}):q$`), 'a node answered through the relay')
    const st = await runCli(['status', '--state-dir', stateDir])
    t.match(st.stdout, new RegExp(`${ip.replace(/\./g, '\\.')}:53/udp`), 'status lists the UDP address')
    t.match(st.stdout, /:53\/udp\s+\d+ flows, \d+ started/, 'and its flows')
    const svc = api.get('services', 'web', 'default') as unknown as { status?: { loadBalancer?: { ingress?: Array<{ ports?: Array<{ port: number, protocol: string }> }> } } }
    t.ok(svc.status?.loadBalancer?.ingress?.some((i) => i.ports?.some((p) => p.port === 53 && p.protocol === 'UDP')), 'the UDP port is in the Service status')
  })

  t.test('down: the relay container and the statuses are gone', async (t) => {
    const down = await runCli(['down', '--state-dir', stateDir], { timeoutMs: 60_000 })
    t.equal(down.code, 0, down.stdout + down.stderr)
    t.equal((await up.exited).code, 0)
    const gone = await docker.getContainer(relayName(cluster.name)).inspect().then(() => 200, (err: { statusCode?: number }) => err.statusCode)
    t.equal(gone, 404)
    const svc = api.get('services', 'web', 'default') as unknown as { status?: { loadBalancer?: { ingress?: unknown[] } } }
    t.same(svc.status?.loadBalancer?.ingress ?? [], [])
  })
}
