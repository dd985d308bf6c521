import t from 'tap'
import { encodeProxyV1, encodeProxyV2, encodeProxyHeader, unmapIPv4, PROXY_V2_SIGNATURE } from '../../src/dataplane/proxy-protocol.js'

const a4 = { sourceAddress: '192.0.2.10', sourcePort: 51234, destAddress: '127.0.0.10', destPort: 443 }
const a6 = { sourceAddress: '2001:db8::1', sourcePort: 1, destAddress: '::1', destPort: 65535 }

t.test('v1 text form', async (t) => {
  t.equal(encodeProxyV1(a4).toString('latin1'), 'PROXY TCP4 192.0.2.10 127.0.0.10 51234 443\r\n')
  t.equal(encodeProxyV1(a6).toString('latin1'), 'PROXY TCP6 2001:db8::1 ::1 1 65535\r\n')
  t.equal(encodeProxyHeader('v1', a4).toString('latin1'), 'PROXY TCP4 192.0.2.10 127.0.0.10 51234 443\r\n')
  const longest = encodeProxyV1({ sourceAddress: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', sourcePort: 65535, destAddress: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', destPort: 65535 })
  t.equal(longest.length, 104, 'worst case fits the 107-byte limit (§2.1)')
})

t.test('IPv4-mapped addresses go out as IPv4 when both ends are IPv4', async (t) => {
  const m = { sourceAddress: '::ffff:10.1.2.3', sourcePort: 1000, destAddress: '127.0.0.1', destPort: 80 }
  t.equal(encodeProxyV1(m).toString('latin1'), 'PROXY TCP4 10.1.2.3 127.0.0.1 1000 80\r\n')
  t.equal(encodeProxyV1({ ...m, destAddress: '::FFFF:127.0.0.1' }).toString('latin1'), 'PROXY TCP4 10.1.2.3 127.0.0.1 1000 80\r\n')
  t.equal(encodeProxyV1({ ...m, sourceAddress: '::ffff:0a01:0203' }).toString('latin1'), 'PROXY TCP4 10.1.2.3 127.0.0.1 1000 80\r\n', 'hex-tail mapped form')
  // Against a real IPv6 destination the mapped source stays IPv6, and a plain IPv4 source is mapped.
  t.equal(encodeProxyV1({ ...m, destAddress: '::1' }).toString('latin1'), 'PROXY TCP6 ::ffff:10.1.2.3 ::1 1000 80\r\n')
  t.equal(encodeProxyV1({ ...m, sourceAddress: '10.1.2.3', destAddress: '::1' }).toString('latin1'), 'PROXY TCP6 ::ffff:10.1.2.3 ::1 1000 80\r\n')
  t.equal(unmapIPv4('::ffff:1.2.3.4'), '1.2.3.4')
  t.equal(unmapIPv4('::1'), undefined)
  t.equal(unmapIPv4('64:ff9b::1.2.3.4'), undefined, 'NAT64 prefix is not the mapped prefix')
})

t.test('v2 binary layout (§2.2)', async (t) => {
  const b4 = encodeProxyV2(a4)
  t.equal(b4.length, 16 + 12)
  t.same(b4.subarray(0, 12), PROXY_V2_SIGNATURE)
  t.equal(b4[12], 0x21, 'version 2, PROXY command')
  t.equal(b4[13], 0x11, 'AF_INET, STREAM')
  t.equal(b4.readUInt16BE(14), 12)
  t.same([...b4.subarray(16, 20)], [192, 0, 2, 10])
  t.same([...b4.subarray(20, 24)], [127, 0, 0, 10])
  t.equal(b4.readUInt16BE(24), 51234)
  t.equal(b4.readUInt16BE(26), 443)

  const b6 = encodeProxyV2(a6)
  t.equal(b6.length, 16 + 36)
  t.equal(b6[13], 0x21, 'AF_INET6, STREAM')
  t.equal(b6.readUInt16BE(14), 36)
  t.equal(b6.subarray(16, 32).toString('hex'), '20010db8000000000000000000000001')
  t.equal(b6.subarray(32, 48).toString('hex'), '00000000000000000000000000000001')
  t.equal(b6.readUInt16BE(48), 1)
  t.equal(b6.readUInt16BE(50), 65535)

  const mapped6 = encodeProxyV2({ sourceAddress: '10.0.0.1', sourcePort: 5, destAddress: 'fe80::1%eth0', destPort: 6 })
  t.equal(mapped6.subarray(16, 32).toString('hex'), '00000000000000000000ffff0a000001', 'IPv4 source mapped into IPv6')
  t.equal(mapped6.subarray(32, 48).toString('hex'), 'fe800000000000000000000000000001', 'zone id dropped')
  const full = encodeProxyV2({ sourceAddress: '1:2:3:4:5:6:7:8', sourcePort: 5, destAddress: '1::', destPort: 6 })
  t.equal(full.subarray(16, 32).toString('hex'), '00010002000300040005000600070008')
  t.equal(full.subarray(32, 48).toString('hex'), '00010000000000000000000000000000')
})

t.test('missing or bad addresses never throw: UNKNOWN / AF_UNSPEC', async (t) => {
  const bad = [
    { sourceAddress: undefined, sourcePort: 1, destAddress: '127.0.0.1', destPort: 2 },
    { sourceAddress: '127.0.0.1', sourcePort: undefined, destAddress: '127.0.0.1', destPort: 2 },
    { sourceAddress: 'not-an-ip', sourcePort: 1, destAddress: '127.0.0.1', destPort: 2 },
    { sourceAddress: '127.0.0.1', sourcePort: 70000, destAddress: '127.0.0.1', destPort: 2 },
    { sourceAddress: '127.0.0.1', sourcePort: 1, destAddress: '', destPort: 2 },
  ]
  for (const a of bad) {
    t.equal(encodeProxyV1(a).toString('latin1'), 'PROXY UNKNOWN\r\n')
    const v2 = encodeProxyV2(a)
    t.equal(v2.length, 16)
    t.equal(v2[12], 0x21)
    t.equal(v2[13], 0x00)
    t.equal(v2.readUInt16BE(14), 0)
  }
})
