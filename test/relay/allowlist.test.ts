import t from 'tap'
import { Allowlist, parseCidr } from '../../src/relay/allow.js'

const allow = new Allowlist(['172.18.0.2/32', '172.18.0.3/32', 'fc00:f853:ccd:e793::/64'])

t.test('the allowlist is exact: node IPs on NodePorts and 10256 only', async (t) => {
  const table: Array<[string, number, string | null]> = [
    ['172.18.0.2', 30080, null],
    ['172.18.0.3', 32767, null],
    ['172.18.0.2', 30000, null],
    ['172.18.0.2', 10256, null],
    ['fc00:f853:ccd:e793::5', 31000, null],
    ['172.18.0.2', 29999, 'port'],
    ['172.18.0.2', 32768, 'port'],
    ['172.18.0.2', 22, 'port'],
    ['172.18.0.2', 6443, 'port'],
    ['172.18.0.4', 30080, 'address'],
    ['172.18.0.20', 30080, 'address'],
    ['10.0.0.1', 30080, 'address'],
    ['127.0.0.1', 30080, 'loopback'],
    ['127.1.2.3', 30080, 'loopback'],
    ['::1', 30080, 'loopback'],
    ['::ffff:127.0.0.1', 30080, 'loopback'],
    ['169.254.169.254', 30080, 'link-local'],
    ['::ffff:169.254.169.254', 30080, 'link-local'],
    ['fe80::1', 30080, 'link-local'],
    ['0.0.0.0', 30080, 'unspecified'],
    ['::', 30080, 'unspecified'],
    ['224.0.0.1', 30080, 'multicast'],
    ['255.255.255.255', 30080, 'multicast'],
    ['ff02::1', 30080, 'multicast'],
    ['::ffff:172.18.0.2', 30080, null],
    ['not-an-ip', 30080, 'address'],
  ]
  for (const [ip, port, want] of table) t.equal(allow.check(ip, port), want, `${ip}:${port}`)
})

t.test('forbidden ranges stay forbidden even when a CIDR covers them', async (t) => {
  const wide = new Allowlist(['127.0.0.0/8', '169.254.0.0/16', '128.0.0.0/1'])
  t.equal(wide.check('127.0.0.1', 30080), 'loopback')
  t.equal(wide.check('169.254.169.254', 30080), 'link-local')
})

t.test('port policy is configurable', async (t) => {
  const a = new Allowlist(['10.1.0.0/16'], { min: 40000, max: 40010, extra: [9000] })
  t.equal(a.check('10.1.2.3', 40005), null)
  t.equal(a.check('10.1.2.3', 9000), null)
  t.equal(a.check('10.1.2.3', 10256), 'port')
  t.equal(a.check('10.1.2.3', 30080), 'port')
})

t.test('bad CIDRs and policies carry codes', async (t) => {
  for (const raw of ['0.0.0.0/0', '::/0', '172.18.0.1/16', '300.1.1.1/32', '10.0.0.0/33', 'fe80::1%eth0/128', 'abc', '10.0.0.0/x']) {
    t.throws(() => parseCidr(raw), { code: 'KT_ERR_INVALID_CIDR' }, raw)
  }
  t.equal(parseCidr('172.18.0.2').text, '172.18.0.2/32')
  t.equal(parseCidr('FC00::/7').text, 'fc00::/7')
  t.throws(() => new Allowlist([]), { code: 'KT_ERR_INVALID_CIDR' })
  t.throws(() => new Allowlist(['10.0.0.0/8'], { min: 5, max: 4, extra: [] }), { code: 'KT_ERR_INVALID_ARG' })
  t.throws(() => new Allowlist(['10.0.0.0/8'], { min: 1, max: 4, extra: [70000] }), { code: 'KT_ERR_INVALID_ARG' })
})

t.test('the relay allowlist and the sim serviceCIDR read CIDRs with the one TS parser (routing/cidr.ts)', async (t) => {
  const { parseCidr: parseAny } = await import('../../src/routing/cidr.js')
  const { parseCidr4 } = await import('../../src/sim/allocator.js')
  for (const raw of ['10.1.0.0/16', ' 172.18.0.0/16 ', 'fc00::/7', '10.0.0.1']) {
    t.equal(parseCidr(raw).text, parseAny(raw, { strict: true, bare: true }).text, raw)
  }
  t.throws(() => parseCidr('010.1.0.0/16'), { code: 'KT_ERR_INVALID_CIDR' }, 'leading zeros refused, as routing/cidr.ts does')
  t.same(parseCidr4('10.96.0.0/12'), { base: 0x0a600000, bits: 12, text: '10.96.0.0/12' })
  t.equal(parseCidr4('10.96.0.5/12').base, 0x0a600000, 'host bits cleared')
  for (const raw of ['10.96.0.0', '10.96.0.0/31', '10.96.0.0/0', 'fd00::/108', 'nope/12']) {
    t.throws(() => parseCidr4(raw), { code: 'KT_ERR_INVALID_CIDR' }, raw)
  }
})
