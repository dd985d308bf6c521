// The recorded first flights of real clients give the outcome the manifest
// states when pushed whole.
import t from 'tap'
import { FirstFlightPeeker } from '../../src/dataplane/peek/index.js'
import { handshakeOf, loadFlights, summary } from '../fixtures/peek-helpers.js'

const flights = loadFlights()

t.test('the corpus covers the clients the issue names', async (t) => {
  const files = flights.map((f) => f.file)
  for (const want of ['curl-https.bin', 'openssl-servername.bin', 'openssl-no-servername.bin', 'node-tls-servername.bin',
    'chromium-https.bin', 'curl-http11.bin', 'curl-http10.bin', 'curl-http10-no-host.bin', 'curl-h2c-prior-knowledge.bin']) {
    t.ok(files.includes(want), want)
  }
})

t.test('every recorded flight gives its expected outcome in one push', async (t) => {
  for (const f of flights) {
    const p = new FirstFlightPeeker()
    const o = p.push(f.bytes)
    t.same(summary(o), f.expect, `${f.file} (${f.client})`)
    t.equal(p.length, f.bytes.length, `${f.file}: length counts every byte`)
    t.equal(p.parserFaults, 0)
  }
})

t.test('the chromium hello is post-quantum sized, with X25519MLKEM768 and GREASE', async (t) => {
  const f = flights.find((x) => x.file === 'chromium-https.bin')
  if (f === undefined) return t.fail('chromium-https.bin missing')
  const body = handshakeOf(f.bytes).subarray(4)
  t.ok(body.length > 1500, `hello body ${body.length} bytes`)
  // Walk the extensions independently of the parser under test.
  let p = 2 + 32
  p += 1 + (body[p] as number)
  p += 2 + body.readUInt16BE(p)
  p += 1 + (body[p] as number)
  const end = p + 2 + body.readUInt16BE(p)
  p += 2
  const types: number[] = []
  let groups: number[] = []
  while (p < end) {
    const type = body.readUInt16BE(p)
    const len = body.readUInt16BE(p + 2)
    types.push(type)
    if (type === 51) { // key_share: client_shares<0..2^16-1> of (group, key_exchange<1..2^16-1>)
      let q = p + 6
      groups = []
      while (q < p + 4 + len) {
        groups.push(body.readUInt16BE(q))
        q += 4 + body.readUInt16BE(q + 2)
      }
    }
    p += 4 + len
  }
  t.ok(groups.includes(0x11ec), 'key share for X25519MLKEM768 (0x11ec)')
  t.ok(types.some((x) => (x & 0x0f0f) === 0x0a0a && (x >> 8) === (x & 0xff)), 'a GREASE extension (RFC 8701)')
})
