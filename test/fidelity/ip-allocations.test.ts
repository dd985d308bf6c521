// Per-Service LB IPs live in the state file, not only in the Service status
// (which a real API server clears, and which `up` itself clears on stop), so:
// - after a clean stop and a new `up`, each Service gets back the IP it had;
// - after a crash and a new `up` (whose recovery clears the statuses first), too;
// - `down` forgets them: the next `up` allocates afresh;
// - a corrupt, foreign or newer state file stops `up` with KT_ERR_STATE_FILE
//   and is left exactly as it was.
//
// The Services are placed so that the fresh order differs from the held one:
// a and b get .1 and .2; a is deleted and c takes .1. A fresh allocation
// (oldest first, lowest free) would give b .1 and c .2.
//
// `up` runs in-process against the test API server with --kubeconfig FILE.
import t from 'tap'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { buildUpConfig } from '../../src/app/config.js'
import { loadController } from '../../src/app/controller-port.js'
import type { DockerAccess } from '../../src/app/docker.js'
import { runDown } from '../../src/app/down.js'
import { controlRequest } from '../../src/app/control.js'
import { controlPath, readState, STATE_VERSION, writeState, type UpState } from '../../src/app/state.js'
import { startUp, type UpRun } from '../../src/app/up.js'
import { checkState } from '../../src/doctor/checks.js'
import { silentLogger } from '../../src/observe/logger.js'
import { Registry } from '../../src/observe/metrics.js'
import { startApiServer } from '../../src/sim/apiserver.js'
import { freePort, loopbackPool, scratchDir, waitFor } from '../app/product-support.js'

const api = await startApiServer({ clusterName: 'alloc' })
t.teardown(() => api.close())
api.addNode({ name: 'alloc-worker', internalIP: '127.0.0.1' })
const svc = (name: string): object => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { type: 'LoadBalancer', ports: [{ name: 'tcp', port: 7000, protocol: 'TCP' }] } })
const dir = await scratchDir(t)
const kubeconfig = join(dir, 'kubeconfig')
await writeFile(kubeconfig, api.kubeconfig(), { mode: 0o600 })
const stateDir = join(dir, 'state')
const pool = loopbackPool()
const ip = (n: number): string => pool.replace(/\.0\/24$/, `.${n}`)
const noDocker: DockerAccess = {
  clusters: async () => [],
  kubeconfig: async () => undefined,
  chooseMode: async () => { throw new Error('no Docker in this test') },
  ensureRelay: async () => { throw new Error('no Docker in this test') },
  removeRelay: async () => 0,
}

async function up (): Promise<UpRun> {
  const cfg = buildUpConfig({ kubeconfig, mode: 'direct', docker: false, address: 'ip', ipPool: pool, httpPort: String(await freePort()), httpsPort: String(await freePort()), stateDir, drainTimeout: '100', accessLog: false })
  return await startUp(cfg, { logger: silentLogger(), registry: new Registry(), controller: loadController, docker: noDocker })
}
const statusIp = (name: string): string | undefined =>
  ((api.tryGet('services', name, 'default') as { status?: { loadBalancer?: { ingress?: Array<{ ip?: string }> } } } | undefined)?.status?.loadBalancer?.ingress ?? [])[0]?.ip
async function served (want: Record<string, string>): Promise<void> {
  await waitFor(() => Object.entries(want).every(([n, a]) => statusIp(n) === a), () => `statuses ${JSON.stringify(want)}; have ${JSON.stringify(Object.fromEntries(Object.keys(want).map((n) => [n, statusIp(n)])))}`, 15_000)
}
const remembered = async (): Promise<unknown> => (await readState(stateDir))?.clusters.map((c) => [c.name, c.allocations])

t.test('a clean stop keeps the allocations; the next up gives each Service its IP back', async (t) => {
  api.create(svc('a'))
  api.create(svc('b'))
  const first = await up()
  t.teardown(() => first.stop('teardown'))
  await served({ a: ip(1), b: ip(2) })
  api.delete('services', 'a', 'default')
  await waitFor(() => api.tryGet('services', 'a', 'default') === undefined, 'a deleted (finalizer removed)', 15_000)
  api.create(svc('c'))
  await served({ b: ip(2), c: ip(1) })
  t.same(await remembered(), [['alloc', { 'default/b': ip(2), 'default/c': ip(1) }]], 'recorded while running')

  await first.stop('signal SIGTERM')
  t.equal(first.cleanExit, true)
  t.equal(statusIp('b'), undefined, 'the stop cleared the statuses')
  const st = await readState(stateDir)
  t.same(st?.clusters.map((c) => [c.name, c.kubeconfig.kind, c.addresses, c.relay, c.allocations]), [['alloc', 'ephemeral', [], undefined, { 'default/b': ip(2), 'default/c': ip(1) }]], 'only the allocations are kept')
  t.match(checkState(st, false), [{ status: 'ok', message: /LB IPs of 2 Services are kept for the next up/ }], 'doctor: nothing to undo')

  const second = await up()
  t.teardown(() => second.stop('teardown'))
  await served({ b: ip(2), c: ip(1) })
  t.pass('b and c got their IPs back, not the fresh order')
  await second.stop('signal SIGINT')
})

t.test('a crash: the next up undoes the leftovers, then gives each Service its IP back', async (t) => {
  const running = await up()
  t.teardown(() => running.stop('teardown'))
  await served({ b: ip(2), c: ip(1) })
  // What a kill -9 leaves: this state file, with a dead pid (the statuses
  // stay too, until the next up's recovery clears them before it starts).
  const crashed = await readState(stateDir) as UpState
  await running.stop('test')
  await writeState(stateDir, { ...crashed, pid: 2 ** 22 + 4321 })
  t.same(crashed.clusters.map((c) => [c.kubeconfig.kind, [...c.addresses].sort()]), [['file', [ip(1), ip(2)]]])

  const again = await up()
  t.teardown(() => again.stop('teardown'))
  await served({ b: ip(2), c: ip(1) })
  t.equal((await readState(stateDir))?.pid, process.pid)
  await again.stop('signal SIGTERM')
})

t.test('down forgets them: stopped, then running', async (t) => {
  const printed: string[] = []
  const code = await runDown({ stateDir, logger: silentLogger(), controller: loadController, docker: noDocker, print: (l) => printed.push(l) })
  t.equal(code, 0, printed.join('\n'))
  t.same(printed, ['ok   alloc: forgot the LB IPs of 2 Services kept for the next up'])
  t.equal(await readState(stateDir), undefined)

  const fresh = await up()
  t.teardown(() => fresh.stop('teardown'))
  await served({ b: ip(1), c: ip(2) })
  t.pass('allocated afresh: oldest first, lowest free')
  // What `kind-tunnel down` sends a running up (runDown itself then waits for the pid to exit: this one's).
  await controlRequest(controlPath(stateDir), 'POST', '/down', 5000)
  await fresh.done
  t.equal(await readState(stateDir), undefined, '`down` to a running up: nothing kept')
})

t.test('a corrupt, foreign or newer state file: KT_ERR_STATE_FILE, and the file is left as it was', async (t) => {
  const path = join(stateDir, 'state.json')
  const cases: Array<[string, string, RegExp]> = [
    ['not JSON', '{"v":2,"pid":1', /is not JSON/],
    ['newer', JSON.stringify({ v: STATE_VERSION + 1, pid: 1, controlSocket: 'x', clusters: [] }), /written by a newer kind-tunnel \(state version 3/],
    ['bad allocation', JSON.stringify({ v: 2, pid: 1, controlSocket: 'x', clusters: [{ name: 'alloc', mode: 'direct', kubeconfig: { kind: 'ephemeral' }, ipPool: pool, device: 'lo', addresses: [], allocations: { 'default/b': 'not-an-ip' } }] }), /malformed cluster entry/],
  ]
  for (const [what, text, re] of cases) {
    await writeFile(path, text)
    await t.rejects(up(), { code: 'KT_ERR_STATE_FILE', message: re }, what)
    t.equal(await readFile(path, 'utf8'), text, `${what}: untouched`)
  }
  await writeFile(path, JSON.stringify({ v: 1, pid: 2 ** 22 + 4322, startedAt: '', controlSocket: join(stateDir, 'control.sock'), clusters: [{ name: 'alloc', mode: 'direct', kubeconfig: { kind: 'ephemeral' }, ipPool: pool, device: 'lo', addresses: [ip(9)] }] }))
  const old = await readState(stateDir)
  t.same(old?.clusters[0]?.addresses, [ip(9)], 'a version-1 file (older kind-tunnel) is still read, to be undone')
})
