// `up` against the test API server, then `kill -9`: the state file names
// what was left (statuses, finalizers), and `down` (or the next `up`)
// undoes it. Nothing is left behind: no status entry, no finalizer, no
// listener, no state file, no control socket.
import t from 'tap'
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startDemoCluster } from '../../src/app/demo.js'
import { readState } from '../../src/app/state.js'
import { FINALIZER } from '../../src/routing/compute.js'
import { silentLogger } from '../../src/observe/logger.js'
import { runCli, startCli } from '../support/cli.js'
import { connectOutcome, curl, freePort, loopbackPool, scratchDir, waitFor } from './product-support.js'

interface Svc { metadata: { finalizers?: string[] }, status?: { loadBalancer?: { ingress?: Array<{ ip?: string, hostname?: string }> } } }

const cluster = await startDemoCluster({ servicePort: 80, logger: silentLogger() })
t.teardown(() => cluster.close())
const dir = await scratchDir(t)
const kubeconfig = join(dir, 'kubeconfig')
await writeFile(kubeconfig, cluster.kubeconfig(), { mode: 0o600 })

const svc = (): Svc => cluster.api.get('services', 'hello', 'demo') as unknown as Svc
const served = (): boolean => (svc().status?.loadBalancer?.ingress ?? []).length > 0 && (svc().metadata.finalizers ?? []).includes(FINALIZER)
const clean = (): boolean => (svc().status?.loadBalancer?.ingress ?? []).length === 0 && !(svc().metadata.finalizers ?? []).includes(FINALIZER)

async function upArgs (stateDir: string): Promise<string[]> {
  return ['up', '--kubeconfig', kubeconfig, '--mode', 'direct', '--no-docker', '--address', 'both', '--ip-pool', loopbackPool(),
    '--http-port', String(await freePort()), '--https-port', String(await freePort()), '--state-dir', stateDir, '--drain-timeout', '500']
}

t.test('kill -9, then down: statuses, finalizers, state file and socket are gone', async (t) => {
  const stateDir = join(dir, 'a')
  const up = await startCli(await upArgs(stateDir), { waitListening: 2, timeoutMs: 60_000 })
  t.teardown(() => up.stop('SIGKILL'))
  await waitFor(() => up.stdout.includes('ready'), 'ready', 60_000)
  await waitFor(served, 'status and finalizer on the Service', 5000)
  const ip = /\s(127\.\d+\.\d+\.\d+):80(?=\s|$)/.exec(up.stdout.find((l) => l.startsWith('service ')) ?? '')?.[1] ?? ''
  t.match((await curl(`http://${ip}/`)).stdout, /^hello from demo-worker/)
  t.same(svc().status?.loadBalancer?.ingress?.map((i) => i.ip ?? i.hostname), [ip, 'hello.demo.localhost'])

  const exit = await up.stop('SIGKILL')
  t.equal(exit.signal, 'SIGKILL')
  const left = await readState(stateDir)
  t.equal(left?.pid, up.child.pid, 'the state file names the dead process')
  t.same(left?.clusters.map((c) => [c.name, c.kubeconfig]), [['demo', { kind: 'file', path: kubeconfig }]])
  t.ok(served(), 'kill -9 left the status and the finalizer')
  t.equal(await connectOutcome(ip, 80), 'ECONNREFUSED', 'the listeners died with the process')

  const st = await runCli(['status', '--state-dir', stateDir])
  t.equal(st.code, 1)
  t.match(st.stderr, /^error KT_ERR_NOT_RUNNING: /)

  const down = await runCli(['down', '--state-dir', stateDir], { timeoutMs: 30_000 })
  t.equal(down.code, 0, down.stdout + down.stderr)
  t.match(down.stdout, /ok {3}demo: statuses: removed LoadBalancer statuses and finalizers \(1 Service\)/)
  t.ok(clean(), 'no status entry and no finalizer')
  t.same(await readdir(stateDir), [], 'no state file, no stale control socket')
  const again = await runCli(['down', '--state-dir', stateDir])
  t.equal(again.code, 0)
  t.match(again.stdout, /nothing to undo/)
})

t.test('kill -9, then up again: the new up undoes the leftovers first, serves, and SIGTERM cleans', async (t) => {
  const stateDir = join(dir, 'b')
  const first = await startCli(await upArgs(stateDir), { waitListening: 2, timeoutMs: 60_000 })
  t.teardown(() => first.stop('SIGKILL'))
  await waitFor(served, 'served', 10_000)
  await first.stop('SIGKILL')
  t.ok(served(), 'left behind')

  const second = await startCli(await upArgs(stateDir), { waitListening: 2, timeoutMs: 60_000 })
  t.teardown(() => second.stop('SIGKILL'))
  await waitFor(() => second.stdout.includes('ready'), 'ready', 60_000)
  t.ok(second.stderr.some((l) => l.includes('undoing what a previous kind-tunnel up left behind')), 'it said so')
  await waitFor(served, 'served again', 5000)
  t.equal((await readState(stateDir))?.pid, second.child.pid)
  const ip = svc().status?.loadBalancer?.ingress?.find((i) => i.ip !== undefined)?.ip
  const exit = await second.stop('SIGTERM')
  t.equal(exit.code, 0)
  t.ok(clean(), 'SIGTERM removed status and finalizer')
  t.same((await readState(stateDir))?.clusters.map((c) => [c.name, c.kubeconfig.kind, c.addresses, c.relay, c.allocations]), [['demo', 'ephemeral', [], undefined, { 'demo/hello': ip }]],
    'nothing left to undo; only the Service\'s IP, kept for the next up')
  t.same(await readdir(stateDir), ['state.json'], 'no stale control socket')
})

t.test('down from another terminal stops a running up, which cleans up itself', async (t) => {
  const stateDir = join(dir, 'c')
  const up = await startCli(await upArgs(stateDir), { waitListening: 2, timeoutMs: 60_000 })
  t.teardown(() => up.stop('SIGKILL'))
  await waitFor(served, 'served', 10_000)
  const second = await runCli(await upArgs(stateDir))
  t.equal(second.code, 1, 'a second up with the same state dir is refused')
  t.match(second.stderr, /^error KT_ERR_ALREADY_RUNNING: /m)
  const down = await runCli(['down', '--state-dir', stateDir], { timeoutMs: 30_000 })
  t.equal(down.code, 0, down.stderr)
  t.match(down.stdout, /stopped; everything undone/)
  const exit = await up.exited
  t.equal(exit.code, 0)
  t.ok(clean())
  t.same(await readdir(stateDir), [])
})
