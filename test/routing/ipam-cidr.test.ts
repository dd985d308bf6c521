import t from 'tap'
import { canonicalIp, cidrContainsIp, isAllocatable, parseCidr, parseIp, usableRange, formatIp } from '../../src/routing/cidr.js'

t.test('IP literals parse strictly and print canonically', async (t) => {
  const cases: Array<[string, string | null]> = [
    ['127.240.0.1', '127.240.0.1'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    ['::1', '::1'],
    ['::', '::'],
    ['FD00:0:0:0:0:0:0:1', 'fd00::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // RFC 5952 §4.2.3: first of equal runs
    ['2001:0db8:0000:0000:0000:ff00:0042:8329', '2001:db8::ff00:42:8329'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // RFC 5952 §4.2.2: one zero group is not compressed
    ['::ffff:1.2.3.4', '::ffff:102:304'],
    ['1::', '1::'],
    ['fe80::1%eth0', null], // zone ids are refused
    ['010.1.1.1', null],
    ['1.2.3.4 ', null],
    [' 1.2.3.4', null],
    ['1.2.3.4;id', null],
    ['1.2.3', null],
    ['', null],
    ['[::1]', null],
    ['--help', null],
  ]
  for (const [raw, want] of cases) t.equal(canonicalIp(raw), want, JSON.stringify(raw))
})

t.test('IPv6 values round-trip through format and parse', async (t) => {
  const values = [0n, 1n, (1n << 128n) - 1n, 0x20010db8000000000000000000000001n, 0xfd000000000000000000ffff00000000n]
  for (const v of values) {
    const text = formatIp(6, v)
    t.equal(parseIp(text)?.value, v, text)
  }
})

t.test('CIDRs', async (t) => {
  t.equal(parseCidr('127.240.0.0/16').text, '127.240.0.0/16')
  t.equal(parseCidr('10.1.2.3/8').text, '10.0.0.0/8', 'host bits cleared when not strict')
  t.equal(parseCidr('FD00::/64').text, 'fd00::/64')
  t.equal(parseCidr('0.0.0.0/0').text, '0.0.0.0/0')
  t.throws(() => parseCidr('10.1.2.3/8', { strict: true }), { code: 'KT_ERR_INVALID_CIDR' })
  for (const bad of ['10.0.0.0', '10.0.0.0/33', 'fd00::/129', '10.0.0.0/-1', '10.0.0.0/8/8', 'x/8', '/8', '10.0.0.0/', 'fe80::%lo/64', '10.0.0.0/ 8']) {
    t.throws(() => parseCidr(bad), { code: 'KT_ERR_INVALID_CIDR' }, bad)
  }
  const pool = parseCidr('127.240.0.0/16')
  t.ok(cidrContainsIp(pool, '127.240.255.255'))
  t.notOk(cidrContainsIp(pool, '127.241.0.0'))
  t.notOk(cidrContainsIp(pool, '::ffff:127.240.0.1'), 'families never mix')
})

t.test('usable range skips the edges of larger pools only', async (t) => {
  const r = (c: string): [string, string] => {
    const p = parseCidr(c)
    const u = usableRange(p)
    return [formatIp(p.family, u.first), formatIp(p.family, u.last)]
  }
  t.same(r('10.0.0.0/24'), ['10.0.0.1', '10.0.0.254'])
  t.same(r('10.0.0.0/30'), ['10.0.0.1', '10.0.0.2'])
  t.same(r('10.0.0.0/31'), ['10.0.0.0', '10.0.0.1'], 'RFC 3021')
  t.same(r('10.0.0.7/32'), ['10.0.0.7', '10.0.0.7'])
  t.same(r('fd00::/64'), ['fd00::1', 'fd00::ffff:ffff:ffff:ffff'], 'subnet-router anycast skipped, no broadcast')
  t.same(r('fd00::/127'), ['fd00::', 'fd00::1'], 'RFC 6164')
  const pool = parseCidr('10.0.0.0/24')
  t.notOk(isAllocatable(pool, '10.0.0.0'))
  t.notOk(isAllocatable(pool, '10.0.0.255'))
  t.ok(isAllocatable(pool, '10.0.0.1'))
  t.notOk(isAllocatable(pool, '10.0.1.1'))
})
