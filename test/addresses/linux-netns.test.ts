// The Linux backend for real: inside a network namespace this test creates,
// so the host's loopback is never touched.

import t from 'tap'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { linuxBackend } from '../../src/addresses/backends.js'
import { AddressManager, listAliases } from '../../src/addresses/manager.js'
import { type CommandRunner, systemRunner } from '../../src/addresses/runner.js'

function sh (file: string, args: string[], timeout = 10_000): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr })
    })
  })
}

const canNetns = process.platform === 'linux' && process.getuid?.() === 0
if (!canNetns) {
  t.test('real netns', { skip: 'needs root on Linux for ip netns' }, () => {})
} else {
  const ns = `kt-test-${randomBytes(4).toString('hex')}`
  const sys = systemRunner()
  // The production runner, with every command prefixed by `ip netns exec NS`.
  const inNs: CommandRunner = async (c) => await sys({ file: 'ip', args: ['netns', 'exec', ns, c.file, ...c.args] })
  const loAddrs = async (): Promise<string> => (await sh('ip', ['netns', 'exec', ns, 'ip', '-o', 'addr', 'show', 'dev', 'lo'])).stdout

  t.before(async () => {
    const r = await sh('ip', ['netns', 'add', ns])
    if (r.code !== 0) throw new Error(`ip netns add failed: ${r.stderr}`)
  })
  t.teardown(async () => { await sh('ip', ['netns', 'delete', ns]) })

  t.test('ensure adds a /32 and a /128 on lo; again is a no-op; release removes', async (t) => {
    const m4 = new AddressManager({ pool: '10.77.0.0/24', backend: linuxBackend, runner: inNs })
    const m6 = new AddressManager({ pool: 'fd00:77::/64', backend: linuxBackend, runner: inNs })
    t.same(await m4.ensure('10.77.0.5'), { ip: '10.77.0.5', changed: true })
    t.same(await m6.ensure('fd00:77::5'), { ip: 'fd00:77::5', changed: true })
    let out = await loAddrs()
    t.match(out, /\binet 10\.77\.0\.5\/32\b/)
    t.match(out, /\binet6 fd00:77::5\/128\b/)
    t.same(await m4.ensure('10.77.0.5'), { ip: '10.77.0.5', changed: false })
    t.same(await m6.ensure('fd00:77::5'), { ip: 'fd00:77::5', changed: false })
    t.same((await listAliases(linuxBackend, inNs)).map((a) => `${a.ip}/${a.prefix}`).sort(), ['10.77.0.5/32', 'fd00:77::5/128'])

    t.same(await m4.release('10.77.0.5'), { ip: '10.77.0.5', changed: true })
    t.same(await m6.release('fd00:77::5'), { ip: 'fd00:77::5', changed: true })
    out = await loAddrs()
    t.notMatch(out, /10\.77\.0\.5/)
    t.notMatch(out, /fd00:77::5/)
    t.same(await m4.release('10.77.0.5'), { ip: '10.77.0.5', changed: false })
  })

  t.test('an added address answers: a server in the namespace binds and is reached on it', async (t) => {
    const m = new AddressManager({ pool: '10.77.0.0/24', backend: linuxBackend, runner: inNs })
    await sh('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up'])
    await m.ensure('10.77.0.6')
    t.teardown(async () => { await m.release('10.77.0.6') })
    const script = [
      "const net = require('node:net')",
      "const s = net.createServer((c) => { c.end('kt') }).listen(0, '10.77.0.6', () => {",
      "  const c = net.connect(s.address().port, '10.77.0.6'); let d = ''",
      "  c.on('data', (b) => { d += b }); c.on('end', () => { process.stdout.write(d); s.close() })",
      "  c.on('error', (e) => { process.stdout.write(e.code); s.close() })",
      '})',
      "s.on('error', (e) => process.stdout.write(e.code))",
      'setTimeout(() => process.exit(3), 5000).unref()',
    ].join('\n')
    const r = await sh('ip', ['netns', 'exec', ns, process.execPath, '-e', script])
    t.equal(r.stdout, 'kt')
    // Before the alias exists, the same bind fails: the test proves the alias, not the kernel.
    const bare = await sh('ip', ['netns', 'exec', ns, process.execPath, '-e', script.replaceAll('10.77.0.6', '10.77.0.7')])
    t.equal(bare.stdout, 'EADDRNOTAVAIL')
  })

  t.test('127.0.0.0/8 needs nothing on Linux: nothing is added, and it answers', async (t) => {
    const m = new AddressManager({ pool: '127.240.0.0/16', backend: linuxBackend, runner: inNs })
    const before = await loAddrs()
    t.same(await m.ensure('127.240.0.5'), { ip: '127.240.0.5', changed: false })
    t.equal(await loAddrs(), before)
  })

  t.test('a command failure surfaces as KT_ERR_ADDRESS_COMMAND', async (t) => {
    const broken: CommandRunner = async (c) => c.args[0] === 'addr' && c.args[1] === 'add'
      ? await sys({ file: 'ip', args: ['netns', 'exec', ns, 'ip', 'addr', 'add', '10.77.0.9/32', 'dev', 'no-such-dev'] })
      : await inNs(c)
    const m = new AddressManager({ pool: '10.77.0.0/24', backend: linuxBackend, runner: broken })
    await t.rejects(m.ensure('10.77.0.9'), { code: 'KT_ERR_ADDRESS_COMMAND' })
  })
}
