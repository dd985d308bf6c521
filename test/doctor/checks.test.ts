// The doctor's checks one by one, with injected inputs: table cases for the
// pure ones, real loopback sockets for TLS-that-resets and the bind test.
import t from 'tap'
import { createServer as netServer, type Server } from 'node:net'
import { createServer as tlsServer } from 'node:tls'
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { darwinBackend, linuxBackend, win32Backend } from '../../src/addresses/backends.js'
import { parseCidr } from '../../src/routing/cidr.js'
import {
  checkAliases, checkCoreDns, checkFdLimit, checkHosts, checkRoute, checkState, checkTls, formatLine, hostnamesToResolve,
  isTlsPort, tlsTargetsFromServices, checkPorts,
} from '../../src/doctor/checks.js'
import type { ClusterFacts } from '../../src/doctor/kube.js'
import { parseHosts } from '../../src/doctor/hosts.js'
import { tlsHandshake, tryBind } from '../../src/doctor/probes.js'
import { STATE_VERSION } from '../../src/app/state.js'

t.test('fd limit: warn under 1024, the launchd note on macOS', async (t) => {
  t.equal(checkFdLimit(20000, 'linux')[0]?.status, 'ok')
  const mac = checkFdLimit(256, 'darwin')[0]
  t.equal(mac?.status, 'warn')
  t.match(mac?.message, /only 256 open files allowed \(macOS launchd default\): about 96 connections/)
  t.match(mac?.fix, /launchctl limit maxfiles/)
  t.equal(checkFdLimit(512, 'linux')[0]?.status, 'warn')
  t.equal(checkFdLimit(undefined, 'win32')[0]?.status, 'skip')
})

t.test('state: a dead up that left changes is a FAIL whose fix is down', async (t) => {
  const dead = { v: STATE_VERSION, pid: 999999, startedAt: '', controlSocket: '/x', clusters: [{ name: 'kind', mode: 'relay' as const, kubeconfig: { kind: 'docker' as const }, ipPool: '127.240.0.0/16', device: 'lo', addresses: ['127.240.0.1'], relay: { name: 'kind-tunnel-relay-kind', containerId: 'c' } }] }
  const [l] = checkState(dead, false)
  t.equal(l?.status, 'FAIL')
  t.equal(l?.message, 'a kind-tunnel up (pid 999999) died and left changes: kind (1 address, relay kind-tunnel-relay-kind, Service statuses)')
  t.equal(l?.fix, 'kind-tunnel down')
  t.equal(checkState(dead, true)[0]?.status, 'ok')
  t.equal(checkState(undefined, false)[0]?.status, 'ok')
})

t.test('stale aliases: ours (pool) and cloud-provider-kind\'s (kind network), with each platform\'s command', async (t) => {
  const aliases = [
    { ip: '127.240.0.9', prefix: 32, family: 4 as const },
    { ip: '172.18.0.5', prefix: 32, family: 4 as const },
    { ip: '10.0.0.1', prefix: 32, family: 4 as const },
    { ip: '127.240.0.3', prefix: 32, family: 4 as const },
  ]
  const input = { aliases, pools: [parseCidr('127.240.0.0/16')], kindNets: [{ cluster: 'kind', net: parseCidr('172.18.0.0/16') }], inUse: new Set(['127.240.0.3']) }
  const mac = checkAliases({ ...input, backend: darwinBackend })
  t.same(mac.map((l) => [l.status, l.fix]), [['FAIL', 'sudo ifconfig lo0 -alias 127.240.0.9'], ['FAIL', 'sudo ifconfig lo0 -alias 172.18.0.5']])
  t.match(mac[1]?.message, /cloud-provider-kind aliases its Envoy containers' IPs on loopback/)
  const win = checkAliases({ ...input, backend: win32Backend })
  t.equal(win[1]?.fix, 'netsh interface ip delete address loopback 172.18.0.5   (in an Administrator prompt)')
  const lin = checkAliases({ ...input, backend: linuxBackend })
  t.equal(lin[0]?.fix, 'sudo ip addr del 127.240.0.9/32 dev lo')
  t.equal(checkAliases({ ...input, aliases: [], backend: linuxBackend })[0]?.status, 'ok')
  t.equal(checkAliases({ ...input, aliases: new Error('ip: not found'), backend: linuxBackend })[0]?.status, 'warn')
})

t.test('route to the kind network: relay is a warning, unless the running up insists on direct', async (t) => {
  t.equal(checkRoute({ cluster: 'kind', network: 'kind', mode: 'direct', reason: 'the host reached 172.18.0.2:10256' })[0]?.status, 'ok')
  t.equal(checkRoute({ cluster: 'kind', network: 'kind', mode: 'relay', reason: 'no handshake' })[0]?.status, 'warn')
  const f = checkRoute({ cluster: 'kind', network: 'kind', mode: 'relay', reason: 'no handshake', upMode: 'direct' })[0]
  t.equal(f?.status, 'FAIL')
  t.match(f?.fix, /--mode relay/)
})

const facts = (o: Partial<ClusterFacts>): ClusterFacts => ({
  cluster: 'kind',
  server: 'https://127.0.0.1:6443',
  services: { ok: true, value: [] },
  nodes: { ok: true, value: [] },
  ingresses: { ok: true, value: [] },
  coreDns: { pods: { ok: true, value: { total: 2, ready: 2 } }, endpoints: { ok: true, value: { service: true, ready: 2 } } },
  ...o,
})

t.test('CoreDNS: no Ready pod, or a kube-dns Service without endpoints, fails', async (t) => {
  t.same(checkCoreDns(facts({})).map((l) => l.status), ['ok', 'ok'])
  const down = checkCoreDns(facts({ coreDns: { pods: { ok: true, value: { total: 2, ready: 0 } }, endpoints: { ok: true, value: { service: true, ready: 0 } } } }))
  t.same(down.map((l) => l.status), ['FAIL', 'FAIL'])
  t.match(down[0]?.message, /headless Services/)
  t.match(down[0]?.fix, /kubectl -n kube-system get pods -l k8s-app=kube-dns/)
  const unknown = checkCoreDns(facts({ coreDns: { pods: { ok: false, status: 404, message: 'HTTP 404' }, endpoints: { ok: true, value: { service: false, ready: 0 } } } }))
  t.same(unknown.map((l) => l.status), ['skip', 'skip'])
})

t.test('hosts file: missing (warn), elsewhere (FAIL), loopback or the LB IP (ok); *.localhost needs nothing', async (t) => {
  const f = facts({
    ingresses: { ok: true, value: [{ metadata: { name: 'i', namespace: 'default' }, spec: { rules: [{ host: 'a.test' }, { host: 'b.test' }, { host: 'c.test' }, { host: 'x.localhost' }, { host: '*.wild.test' }] } }] },
    services: { ok: true, value: [{ metadata: { name: 's', namespace: 'default', annotations: { 'kind-tunnel.dev/hostnames': 'd.test' } }, spec: { type: 'LoadBalancer' } }] },
  })
  const names = hostnamesToResolve(f)
  t.same(names.map((n) => n.name), ['a.test', 'b.test', 'c.test', 'd.test'])
  const text = '127.0.0.1 a.test\n# 10.0.0.1 b.test\n10.9.9.9 b.test\n127.240.0.4 d.test\n'
  const out = checkHosts({ path: '/etc/hosts', text, names, expected: new Set(['127.240.0.4']), platform: 'linux' })
  t.same(out.map((l) => [l.status, l.message.split(' ')[0]]), [['ok', '2'], ['FAIL', 'b.test'], ['warn', 'c.test']])
  t.equal(out[2]?.fix, 'echo "127.0.0.1 c.test" | sudo tee -a /etc/hosts')
  const win = checkHosts({ path: 'C:\\Windows\\System32\\drivers\\etc\\hosts', text: '', names: [{ name: 'c.test', from: 'x' }], expected: new Set(), platform: 'win32' })
  t.match(win[0]?.fix, /^Add-Content -Path "C:\\Windows\\System32\\drivers\\etc\\hosts" -Value "127\.0\.0\.1 c\.test"/)
  t.same(parseHosts('::1 Six.Test.  # c\n127.0.0.1\tA b\n').get('six.test'), ['::1'])
})

t.test('TLS ports and targets from Service statuses', async (t) => {
  t.equal(isTlsPort({ port: 443 }), true)
  t.equal(isTlsPort({ port: 8443, name: 'https-admin' }), true)
  t.equal(isTlsPort({ port: 443, appProtocol: 'http' }), false)
  t.equal(isTlsPort({ port: 80, name: 'http' }), false)
  const targets = tlsTargetsFromServices([
    { metadata: { name: 'gw', namespace: 'ing' }, spec: { type: 'LoadBalancer', ports: [{ port: 443, protocol: 'TCP' }, { port: 80 }] }, status: { loadBalancer: { ingress: [{ ip: '172.18.0.9' }, { hostname: 'gw.ing.localhost' }] } } },
  ], { host: '127.0.0.1', port: 8443 })
  t.same(targets, [{ label: 'Service ing/gw', host: '172.18.0.9', port: 443 }, { label: 'Service ing/gw', host: '127.0.0.1', port: 8443, servername: 'gw.ing.localhost' }])
})

async function listening (s: Server): Promise<number> {
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()))
  return (s.address() as { port: number }).port
}

t.test('an address that accepts TCP but resets TLS is a FAIL; a real TLS server passes', async (t) => {
  // Accepts, then resets as soon as the ClientHello arrives (what users see as SSL_ERROR_SYSCALL).
  const resetter = netServer((s) => { s.once('data', () => s.resetAndDestroy()); s.on('error', () => {}) })
  const resetPort = await listening(resetter)
  t.teardown(() => resetter.close())
  const dir = await mkdtemp(join(tmpdir(), 'kt-tls-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '1', '-subj', '/CN=gw.test'], { stdio: 'ignore' })
  const tlsSrv = tlsServer({ key: await readFile(join(dir, 'k.pem')), cert: await readFile(join(dir, 'c.pem')) }, (s) => { s.end(); s.on('error', () => {}) })
  const tlsPort = await listening(tlsSrv as unknown as Server)
  t.teardown(() => tlsSrv.close())

  t.match(await tlsHandshake('127.0.0.1', resetPort, 'gw.test', 2000), { outcome: 'reset', tcp: true })
  t.match(await tlsHandshake('127.0.0.1', tlsPort, 'gw.test', 2000), { outcome: 'ok' })
  const lines = await checkTls([
    { label: 'Service ing/gw', host: '127.0.0.1', port: resetPort, servername: 'gw.test' },
    { label: 'Service ing/ok', host: '127.0.0.1', port: tlsPort },
  ], (x) => tlsHandshake(x.host, x.port, x.servername, 2000))
  t.same(lines.map((l) => l.status), ['ok', 'FAIL'])
  t.match(formatLine(lines[1] as never), new RegExp(`^FAIL tls: Service ing/gw at 127\\.0\\.0\\.1:${resetPort} \\(SNI gw\\.test\\) accepts TCP but resets the TLS handshake \\(curl: SSL_ERROR_SYSCALL`))
})

t.test('ports: free, ours (the running up), taken', async (t) => {
  const s = netServer()
  const port = await listening(s)
  t.teardown(() => s.close())
  t.same(await tryBind('127.0.0.1', port), { outcome: 'taken', code: 'EADDRINUSE' })
  const lines = await checkPorts({
    ports: [
      { endpoint: { host: '127.0.0.1', port }, what: 'shared TLS port', fix: 'f1' },
      { endpoint: { host: '127.0.0.1', port: 1 }, what: 'shared HTTP port', fix: 'f2' },
    ],
    served: new Set(['127.0.0.1:1']),
    bind: tryBind,
    owner: async () => ({ pid: 7, command: 'nginx' }),
  })
  t.same(lines.map((l) => [l.status, l.message]), [
    ['ok', 'free or ours: 127.0.0.1:1 (kind-tunnel up)'],
    ['FAIL', `127.0.0.1:${port} (shared TLS port) is taken by pid 7 (nginx)`],
  ])
})
