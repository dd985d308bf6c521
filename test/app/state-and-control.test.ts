// The state file (atomic, validated, no credentials) and the control socket
// (status and down over a unix socket in the 0700 state dir; nothing
// listening → KT_ERR_NOT_RUNNING).
import t from 'tap'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { controlRequest, startControlServer } from '../../src/app/control.js'
import { controlPath, ensureStateDir, pidAlive, readState, resolveStateDir, StateWriter, STATE_VERSION, type UpState } from '../../src/app/state.js'
import { clusterFromKubeconfig, splitPool } from '../../src/app/up.js'
import { topOfSubnet, sidecarNetwork, deviceBackend, poolNeedsAliases } from '../../src/app/addresses.js'
import { linuxBackend, darwinBackend } from '../../src/addresses/backends.js'
import { parseCidr } from '../../src/routing/cidr.js'

async function tempDir (t: { teardown (fn: () => unknown): void }): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'kt-state-'))
  t.teardown(() => rm(d, { recursive: true, force: true }))
  return d
}

t.test('state dir: flag, then env, then XDG, then ~/.local/state', async (t) => {
  t.equal(resolveStateDir({ stateDir: '/x', env: { KIND_TUNNEL_STATE_DIR: '/y' } }), '/x')
  t.equal(resolveStateDir({ env: { KIND_TUNNEL_STATE_DIR: '/y', XDG_STATE_HOME: '/z' } }), '/y')
  t.equal(resolveStateDir({ env: { XDG_STATE_HOME: '/z', HOME: '/h' }, platform: 'linux' }), '/z/kind-tunnel')
  t.equal(resolveStateDir({ env: { XDG_STATE_HOME: 'relative', HOME: '/h' }, platform: 'linux' }), '/h/.local/state/kind-tunnel', 'XDG paths must be absolute')
  t.equal(resolveStateDir({ env: { HOME: '/h' }, platform: 'darwin' }), '/h/.local/state/kind-tunnel')
  t.match(controlPath('C:\\Users\\a\\AppData\\Local\\kind-tunnel', 'win32'), /^\\\\\.\\pipe\\kind-tunnel-[0-9a-f]+$/)
})

t.test('state file: written atomically, read back, refused when malformed', async (t) => {
  const dir = await tempDir(t)
  await ensureStateDir(dir)
  t.equal(((await stat(dir)).mode & 0o777), 0o700)
  t.equal(await readState(dir), undefined)
  const s: UpState = { v: STATE_VERSION, pid: 4242, startedAt: 'now', controlSocket: controlPath(dir), clusters: [] }
  const w = new StateWriter(dir, s)
  await w.update((x) => ({ ...x, clusters: [{ name: 'kind', mode: 'relay', kubeconfig: { kind: 'docker' }, ipPool: '127.240.0.0/16', device: 'lo', addresses: [] }] }))
  await w.cluster('kind', (c) => ({ ...c, addresses: ['127.240.0.1'], relay: { name: 'kind-tunnel-relay-kind', containerId: 'abc' } }))
  await w.flush()
  const back = await readState(dir)
  t.same(back?.clusters[0], { name: 'kind', mode: 'relay', kubeconfig: { kind: 'docker' }, ipPool: '127.240.0.0/16', device: 'lo', addresses: ['127.240.0.1'], relay: { name: 'kind-tunnel-relay-kind', containerId: 'abc' } })
  t.equal(((await stat(join(dir, 'state.json'))).mode & 0o777), 0o600)
  t.notMatch(await readFile(join(dir, 'state.json'), 'utf8'), /certificate|token|client-key/, 'no credentials')
  await writeFile(join(dir, 'state.json'), '{"v":1,"pid":"x"}')
  await t.rejects(readState(dir), { code: 'KT_ERR_STATE_FILE' })
  await writeFile(join(dir, 'state.json'), 'not json')
  await t.rejects(readState(dir), { code: 'KT_ERR_STATE_FILE' })
})

t.test('pidAlive', async (t) => {
  t.equal(pidAlive(process.pid), true)
  t.equal(pidAlive(0), false)
  t.equal(pidAlive(2 ** 22 + 12345), false)
})

t.test('control socket: status and down; a second server refuses; gone → KT_ERR_NOT_RUNNING', async (t) => {
  const dir = await tempDir(t)
  await ensureStateDir(dir)
  const path = controlPath(dir)
  await t.rejects(controlRequest(path, 'GET', '/status', 1000), { code: 'KT_ERR_NOT_RUNNING' })
  const downs: Array<string | undefined> = []
  const srv = await startControlServer(path, { status: () => ({ hello: 'world' }), down: (c) => { downs.push(c) } })
  t.equal(((await stat(path)).mode & 0o777), 0o600, 'only the user')
  t.same(await controlRequest(path, 'GET', '/status'), { hello: 'world' })
  t.match(await controlRequest(path, 'GET', '/ping'), { ok: true, pid: process.pid })
  t.match(await controlRequest(path, 'POST', '/down?cluster=kind'), { ok: true, cluster: 'kind' })
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.same(downs, ['kind'])
  await t.rejects(startControlServer(path, { status: () => ({}), down: () => {} }), { code: 'KT_ERR_ALREADY_RUNNING' })
  await srv.close()
  await t.rejects(controlRequest(path, 'GET', '/status', 1000), { code: 'KT_ERR_NOT_RUNNING' })
  // A socket file left by a dead process is replaced.
  await writeFile(path, '')
  const again = await startControlServer(path, { status: () => ({ n: 2 }), down: () => {} })
  t.same(await controlRequest(path, 'GET', '/status'), { n: 2 })
  await again.close()
})

t.test('cluster name from a kubeconfig: kind\'s prefix dropped, quoted or not', async (t) => {
  t.equal(clusterFromKubeconfig('apiVersion: v1\ncurrent-context: kind-dev\n'), 'dev')
  t.equal(clusterFromKubeconfig('current-context: "kind-demo"\nusers: []\n'), 'demo')
  t.equal(clusterFromKubeconfig("current-context: 'prod'\n"), 'prod')
  t.equal(clusterFromKubeconfig('kind: Config\n'), undefined)
})

t.test('pools: split between clusters, top of a subnet for the sidecar', async (t) => {
  const pool = parseCidr('127.240.0.0/16')
  t.equal(splitPool(pool, 1, 0), '127.240.0.0/16')
  t.same([0, 1, 2].map((i) => splitPool(pool, 3, i)), ['127.240.0.0/18', '127.240.64.0/18', '127.240.128.0/18'])
  t.throws(() => splitPool(parseCidr('10.0.0.0/30'), 2, 0), { code: 'KT_ERR_IP_POOL_EXHAUSTED' })
  t.equal(topOfSubnet(parseCidr('172.18.0.0/16')).text, '172.18.255.0/24')
  t.equal(topOfSubnet(parseCidr('172.30.5.0/24')).text, '172.30.5.240/28')
  t.throws(() => topOfSubnet(parseCidr('10.0.0.0/30')), { code: 'KT_ERR_SIDECAR' })
  const net = sidecarNetwork(undefined, {
    lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }],
    eth0: [{ address: '172.18.0.5', netmask: '255.255.0.0', family: 'IPv4', mac: '02:42:ac:12:00:05', internal: false, cidr: '172.18.0.5/16' }],
  })
  t.same({ device: net.device, address: net.address, pool: net.pool.text }, { device: 'eth0', address: '172.18.0.5', pool: '172.18.255.0/24' })
  t.throws(() => sidecarNetwork('eth9', {}), { code: 'KT_ERR_SIDECAR' })
  const b = deviceBackend('eth0')
  t.same(b.add('172.18.255.1'), { file: 'ip', args: ['addr', 'add', '172.18.255.1/32', 'dev', 'eth0'] })
  t.same(b.remove('172.18.255.1'), { file: 'ip', args: ['addr', 'del', '172.18.255.1/32', 'dev', 'eth0'] })
  t.throws(() => deviceBackend('eth0;id'), { code: 'KT_ERR_SIDECAR' })
  t.throws(() => b.add('1.2.3.4;id'), { code: 'KT_ERR_ADDRESS_REFUSED' })
  t.equal(poolNeedsAliases(parseCidr('127.240.0.0/16'), linuxBackend), false, 'Linux answers on 127/8 already')
  t.equal(poolNeedsAliases(parseCidr('10.77.0.0/24'), linuxBackend), true)
  t.equal(poolNeedsAliases(parseCidr('127.240.0.0/16'), darwinBackend), true, 'macOS needs an alias for anything but 127.0.0.1')
})
