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

const service = demo.stdout.find((l) => l.startsWith('service demo/demo/hello ')) ?? ''
const ip = /\s(127\.\d+\.\d+\.\d+):80(?=\s)/.exec(service)?.[1] ?? ''
// The demo's Gateway: its implementation's LoadBalancer Service, and the HTTPRoute's name.
const gwService = demo.stdout.find((l) => l.startsWith('service demo/demo/app-gateway ')) ?? ''
const gwIp = /\s(127\.\d+\.\d+\.\d+):80(?=\s|$)/.exec(gwService)?.[1] ?? ''

t.test('listening lines, the service line and what to curl', async (t) => {
  await waitFor(() => demo.listening.length >= 3, 'three listening lines', 5000)
  t.same(demo.listening.map((l) => `${l.host}:${l.port}`).sort(), [`127.0.0.1:${httpPort}`, `${ip}:80`, `${gwIp}:80`].sort())
  // Addresses sorted, UDP ones marked /udp (hostname mode serves UDP on the listen host at the port number).
  t.match(service, new RegExp(`^service demo/demo/hello 127\\.0\\.0\\.1:80/udp ${ip.replace(/\./g, '\\.')}:80 ${ip.replace(/\./g, '\\.')}:80/udp http://hello\\.demo\\.localhost:${httpPort}$`))
  t.ok(demo.stdout.includes(`  curl http://hello.demo.localhost:${httpPort}/`))
  t.ok(demo.stdout.includes(`  curl http://${ip}/`))
  t.ok(demo.stdout.some((l) => l.startsWith(`  curl http://app.demo.localhost:${httpPort}/ `)), 'the Gateway\'s HTTPRoute name is offered')
  t.ok(demo.stdout.includes(`  echo hello | nc -u -w1 ${ip} 80`), 'and the command to try the UDP port')
  t.ok(demo.stdout.includes(`listening ${ip}:80/udp`), 'the UDP listener on the external IP')
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

t.test('curl http://app.demo.localhost reaches the Gateway by name', async (t) => {
  const r = await curl(`http://app.demo.localhost:${httpPort}/`)
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /^hello from demo-worker2? \(127\.\d+\.\d+\.\d+\) through Gateway demo\/app, GET \/ for host app\.demo\.localhost/)
  const gw = await run('kubectl', ['--kubeconfig', kubeconfig, 'get', 'gateway', '-n', 'demo', 'app', '-o', 'jsonpath={.status.addresses[*].value}'])
  t.equal(gw.code, 0, gw.stderr)
  t.match(gw.stdout, /app-gateway\.demo\.localhost/, 'the implementation published the address kind-tunnel gave its Service')
})

t.test('the demo Service UDP port: a datagram to IP:80/udp reaches a simulated node', async (t) => {
  const { createSocket } = await import('node:dgram')
  const c = createSocket('udp4')
  t.teardown(() => { c.close() })
  const reply = new Promise<string>((resolve) => c.once('message', (m) => { resolve(m.toString()) }))
  c.send('hello', 80, ip)
  const got = await Promise.race([reply, new Promise<string>((resolve) => setTimeout(() => { resolve('(no answer in 5 s)') }, 5000))])
  t.match(got, /^hello from demo-worker2? \(127\.[\d.]+\) over UDP: hello\n$/)
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
  const st = JSON.parse(r.stdout) as { services: Array<{ name: string, addresses: string[], backends: Array<{ health: string }> }>, totals: { accepted: number }, clusters: Array<{ controller?: { gateways?: Array<{ key: string, hostnames: Array<{ url?: string, served: boolean }> }> } }> }
  t.same(st.clusters[0]?.controller?.gateways?.map((g) => [g.key, g.hostnames.map((h) => [h.url, h.served])]), [['demo/app', [[`http://app.demo.localhost:${httpPort}/`, true]]]], 'status --json carries the Gateway and its URL')
  const hello = st.services.find((s) => s.name === 'hello')
  t.same(hello?.addresses, [`127.0.0.1:80/udp`, `${ip}:80`, `${ip}:80/udp`], 'TCP and UDP addresses')
  t.equal(hello?.backends.length, 2)
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
