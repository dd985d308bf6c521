import t from 'tap'
import { darwinBackend, linuxBackend } from '../../src/addresses/backends.js'
import type { Command } from '../../src/addresses/backends.js'
import { AddressManager } from '../../src/addresses/manager.js'
import type { CommandRunner } from '../../src/addresses/runner.js'

/** A fake lo0 for the darwin backend: holds aliases, answers ifconfig like macOS. */
function fakeLo0 (opts: { failAdd?: boolean, raceAdd?: boolean } = {}) {
  const aliases = new Set<string>()
  const calls: string[] = []
  const runner: CommandRunner = async (c: Command) => {
    const line = [c.file, ...c.args].join(' ')
    calls.push(line)
    // v4: lo0 alias IP netmask M | lo0 -alias IP; v6: lo0 inet6 IP prefixlen 128 alias | lo0 inet6 IP -alias
    const v6 = c.args[1] === 'inet6'
    const ip = c.args[2]
    const verb = v6 ? c.args[c.args.length - 1] : c.args[1]
    if (c.args.length === 1) {
      const lines = ['lo0: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> mtu 16384', '\tinet 127.0.0.1 netmask 0xff000000']
      for (const a of aliases) lines.push(a.includes(':') ? `\tinet6 ${a} prefixlen 128` : `\tinet ${a} netmask 0xffffffff`)
      return { code: 0, stdout: lines.join('\n'), stderr: '' }
    }
    if (verb === 'alias' && ip !== undefined) {
      if (opts.raceAdd === true) { aliases.add(ip); return { code: 1, stdout: '', stderr: 'ifconfig: ioctl (SIOCAIFADDR): File exists' } }
      if (opts.failAdd === true) return { code: 1, stdout: '', stderr: 'ifconfig: ioctl (SIOCAIFADDR): Operation not permitted\n' }
      aliases.add(ip)
      return { code: 0, stdout: '', stderr: '' }
    }
    if (verb === '-alias' && ip !== undefined) {
      aliases.delete(ip)
      return { code: 0, stdout: '', stderr: '' }
    }
    return { code: 1, stdout: '', stderr: 'unexpected' }
  }
  return { aliases, calls, runner }
}

t.test('ensure and release are idempotent', async (t) => {
  const lo = fakeLo0()
  const m = new AddressManager({ pool: '127.240.0.0/16', backend: darwinBackend, runner: lo.runner })
  t.same(await m.ensure('127.240.0.5'), { ip: '127.240.0.5', changed: true })
  t.same(await m.ensure('127.240.0.5'), { ip: '127.240.0.5', changed: false })
  t.same((await m.list()).map((a) => a.ip), ['127.240.0.5'])
  t.same(await m.release('127.240.0.5'), { ip: '127.240.0.5', changed: true })
  t.same(await m.release('127.240.0.5'), { ip: '127.240.0.5', changed: false })
  t.same(lo.calls.filter((c) => c !== 'ifconfig lo0'), ['ifconfig lo0 alias 127.240.0.5 netmask 255.255.255.255', 'ifconfig lo0 -alias 127.240.0.5'])
})

t.test('concurrent ensures of one address add it once', async (t) => {
  const lo = fakeLo0()
  const m = new AddressManager({ pool: '127.240.0.0/16', backend: darwinBackend, runner: lo.runner })
  const results = await Promise.all(Array.from({ length: 5 }, () => m.ensure('127.240.0.9')))
  t.equal(results.filter((r) => r.changed).length, 1)
  t.equal(lo.calls.filter((c) => c.includes(' alias ')).length, 1)
})

t.test('a failed command is KT_ERR_ADDRESS_COMMAND with the tool\'s first stderr line', async (t) => {
  const lo = fakeLo0({ failAdd: true })
  const m = new AddressManager({ pool: '127.240.0.0/16', backend: darwinBackend, runner: lo.runner })
  await t.rejects(m.ensure('127.240.0.5'), { code: 'KT_ERR_ADDRESS_COMMAND', message: /exited 1: ifconfig: ioctl \(SIOCAIFADDR\): Operation not permitted$/ })
  // The manager is still usable afterwards.
  t.same(await m.list(), [])
})

t.test('an add that lost a race to someone else counts as done', async (t) => {
  const lo = fakeLo0({ raceAdd: true })
  const m = new AddressManager({ pool: '127.240.0.0/16', backend: darwinBackend, runner: lo.runner })
  t.same(await m.ensure('127.240.0.5'), { ip: '127.240.0.5', changed: false })
})

t.test('linux: 127.0.0.0/8 needs no alias and runs nothing', async (t) => {
  const calls: Command[] = []
  const m = new AddressManager({ pool: '127.240.0.0/16', backend: linuxBackend, runner: async (c) => { calls.push(c); return { code: 0, stdout: '', stderr: '' } } })
  t.same(await m.ensure('127.240.0.5'), { ip: '127.240.0.5', changed: false })
  t.same(await m.release('127.240.0.5'), { ip: '127.240.0.5', changed: false })
  t.same(calls, [])
})

t.test('IPv6 input is canonicalised before use', async (t) => {
  const lo = fakeLo0()
  const m = new AddressManager({ pool: 'fd00:77::/64', backend: darwinBackend, runner: lo.runner })
  t.same(await m.ensure('FD00:77:0:0::5'), { ip: 'fd00:77::5', changed: true })
  t.ok(lo.calls.includes('ifconfig lo0 inet6 fd00:77::5 prefixlen 128 alias'))
})
