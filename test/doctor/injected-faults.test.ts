// `kind-tunnel doctor` through the CLI, with real faults injected: a stale
// alias in a network namespace the test creates, a backend bound to
// 127.0.0.1 only behind a healthy node, a taken port, a hosts file pointing
// elsewhere. Each is reported with its fix, and a clean setup exits 0.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { randomInt } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startApiServer } from '../../src/sim/apiserver.js'
import { CLI, runCli } from '../support/cli.js'
import { createNetns, netnsAvailable } from '../support/netns.js'
import { freePort, run, scratchDir } from '../app/product-support.js'

const dir = await scratchDir(t)
const hostsFile = join(dir, 'hosts')
await writeFile(hostsFile, '127.0.0.1 localhost\n::1 localhost\n')

async function listen (server: Server, host: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen({ host, port }, () => resolve()) })
}

function lines (stdout: string, check: string): string[] {
  return stdout.split('\n').filter((l) => new RegExp(`^\\S+\\s+${check}: `).test(l))
}

t.test('a stale alias in a network namespace: FAIL with the exact ip command; after the fix, exit 0', { skip: netnsAvailable() ? false : 'needs ip netns (root)' }, async (t) => {
  const ns = createNetns()
  t.teardown(() => ns.remove())
  const third = randomInt(1, 250)
  const pool = `10.99.${third}.0/24`
  const stale = `10.99.${third}.7`
  ns.exec(['ip', 'addr', 'add', `${stale}/32`, 'dev', 'lo'])
  const args = [CLI, 'doctor', '--no-docker', '--state-dir', join(dir, 'ns-state'), '--ip-pool', pool, '--hosts-file', hostsFile]
  // doctor runs inside the namespace, so it lists that namespace's loopback.
  const r = await run('ip', ['netns', 'exec', ns.name, process.execPath, ...args])
  t.equal(r.code, 1, r.stdout + r.stderr)
  const [line] = lines(r.stdout, 'stale-alias')
  t.match(line, new RegExp(`^FAIL stale-alias: ${stale.replace(/\./g, '\\.')} on loopback is in kind-tunnel's pool ${pool.replace(/[./]/g, '\\$&')} .* → fix: sudo ip addr del ${stale.replace(/\./g, '\\.')}/32 dev lo$`))
  t.equal(r.stdout.split('\n').filter((l) => l.startsWith('FAIL')).length, 1, 'nothing else fails in a fresh namespace')
  // Apply the printed fix (we are root already), then the setup is clean.
  const fix = (line ?? '').split('→ fix: sudo ')[1] ?? ''
  execFileSync('ip', ['netns', 'exec', ns.name, ...fix.split(' ')])
  const after = await run('ip', ['netns', 'exec', ns.name, process.execPath, ...args])
  t.equal(after.code, 0, after.stdout)
  t.match(lines(after.stdout, 'stale-alias')[0], /^ok {3}stale-alias: no stale loopback alias/)
  t.match(lines(after.stdout, 'ports')[0], /^ok {3}ports: free or ours: 127\.0\.0\.1:8080, 127\.0\.0\.1:8443$/)
  t.notMatch(after.stdout, /^FAIL/m)
})

t.test('a backend bound to 127.0.0.1 only behind a healthy node; a hosts entry pointing elsewhere', async (t) => {
  const api = await startApiServer({ clusterName: 'doc' })
  t.teardown(() => api.close())
  const net = `127.${randomInt(100, 200)}.${randomInt(1, 255)}`
  const good = { name: 'doc-worker', ip: `${net}.10` }
  const bad = { name: 'doc-worker2', ip: `${net}.11` }
  for (const n of [good, bad]) api.addNode({ name: n.name, internalIP: n.ip })
  const svc = api.create({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web', namespace: 'default', annotations: { 'kind-tunnel.dev/hostnames': 'web.example.test' } },
    spec: { type: 'LoadBalancer', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
  }) as unknown as { spec: { ports: Array<{ nodePort: number }> } }
  const nodePort = svc.spec.ports[0]?.nodePort as number
  api.create({ apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name: 'shop', namespace: 'default' }, spec: { rules: [{ host: 'shop.example.test' }] } })
  await writeFile(join(dir, 'hosts-elsewhere'), '127.0.0.1 localhost\n10.1.2.3 shop.example.test\n')
  const servers: Server[] = []
  t.teardown(() => Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve)))))
  const ok200 = (): Server => { const s = createServer((_q, res) => res.end('ok')); servers.push(s); return s }
  // Both nodes' kube-proxy health answers 200.
  for (const n of [good, bad]) await listen(ok200(), n.ip, 10256)
  // The good node's app answers on its address; the bad node's app answers on 127.0.0.1 only.
  await listen(ok200(), good.ip, nodePort)
  const only = ok200()
  await listen(only, '127.0.0.1', nodePort).catch(() => { t.comment('127.0.0.1 NodePort taken; the refusal is still real') })
  const kubeconfig = join(dir, 'doc-kubeconfig')
  await api.writeKubeconfig(kubeconfig)

  const r = await runCli(['doctor', '--no-docker', '--kubeconfig', kubeconfig, '--state-dir', join(dir, 'doc-state'), '--hosts-file', join(dir, 'hosts-elsewhere'),
    '--http-port', String(await freePort()), '--https-port', String(await freePort())], { timeoutMs: 30_000 })
  t.equal(r.code, 1, r.stdout + r.stderr)
  const eps = lines(r.stdout, 'endpoints')
  t.match(eps[0], /^ok {3}endpoints: cluster doc: 1 of 2 NodePort backends accept connections$/)
  t.match(eps[1], new RegExp(`^FAIL endpoints: Service default/web port 80: node doc-worker2 \\(${bad.ip.replace(/\./g, '\\.')}:${nodePort}\\) is healthy, but its NodePort refuses connections: the pods answer on 127\\.0\\.0\\.1 only .* → fix: make the app listen on 0\\.0\\.0\\.0`))
  const hosts = lines(r.stdout, 'hosts-file')
  t.ok(hosts.some((l) => /^FAIL hosts-file: shop\.example\.test \(Ingress default\/shop\) points to 10\.1\.2\.3 .* → fix: edit .*replace "10\.1\.2\.3 shop\.example\.test" with "127\.0\.0\.1 shop\.example\.test"/.test(l)), hosts.join('\n'))
  t.ok(hosts.some((l) => /^warn hosts-file: web\.example\.test \(Service default\/web\) has no entry .* → fix: echo "127\.0\.0\.1 web\.example\.test" \| sudo tee -a /.test(l)), hosts.join('\n'))
  t.ok(lines(r.stdout, 'coredns').every((l) => l.startsWith('skip')), 'the test API server has no pods: skipped, not failed')
})

t.test('a taken port: FAIL naming the process, with the flag that avoids it', async (t) => {
  const port = await freePort()
  const s = createServer()
  await listen(s, '127.0.0.1', port)
  t.teardown(() => new Promise((resolve) => s.close(resolve)))
  const r = await runCli(['doctor', '--no-docker', '--state-dir', join(dir, 'port-state'), '--hosts-file', hostsFile, '--https-port', String(port), '--http-port', String(await freePort())])
  t.equal(r.code, 1)
  const [fail] = lines(r.stdout, 'ports').filter((l) => l.startsWith('FAIL'))
  t.match(fail, new RegExp(`^FAIL ports: 127\\.0\\.0\\.1:${port} \\(shared TLS port\\) is taken by pid ${process.pid} \\(node\\) → fix: stop that process, or run \`kind-tunnel up --https-port ${port + 1}\`$`))
})

t.test('--json carries the same lines', async (t) => {
  const r = await runCli(['doctor', '--no-docker', '--json', '--state-dir', join(dir, 'json-state'), '--hosts-file', hostsFile, '--http-port', String(await freePort()), '--https-port', String(await freePort())])
  const report = JSON.parse(r.stdout) as { failed: boolean, lines: Array<{ check: string, status: string }> }
  t.equal(report.failed, r.code === 1)
  t.ok(report.lines.some((l) => l.check === 'fd-limit'))
  t.ok(report.lines.some((l) => l.check === 'state' && l.status === 'ok'))
})
