import t from 'tap'
import { backendFor, cleanupCommand, darwinBackend, linuxBackend, win32Backend } from '../../src/addresses/backends.js'
import type { Command } from '../../src/addresses/backends.js'

const argv = (c: Command | null): string[] | null => (c === null ? null : [c.file, ...c.args])

t.test('linux: ip addr on lo, /32 and /128; nothing for 127.0.0.0/8', async (t) => {
  t.same(argv(linuxBackend.add('10.77.0.5')), ['ip', 'addr', 'add', '10.77.0.5/32', 'dev', 'lo'])
  t.same(argv(linuxBackend.remove('10.77.0.5')), ['ip', 'addr', 'del', '10.77.0.5/32', 'dev', 'lo'])
  t.same(argv(linuxBackend.add('fd00:77::5')), ['ip', 'addr', 'add', 'fd00:77::5/128', 'dev', 'lo'])
  t.same(argv(linuxBackend.remove('fd00:77::5')), ['ip', 'addr', 'del', 'fd00:77::5/128', 'dev', 'lo'])
  t.equal(linuxBackend.add('127.240.0.5'), null)
  t.equal(linuxBackend.add('127.255.255.254'), null)
  t.same(argv(linuxBackend.add('128.0.0.1')), ['ip', 'addr', 'add', '128.0.0.1/32', 'dev', 'lo'])
  t.same(linuxBackend.list.map(argv), [['ip', '-o', 'addr', 'show', 'dev', 'lo']])
})

t.test('darwin: ifconfig lo0 alias with a host netmask; every address needs one', async (t) => {
  t.same(argv(darwinBackend.add('127.240.0.5')), ['ifconfig', 'lo0', 'alias', '127.240.0.5', 'netmask', '255.255.255.255'])
  t.same(argv(darwinBackend.remove('127.240.0.5')), ['ifconfig', 'lo0', '-alias', '127.240.0.5'])
  t.same(argv(darwinBackend.add('fd00:77::5')), ['ifconfig', 'lo0', 'inet6', 'fd00:77::5', 'prefixlen', '128', 'alias'])
  t.same(argv(darwinBackend.remove('fd00:77::5')), ['ifconfig', 'lo0', 'inet6', 'fd00:77::5', '-alias'])
  t.same(darwinBackend.list.map(argv), [['ifconfig', 'lo0']])
})

t.test('win32: netsh on the loopback interface; nothing for 127.0.0.0/8', async (t) => {
  t.same(argv(win32Backend.add('10.77.0.5')), ['netsh', 'interface', 'ip', 'add', 'address', 'loopback', '10.77.0.5', '255.255.255.255'])
  t.same(argv(win32Backend.remove('10.77.0.5')), ['netsh', 'interface', 'ip', 'delete', 'address', 'loopback', '10.77.0.5'])
  t.same(argv(win32Backend.add('fd00:77::5')), ['netsh', 'interface', 'ipv6', 'add', 'address', 'loopback', 'fd00:77::5'])
  t.same(argv(win32Backend.remove('fd00:77::5')), ['netsh', 'interface', 'ipv6', 'delete', 'address', 'loopback', 'fd00:77::5'])
  t.equal(win32Backend.add('127.240.0.5'), null)
  t.same(win32Backend.list.map(argv), [
    ['netsh', 'interface', 'ip', 'show', 'addresses', 'loopback'],
    ['netsh', 'interface', 'ipv6', 'show', 'addresses', 'loopback'],
  ])
})

t.test('backends format only canonical IPs, whatever the caller slipped past', async (t) => {
  for (const b of [linuxBackend, darwinBackend, win32Backend]) {
    for (const bad of ['1.2.3.4;id', '--help', '-alias', '1.2.3.4 5.6.7.8', 'fe80::1%lo0', '', 'FD00::1', '::ffff:1.2.3.4']) {
      t.throws(() => b.add(bad), { code: 'KT_ERR_ADDRESS_REFUSED' }, `${b.platform} add ${JSON.stringify(bad)}`)
      t.throws(() => b.remove(bad), { code: 'KT_ERR_ADDRESS_REFUSED' }, `${b.platform} remove ${JSON.stringify(bad)}`)
    }
  }
})

t.test('backend by platform, and the cleanup line doctor prints', async (t) => {
  t.equal(backendFor('linux'), linuxBackend)
  t.equal(backendFor('darwin'), darwinBackend)
  t.equal(backendFor('win32'), win32Backend)
  t.throws(() => backendFor('aix'), { code: 'KT_ERR_ADDRESS_COMMAND' })
  t.equal(cleanupCommand('172.18.0.5', darwinBackend), 'sudo ifconfig lo0 -alias 172.18.0.5')
  t.equal(cleanupCommand('172.18.0.5', linuxBackend), 'sudo ip addr del 172.18.0.5/32 dev lo')
  t.match(cleanupCommand('172.18.0.5', win32Backend), /^netsh interface ip delete address loopback 172\.18\.0\.5 /)
})
