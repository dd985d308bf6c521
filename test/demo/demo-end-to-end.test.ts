// `kind-tunnel demo` end to end, as a user runs it: the CLI on free ports,
// curl through the external IP and through <service>.<namespace>.localhost
// (curl resolves *.localhost to loopback itself), the real kubectl showing
// the EXTERNAL-IP, and SIGTERM leaving no listener, no status entry and no
// finalizer (seen by a kubectl watch, since the API server leaves with the demo).
import t from 'tap'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { startCli } from '../support/cli.js'
import { FINALIZER } from '../../src/routing/compute.js'
import { background, connectOutcome, curl, freePort, loopbackPool, run, scratchDir, waitFor, waitLine } from '../app/product-support.js'

const dir = await scratchDir(t)
const [httpPort, httpsPort] = [await freePort(), await freePort()]
const pool = loopbackPool()
const kubeconfig = join(dir, 'kubeconfig')
const stateDir = join(dir, 'state')

const demo = await startCli(['demo', '--http-port', String(httpPort), '--https-port', String(httpsPort), '--ip-pool', pool, '--state-dir', stateDir, '--kubeconfig-out', kubeconfig, '--service-port', '80'], { waitListening: 2, timeoutMs: 60_000 })
t.teardown(() => demo.stop('SIGKILL'))
await waitFor(() => demo.stdout.includes('ready'), 'the ready line', 60_000)

const service = demo.stdout.find((l) => l.startsWith('service ')) ?? ''
const ip = /\s(127\.\d+\.\d+\.\d+):80\b/.exec(service)?.[1] ?? ''

t.test('listening lines, the service line and what to curl', async (t) => {
  t.same(demo.listening.map((l) => `${l.host}:${l.port}`).sort(), [`127.0.0.1:${httpPort}`, `${ip}:80`].sort())
  t.match(service, new RegExp(`^service demo/demo/hello ${ip.replace(/\./g, '\\.')}:80 http://hello\\.demo\\.localhost:${httpPort}$`))
  t.ok(demo.stdout.includes(`  curl http://hello.demo.localhost:${httpPort}/`))
  t.ok(demo.stdout.includes(`  curl http://${ip}/`))
  t.ok(ip.startsWith(pool.split('.').slice(0, 3).join('.')), 'the external IP comes from --ip-pool')
})

t.test('curl through the hostname and through the external IP reaches both simulated nodes', async (t) => {
  const seen = new Set<string>()
  for (let i = 0; i < 6; i++) {
    const byName = await curl(`http://hello.demo.localhost:${httpPort}/`)
    t.equal(byName.code, 0, byName.stderr)
    t.match(byName.stdout, /^hello from demo-worker2? \(127\.\d+\.\d+\.\d+\), GET \/ for host hello\.demo\.localhost/)
    const byIp = await curl(`http://${ip}/`)
    t.equal(byIp.code, 0, byIp.stderr)
    t.match(byIp.stdout, /^hello from demo-worker/)
    for (const o of [byName.stdout, byIp.stdout]) seen.add(/hello from (\S+)/.exec(o)?.[1] ?? '')
  }
  t.same([...seen].sort(), ['demo-worker', 'demo-worker2'], 'round robin over both nodes')
})

t.test('the real kubectl shows the EXTERNAL-IP and the hostname', async (t) => {
  const r = await run('kubectl', ['--kubeconfig', kubeconfig, 'get', 'svc', '-n', 'demo', 'hello', '--no-headers'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, new RegExp(`LoadBalancer\\s+\\S+\\s+${ip.replace(/\./g, '\\.')},hello\\.demo\\.localhost\\s+80:\\d+/TCP`))
  const fin = await run('kubectl', ['--kubeconfig', kubeconfig, 'get', 'svc', '-n', 'demo', 'hello', '-o', 'jsonpath={.metadata.finalizers}'])
  t.ok(fin.stdout.includes(FINALIZER), `our finalizer is on the Service: ${fin.stdout}`)
})

t.test('status over the control socket', async (t) => {
  const r = await run(process.execPath, [join(import.meta.dirname, '../../src/cli/main.js'), 'status', '--json', '--state-dir', stateDir])
  t.equal(r.code, 0, r.stderr)
  const st = JSON.parse(r.stdout) as { services: Array<{ name: string, addresses: string[], backends: Array<{ health: string }> }>, totals: { accepted: number } }
  t.equal(st.services[0]?.name, 'hello')
  t.same(st.services[0]?.addresses, [`${ip}:80`])
  t.equal(st.services[0]?.backends.length, 2)
  t.ok(st.totals.accepted >= 12, 'the curls were counted')
})

t.test('SIGTERM: no listener, no status entry, no finalizer, nothing left in the state dir', async (t) => {
  // The API server leaves with the demo, so watch the Service until then.
  const watch = background(t, 'kubectl', ['--kubeconfig', kubeconfig, 'get', 'svc', '-n', 'demo', 'hello', '-w',
    '-o', 'jsonpath={.metadata.finalizers}|{.status.loadBalancer.ingress}{"\\n"}'])
  await waitLine(watch.lines, /load-balancer-cleanup/, 10_000, 'the watch\'s first line')
  const exit = await demo.stop('SIGTERM')
  t.equal(exit.code, 0, 'exit 0 after a clean undo')
  await Promise.race([watch.exited, new Promise((resolve) => setTimeout(resolve, 5000))])
  const last = watch.lines[watch.lines.length - 1] ?? ''
  t.equal(last, '|', `the last state the API server had: no finalizer, no ingress (${watch.lines.join(' / ')})`)
  t.equal(await connectOutcome('127.0.0.1', httpPort), 'ECONNREFUSED')
  t.equal(await connectOutcome(ip, 80), 'ECONNREFUSED')
  t.same(await readdir(stateDir), [], 'no state file, no control socket')
})
