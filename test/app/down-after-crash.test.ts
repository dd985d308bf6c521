// After a crash, `down` undoes from the state file what no process answers
// for any more: loopback aliases (for real, in a network namespace the test
// creates, where a demo in ip mode with a pool outside 127/8 added them and
// was killed with -9) and relay containers (in the real Docker engine).
import t from 'tap'
import { randomInt } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { STATE_VERSION, writeState, controlPath, ensureStateDir } from '../../src/app/state.js'
import { RELAY_LABEL, relayName } from '../../src/docker/relay-container.js'
import { CLI, runCli } from '../support/cli.js'
import { createNetns, netnsAvailable } from '../support/netns.js'
import { busyboxImage, docker, dockerAvailable, TEST_LABEL, useScratch } from '../support/docker.js'
import { background, run, scratchDir, waitFor } from './product-support.js'

t.test('aliases: demo in a netns adds one, kill -9 leaves it, down removes it', { skip: netnsAvailable() ? false : 'needs ip netns (root)' }, async (t) => {
  const ns = createNetns()
  t.teardown(() => ns.remove())
  const dir = await scratchDir(t)
  const third = randomInt(1, 250)
  const pool = `10.98.${third}.0/24`
  const stateDir = join(dir, 'state')
  const demo = background(t, 'ip', ['netns', 'exec', ns.name, process.execPath, CLI, 'demo', '--address', 'ip', '--ip-pool', pool, '--state-dir', stateDir, '--service-port', '80'])
  await waitFor(() => demo.lines.includes('ready'), 'the demo in the namespace', 60_000)
  const aliases = (): string => ns.exec(['ip', '-o', 'addr', 'show', 'dev', 'lo'])
  const ip = `10.98.${third}.1`
  t.match(aliases(), new RegExp(`inet ${ip.replace(/\./g, '\\.')}/32`), 'the alias was added by up')
  const curl = await run('ip', ['netns', 'exec', ns.name, 'curl', '-sS', '--max-time', '5', `http://${ip}/`])
  t.match(curl.stdout, /^hello from demo-worker/, 'served on the alias')

  demo.child.kill('SIGKILL')
  await demo.exited
  t.match(aliases(), new RegExp(`inet ${ip.replace(/\./g, '\\.')}/32`), 'kill -9 left the alias')

  const down = await run('ip', ['netns', 'exec', ns.name, process.execPath, CLI, 'down', '--state-dir', stateDir], 30_000)
  t.equal(down.code, 0, down.stdout + down.stderr)
  t.match(down.stdout, new RegExp(`ok {3}demo: address ${ip.replace(/\./g, '\\.')}: removed from lo`))
  t.notMatch(aliases(), new RegExp(ip.replace(/\./g, '\\.')), 'the alias is gone')
  t.same(await readdir(stateDir), [])
})

t.test('relay container: down removes the one a dead up left', async (t) => {
  const skip = await dockerAvailable()
  if (skip !== null) { t.comment(`skipped: ${skip}`); return }
  const prefix = await useScratch(t)
  const cluster = `${prefix}-c`
  const name = relayName(cluster)
  const c = await docker.createContainer({ name, Image: await busyboxImage(), Cmd: ['sleep', '600'], Labels: { [RELAY_LABEL]: cluster, [TEST_LABEL]: prefix } })
  await c.start()
  const dir = await scratchDir(t)
  const stateDir = join(dir, 'state')
  await ensureStateDir(stateDir)
  await writeState(stateDir, {
    v: STATE_VERSION,
    pid: 2 ** 22 + 4321, // no such process
    startedAt: new Date().toISOString(),
    controlSocket: controlPath(stateDir),
    clusters: [{ name: cluster, mode: 'relay', kubeconfig: { kind: 'ephemeral' }, ipPool: '127.240.0.0/16', device: 'lo', addresses: [], relay: { name, containerId: c.id } }],
  })
  const doctor = await runCli(['doctor', '--no-docker', '--state-dir', stateDir, '--http-port', '1', '--https-port', '2'])
  t.match(doctor.stdout, new RegExp(`^FAIL state: a kind-tunnel up \\(pid \\d+\\) died and left changes: ${cluster} \\(relay ${name}\\) → fix: kind-tunnel down$`, 'm'))
  const down = await runCli(['down', '--state-dir', stateDir], { timeoutMs: 30_000 })
  t.equal(down.code, 0, down.stdout + down.stderr)
  t.match(down.stdout, new RegExp(`ok {3}${cluster}: relay ${name}: removed`))
  const gone = await docker.getContainer(c.id).inspect().then(() => 200, (err: { statusCode?: number }) => err.statusCode)
  t.equal(gone, 404, 'the container is gone')
  t.same(await readdir(stateDir), [])
})
