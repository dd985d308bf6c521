// The C first-flight parser (kt_peek.c, used by the native accept lane for
// routed listeners) against the TS FirstFlightPeeker, which is the
// specification: the same corpora as the peek tests and the fuzzer are fed to
// both, split the same way, and every outcome (kind, name, no-name reason,
// protocol, and the byte count at which it was decided) must be identical.
import t from 'tap'
import fc from 'fast-check'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { nativePeekHooks } from '../../src/dataplane/native/index.js'
import type { PeekOutcome } from '../../src/dataplane/peek/index.js'
import { FirstFlightPeeker } from '../../src/dataplane/peek/index.js'
import { applyFraming, cutsArb, framingArb, mutate, mutationArb, namedHelloArb, namedHttpHeadArb } from '../fixtures/peek-arbitraries.js'
import { nativeSkip } from '../support/native.js'
import {
  EXT_SERVER_NAME, GREASE, frame, handshake, helloBody, isTlsFlight, loadFlights, pieces, repoRoot, serverNameData, tlsFlight, u16,
} from '../fixtures/peek-helpers.js'

const hooks = nativePeekHooks()
const skip = nativeSkip(hooks === undefined ? 'the native addon (with the peek hooks) is not available' : false)

const KINDS: Record<PeekOutcome['kind'], number> = { 'need-more': 0, sni: 1, host: 2, 'no-name': 3, 'not-tls-or-http': 4, 'too-large': 5 }
const REASONS: Record<string, number> = { absent: 1, 'bad-name': 2, malformed: 3, sslv2: 4, h2c: 5 }
const PROTOS: Record<string, number> = { tls: 1, http: 2 }

type Verdict = [kind: number, reason: number, proto: number, name: string | undefined, decidedAt: number]

/** The TS peeker fed buf cut at `cuts` (growing lengths, as reads give), in the native hook's shape. */
function tsVerdict (buf: Buffer, cuts: readonly number[]): Verdict {
  const p = new FirstFlightPeeker()
  let o: PeekOutcome = { kind: 'need-more' }
  let decided = -1
  let last = 0
  for (const c of [...cuts, buf.length]) {
    const cut = Math.min(c, buf.length)
    if (cut <= last) continue
    o = p.push(buf.subarray(last, cut))
    last = cut
    if (o.kind !== 'need-more' && decided < 0) decided = cut
  }
  if (p.parserFaults !== 0) throw new Error('the TS peeker contained a fault')
  const reason = o.kind === 'no-name' ? REASONS[o.reason ?? ''] ?? 0 : 0
  const name = o.kind === 'sni' || o.kind === 'host' ? o.name : undefined
  return [KINDS[o.kind], reason, p.protocol === undefined ? 0 : PROTOS[p.protocol] as number, name, decided]
}

function cVerdict (buf: Buffer, cuts: readonly number[]): Verdict {
  return hooks!.peekParse(buf, [...cuts])
}

/** Cumulative cut points from sorted offsets, as the native hook takes them. */
function cutsFrom (buf: Buffer, offsets: readonly number[]): number[] {
  return [...new Set(offsets.map((o) => o % (buf.length + 1)).filter((o) => o > 0 && o < buf.length))].sort((a, b) => a - b)
}

let compared = 0
function same (buf: Buffer, cuts: readonly number[]): string | undefined {
  compared++
  const a = tsVerdict(buf, cuts)
  const b = cVerdict(buf, cuts)
  return JSON.stringify(a) === JSON.stringify(b) ? undefined : `ts ${JSON.stringify(a)} vs c ${JSON.stringify(b)}`
}

function corpus (): Array<{ what: string, bytes: Buffer }> {
  const out = loadFlights().map((f) => ({ what: f.file, bytes: f.bytes }))
  const dir = join(repoRoot(), 'test', 'fuzz', 'corpus')
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.bin')).sort()) out.push({ what: `corpus/${f}`, bytes: readFileSync(join(dir, f)) })
  return out
}

t.test('every recorded flight and corpus sample, whole, at every split point and one byte per read', { skip }, async (t) => {
  for (const { what, bytes } of corpus()) {
    const bad: string[] = []
    const whole = same(bytes, [])
    if (whole !== undefined) bad.push(`whole: ${whole}`)
    // Every split point costs O(n) each; the two 16-17 KB hellos are sampled every 61 bytes.
    const step = bytes.length > 4096 ? 61 : 1
    for (let k = 1; k < bytes.length && bad.length < 3; k += step) {
      const d = same(bytes, [k])
      if (d !== undefined) bad.push(`split at ${k}: ${d}`)
    }
    if (bytes.length <= 4096) {
      const ones = Array.from({ length: bytes.length - 1 }, (_, i) => i + 1)
      const d = same(bytes, ones)
      if (d !== undefined) bad.push(`one byte per read: ${d}`)
    } else {
      const d = same(bytes, Array.from({ length: Math.floor(bytes.length / 7) }, (_, i) => (i + 1) * 7))
      if (d !== undefined) bad.push(`7 bytes per read: ${d}`)
    }
    t.same(bad, [], what)
  }
})

t.test('truncated at every length, and every prefix of every TLS flight', { skip }, async (t) => {
  let bad = 0
  for (const { bytes } of corpus()) {
    const step = bytes.length > 4096 ? 97 : 1
    for (let n = 0; n <= bytes.length; n += step) if (same(bytes.subarray(0, n), []) !== undefined) bad++
  }
  t.equal(bad, 0)
})

t.test('malformed hellos: every length field too large, 17,000 bytes, empty and IP SNI, GREASE only, odd records', { skip }, async (t) => {
  const cases: Array<[string, Buffer]> = []
  const base = tlsFlight({ sni: 'built.example.test', before: [[GREASE[3] as number, Buffer.alloc(0)]], after: [[0x10, Buffer.from([0, 3, 2, 0x68, 0x32])]] })
  // Every 1-, 2- and 3-byte window of the header and extensions set to a few values.
  for (let at = 0; at < base.length; at++) {
    for (const width of [1, 2, 3]) {
      if (at + width > base.length) continue
      for (const v of [0, 1, 0xff, 0xffff, 0xffffff, 16_384, 16_385]) {
        const b = Buffer.from(base)
        b.writeUIntBE(v % (1 << (8 * width)), at, width)
        cases.push([`set ${width}@${at}=${v}`, b])
      }
    }
  }
  cases.push(['17,000-byte hello', frame(handshake(helloBody({ sni: 'huge.example.test', padTo: 17_000 })))])
  cases.push(['16,384-byte hello in 512-byte records', frame(handshake(helloBody({ sni: 'max.example.test', padTo: 16_384 })), 512)])
  cases.push(['hello in 1-byte records', frame(handshake(helloBody({ sni: 'one.example.test' })), 1)])
  cases.push(['zero-length SNI', tlsFlight({ sni: '' })])
  cases.push(['IP SNI', tlsFlight({ sni: '192.0.2.1' })])
  cases.push(['hex IP SNI', tlsFlight({ sni: 'a.0x1f' })])
  cases.push(['non-ASCII SNI', tlsFlight({ sni: Buffer.from([0x61, 0xe9, 0x2e, 0x74]) })])
  cases.push(['GREASE only', frame(handshake(helloBody({ before: GREASE.map((g) => [g, Buffer.alloc(1)] as const) })))])
  cases.push(['two server_name', frame(handshake(helloBody({ sni: 'a.test', after: [[EXT_SERVER_NAME, serverNameData('b.test')]] })))])
  cases.push(['record version 3.4', tlsFlight({ sni: 'v34.test' }, 16_384, 0x0304)])
  cases.push(['record version 2.0', tlsFlight({ sni: 'v2.test' }, 16_384, 0x0200)])
  cases.push(['not a ClientHello', frame(handshake(helloBody({ sni: 'x.test' }), 2))])
  cases.push(['alert record first', Buffer.concat([Buffer.from([0x15, 3, 3]), u16(2), Buffer.from([2, 40])])])
  cases.push(['empty record', Buffer.concat([Buffer.from([0x16, 3, 1]), u16(0), tlsFlight({ sni: 'x.test' })])])
  cases.push(['SSLv2', Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01])])
  cases.push(['SSLv2 short length', Buffer.from([0x80, 0x05, 0x01, 0x03, 0x01])])
  cases.push(['SSLv2 version 0.2', Buffer.from([0x80, 0x2e, 0x01, 0x00, 0x02])])
  const bad: string[] = []
  for (const [what, b] of cases) {
    const d = same(b, [])
    if (d !== undefined) bad.push(`${what}: ${d}`)
    const d3 = same(b, cutsFrom(b, [1, 2, 5, 6, 9, 10, 44, 45, 100, 517]))
    if (d3 !== undefined) bad.push(`${what} (split): ${d3}`)
  }
  t.same(bad.slice(0, 10), [], `${cases.length} cases`)
})

t.test('HTTP heads: Host forms, absolute-form, CONNECT, folding, duplicates, HTTP/1.0, h2c, oversize', { skip }, async (t) => {
  const heads = [
    'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n',
    'GET / HTTP/1.1\r\nhost:A.TEST.\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a.test:8080\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a.test:123456\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a.test:\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a.test:8x\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: \r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n',
    'GET / HTTP/1.1\r\nHost : a.test\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a.test\r\n  folded\r\n\r\n',
    'GET / HTTP/1.1\r\nHostx: a.test\r\n\r\n',
    'GET / HTTP/1.1\r\nX-Host: a.test\r\n\r\n',
    'GET http://abs.test:80/p HTTP/1.1\r\nHost: other.test\r\n\r\n',
    'GET http://user@abs.test/ HTTP/1.1\r\nHost: other.test\r\n\r\n',
    'GET https://abs.test?q HTTP/1.1\r\n\r\n',
    'GET h2://x HTTP/1.1\r\n\r\n',
    'GET 1http://x.test/ HTTP/1.1\r\n\r\n',
    'GET http:/x.test/ HTTP/1.1\r\n\r\n',
    'OPTIONS * HTTP/1.1\r\nHost: star.test\r\n\r\n',
    'CONNECT tunnel.test:443 HTTP/1.1\r\nHost: x.test\r\n\r\n',
    'CONNECT [::1]:443 HTTP/1.1\r\n\r\n',
    'GET / HTTP/1.0\r\n\r\n',
    'GET / HTTP/1.0\r\nHost: old.test\r\n\r\n',
    'GET / HTTP/2.0\r\n\r\n',
    'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
    'PRI / HTTP/2.0\r\n\r\n',
    '\r\n\r\nGET / HTTP/1.1\r\nHost: lead.test\r\n\r\n',
    '\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n',
    'GET / HTTP/1.1\nHost: lf.test\n\n',
    'GET / HTTP/1.1\r\nHost: a.test\r\r\n\r\n',
    'GET / http/1.1\r\n\r\n',
    'GET /\r\n',
    'GET  / HTTP/1.1\r\n\r\n',
    'G\u00e9T / HTTP/1.1\r\n\r\n',
    `GET / HTTP/1.1\r\nHost: ${'a'.repeat(64)}.test\r\n\r\n`,
    `GET / HTTP/1.1\r\nHost: ${Array.from({ length: 60 }, () => 'abcd').join('.')}\r\n\r\n`,
    `GET / HTTP/1.1\r\nX: ${'y'.repeat(16_400)}\r\nHost: big.test\r\n\r\n`,
    `GET / HTTP/1.1\r\nX: ${'y'.repeat(16_330)}\r\nHost: edge.test\r\n\r\n`,
    `${'A'.repeat(33)} / HTTP/1.1\r\n\r\n`,
    'SSH-2.0-OpenSSH_9.2\r\n',
  ].map((h) => Buffer.from(h, 'latin1'))
  const bad: string[] = []
  for (const h of heads) {
    for (const cuts of [[], cutsFrom(h, [1, 3, 4, 15, 16, 17, 30]), h.length < 400 ? Array.from({ length: h.length - 1 }, (_, i) => i + 1) : []]) {
      const d = same(h, cuts)
      if (d !== undefined) bad.push(`${JSON.stringify(h.toString('latin1').slice(0, 60))} ${cuts.length} cuts: ${d}`)
    }
  }
  t.same(bad, [], `${heads.length} heads`)
})

const fcOpts = { numRuns: Number(process.env.KT_DIFF_RUNS ?? 400), seed: Number(process.env.KT_DIFF_SEED ?? 0x6b74) }

t.test('fast-check: generated hellos, framings and splits', { skip }, async (t) => {
  fc.assert(fc.property(namedHelloArb, framingArb, cutsArb, ({ hs }, framing, cuts) => {
    const flight = applyFraming(hs, framing)
    const d = same(flight, cutsFrom(flight, cuts))
    if (d !== undefined) throw new Error(d)
  }), fcOpts)
  t.pass()
})

t.test('fast-check: generated HTTP heads and splits', { skip }, async (t) => {
  fc.assert(fc.property(namedHttpHeadArb, cutsArb, ({ bytes }, cuts) => {
    const d = same(bytes, cutsFrom(bytes, cuts))
    if (d !== undefined) throw new Error(d)
  }), fcOpts)
  t.pass()
})

t.test('fast-check: Host values of random bytes (name normalisation)', { skip }, async (t) => {
  const chars = fc.oneof(fc.constantFrom(...'aZ09.-_:[]@*/?# \tx'.split('')), fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)))
  fc.assert(fc.property(fc.array(chars, { maxLength: 80 }).map((a) => a.join('')), fc.boolean(), (v, absolute) => {
    const clean = v.replace(/[\r\n]/g, '')
    const head = absolute ? `GET http://${clean.replace(/ /g, '')}/ HTTP/1.1\r\n\r\n` : `GET / HTTP/1.1\r\nHost: ${clean}\r\n\r\n`
    const d = same(Buffer.from(head, 'latin1'), [])
    if (d !== undefined) throw new Error(d)
  }), fcOpts)
  t.pass()
})

t.test('fast-check: random bytes, and random bytes behind TLS / HTTP / h2c / SSLv2 prefixes', { skip }, async (t) => {
  const bytesArb = fc.uint8Array({ maxLength: 2048 }).map((a) => Buffer.from(a))
  const prefixed = fc.tuple(fc.constantFrom(
    Buffer.from([0x16, 0x03, 0x01]), Buffer.from([0x16, 0x03, 0x03, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03]),
    Buffer.from('GET / HTTP/1.1\r\n'), Buffer.from('GET '), Buffer.from('PRI * HTTP/2.0\r\n'), Buffer.from([0x80, 0x40, 0x01, 0x03]),
  ), bytesArb).map(([p, tail]) => Buffer.concat([p, tail]))
  fc.assert(fc.property(fc.oneof(bytesArb, prefixed), cutsArb, (b, cuts) => {
    const d = same(b, cutsFrom(b, cuts))
    if (d !== undefined) throw new Error(d)
  }), { ...fcOpts, numRuns: fcOpts.numRuns * 2 })
  t.pass()
})

t.test('fast-check: mutated flights and corpus samples', { skip }, async (t) => {
  const seeds = corpus().map((c) => c.bytes).filter((b) => b.length <= 4096)
  fc.assert(fc.property(fc.constantFrom(...seeds), fc.constantFrom(...seeds), fc.array(mutationArb, { minLength: 1, maxLength: 8 }), cutsArb, (seed, other, muts, cuts) => {
    const b = mutate(seed, muts, other)
    const d = same(b, cutsFrom(b, cuts))
    if (d !== undefined) throw new Error(d)
  }), { ...fcOpts, numRuns: fcOpts.numRuns * 3 })
  t.pass()
})

t.test('one byte per read over a whole recorded TLS flight gives the same decision byte', { skip }, async (t) => {
  for (const f of loadFlights().filter(isTlsFlight)) {
    const ones = pieces(f.bytes, 1).map((_, i) => i + 1)
    t.same(cVerdict(f.bytes, ones), tsVerdict(f.bytes, ones), f.file)
  }
})

t.test('compared', { skip }, async (t) => {
  t.ok(compared > 1000, `${compared} inputs compared`)
})
