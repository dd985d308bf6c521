import t from 'tap'
import { darwinBackend, isSystemLoopback, linuxBackend, win32Backend } from '../../src/addresses/backends.js'
import { listAliases } from '../../src/addresses/manager.js'
import type { CommandRunner } from '../../src/addresses/runner.js'

const LINUX = [
  '1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever',
  '1: lo    inet 172.18.0.5/32 scope global lo\\       valid_lft forever preferred_lft forever',
  '1: lo    inet6 ::1/128 scope host noprefixroute \\       valid_lft forever preferred_lft forever',
  '1: lo    inet6 fd00:77::5/128 scope global \\       valid_lft forever preferred_lft forever',
  '',
].join('\n')

const DARWIN = [
  'lo0: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> mtu 16384',
  '\toptions=1203<RXCSUM,TXCSUM,TXSTATUS,SW_TIMESTAMP>',
  '\tinet 127.0.0.1 netmask 0xff000000',
  '\tinet6 ::1 prefixlen 128',
  '\tinet6 fe80::1%lo0 prefixlen 64 scopeid 0x1',
  '\tinet 172.18.0.3 netmask 0xffffffff',
  '\tinet 127.240.0.7 netmask 0xffffffff',
  '\tinet6 fd00:77::5 prefixlen 128',
  '\tnd6 options=201<PERFORMNUD,DAD>',
].join('\n')

const WIN_V4 = [
  '',
  'Configuration for interface "Loopback Pseudo-Interface 1"',
  '    DHCP enabled:                         No',
  '    IP Address:                           127.0.0.1',
  '    Subnet Prefix:                        127.0.0.0/8 (mask 255.0.0.0)',
  '    IP Address:                           172.18.0.4',
  '    Subnet Prefix:                        172.18.0.4/32 (mask 255.255.255.255)',
  '    InterfaceMetric:                      75',
  '',
].join('\r\n')

const WIN_V6 = [
  '',
  'Address ::1 Parameters',
  '---------------------------------------------------------',
  'Interface Luid     : Loopback Pseudo-Interface 1',
  'Scope Id           : 0.0',
  '',
  'Address fd00:77::5 Parameters',
  '---------------------------------------------------------',
  'Interface Luid     : Loopback Pseudo-Interface 1',
  '',
].join('\r\n')

t.test('linux: ip -o addr show dev lo', async (t) => {
  t.same(linuxBackend.parseList(LINUX), [
    { ip: '127.0.0.1', prefix: 8, family: 4 },
    { ip: '172.18.0.5', prefix: 32, family: 4 },
    { ip: '::1', prefix: 128, family: 6 },
    { ip: 'fd00:77::5', prefix: 128, family: 6 },
  ])
})

t.test('darwin: ifconfig lo0', async (t) => {
  t.same(darwinBackend.parseList(DARWIN), [
    { ip: '127.0.0.1', prefix: 8, family: 4 },
    { ip: '::1', prefix: 128, family: 6 },
    { ip: 'fe80::1', prefix: 64, family: 6 },
    { ip: '172.18.0.3', prefix: 32, family: 4 },
    { ip: '127.240.0.7', prefix: 32, family: 4 },
    { ip: 'fd00:77::5', prefix: 128, family: 6 },
  ])
})

t.test('win32: netsh interface ip/ipv6 show addresses loopback', async (t) => {
  t.same(win32Backend.parseList(WIN_V4), [
    { ip: '127.0.0.1', prefix: 8, family: 4 },
    { ip: '172.18.0.4', prefix: 32, family: 4 },
  ])
  t.same(win32Backend.parseList(WIN_V6), [
    { ip: '::1', prefix: 128, family: 6 },
    { ip: 'fd00:77::5', prefix: 128, family: 6 },
  ])
})

t.test('garbage parses to nothing, never throws', async (t) => {
  for (const b of [linuxBackend, darwinBackend, win32Backend]) {
    t.same(b.parseList('inet 999.1.1.1/32 \n inet6 zz::/64 \n\u0000\u00ff IP Address: 1.2.3 \n'), [], b.platform)
  }
})

t.test('listAliases leaves out the system addresses and merges list commands', async (t) => {
  const outputs: Record<string, string> = {
    'ip -o addr show dev lo': LINUX,
    'ifconfig lo0': DARWIN,
    'netsh interface ip show addresses loopback': WIN_V4,
    'netsh interface ipv6 show addresses loopback': WIN_V6,
  }
  const runner: CommandRunner = async (c) => ({ code: 0, stdout: outputs[[c.file, ...c.args].join(' ')] ?? '', stderr: '' })
  t.same((await listAliases(linuxBackend, runner)).map((a) => a.ip), ['172.18.0.5', 'fd00:77::5'])
  t.same((await listAliases(darwinBackend, runner)).map((a) => a.ip), ['172.18.0.3', '127.240.0.7', 'fd00:77::5'])
  t.same((await listAliases(win32Backend, runner)).map((a) => a.ip), ['172.18.0.4', 'fd00:77::5'])
  t.ok(isSystemLoopback({ ip: 'fe80::1', prefix: 64, family: 6 }))
  const failing: CommandRunner = async () => ({ code: 1, stdout: '', stderr: 'Device "lo" does not exist.\n' })
  await t.rejects(listAliases(linuxBackend, failing), { code: 'KT_ERR_ADDRESS_COMMAND' })
})
