// Time-bounded fuzzing of the first-flight parsers (issue #9 item 6).
//
//   node dist/test/fuzz/fuzz-parsers.js [SECONDS] [--seed N] [--crash-dir DIR] [--write-seeds]
//
// Seeds are the recorded flights (test/fixtures/flights) and the committed
// corpus (test/fuzz/corpus/*.bin); fast-check mutates them, re-frames TLS
// records and cuts the result at random points, and also generates hellos
// and HTTP heads whose route is known. A "crash" is any input that makes a
// parser throw, contain a fault, route differently depending on the split,
// return a name that is not normalised, or misroute a generated input.
// Prints one JSON object: executions, crashes (inputs as hex), outcome
// counts. Exit status 1 when there are crashes.
//
// Under tap (TAP=1) it runs as a test with a small budget
// (KT_FUZZ_SECONDS, default 3); `npm run soak` runs it longer.

import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import { parseClientHelloBody, parseHttpHead, tlsRawCap } from '../../src/dataplane/peek/index.js'
import { normalizeHostname } from '../../src/routing/hostmatch.js'
import { applyFraming, cutsArb, framingArb, mutate, mutationArb, namedHelloArb, namedHttpHeadArb, split } from '../fixtures/peek-arbitraries.js'
import {
  EXT_SERVER_NAME, GREASE, feedPieces, frame, handshake, handshakeOf, helloBody, loadFlights, pieces, repoRoot, serverNameData, summary, u16,
} from '../fixtures/peek-helpers.js'

export interface FuzzCrash {
  target: string
  error: string
  /** The failing input as fast-check printed it (shrunk), cut to 8 KiB. */
  counterexample: string
  seed: number
  path: string | undefined
}

export interface FuzzReport {
  seconds: number
  seed: number
  executions: number
  crashes: FuzzCrash[]
  byTarget: Record<string, number>
  outcomes: Record<string, number>
  corpus: { flights: number, committed: number }
  crashDir?: string
}

export function corpusDir (): string {
  return join(repoRoot(), 'test', 'fuzz', 'corpus')
}

/** Hand-made seeds that reach corners real clients rarely do. `--write-seeds` writes them to the corpus. */
export function syntheticSeeds (): Map<string, Buffer> {
  const s = new Map<string, Buffer>()
  const hs = handshake(helloBody({ sni: 'seed.example.test', before: [[GREASE[2] as number, Buffer.alloc(0)]], after: [[0x2b, Buffer.from([2, 3, 4])]] }))
  s.set('hello-7-byte-records.bin', frame(hs, 7))
  s.set('hello-mixed-records-v30.bin', frame(hs, [1, 3, 40, 2], 0x0300))
  s.set('hello-17000.bin', frame(handshake(helloBody({ sni: 'huge.example.test', padTo: 17_000 }))))
  s.set('hello-16384.bin', frame(handshake(helloBody({ sni: 'max.example.test', padTo: 16_384 }))))
  s.set('hello-grease-only.bin', frame(handshake(helloBody({ before: GREASE.map((g) => [g, Buffer.alloc(1)] as const) }))))
  s.set('hello-empty-sni.bin', frame(handshake(helloBody({ sni: '' }))))
  s.set('hello-ip-sni.bin', frame(handshake(helloBody({ sni: '192.0.2.1' }))))
  s.set('hello-two-sni.bin', frame(handshake(helloBody({ sni: 'a.test', after: [[EXT_SERVER_NAME, serverNameData('b.test')]] }))))
  s.set('hello-no-extensions.bin', frame(handshake(helloBody({ noExtensions: true }))))
  s.set('hello-long-record.bin', Buffer.concat([Buffer.from([0x16, 3, 1]), u16(hs.length + 300), hs]))
  const specs = Buffer.from([0x00, 0x00, 0x39, 0x00, 0x00, 0x2f])
  const v2 = Buffer.concat([Buffer.from([0x01, 0x03, 0x01]), u16(specs.length), u16(0), u16(16), specs, Buffer.alloc(16, 0xab)])
  s.set('sslv2-hello.bin', Buffer.concat([Buffer.from([0x80 | (v2.length >> 8), v2.length & 0xff]), v2]))
  s.set('http-absolute-form.bin', Buffer.from('GET http://abs.example.test:8080/p HTTP/1.1\r\nHost: other.test\r\n\r\n'))
  s.set('http-folded-host.bin', Buffer.from('GET / HTTP/1.1\r\nHost: a.test\r\n  b.test\r\n\r\n'))
  s.set('http-lf-only.bin', Buffer.from('GET / HTTP/1.1\nHost: lf.test\nX: y\n\nbody'))
  s.set('http-connect.bin', Buffer.from('CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:443\r\n\r\n'))
  s.set('http-ipv6-host.bin', Buffer.from('GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n'))
  s.set('h2c-preface.bin', Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00', 'latin1'))
  return s
}

function loadCommitted (): Buffer[] {
  try {
    return readdirSync(corpusDir()).filter((f) => f.endsWith('.bin')).sort().map((f) => readFileSync(join(corpusDir(), f)))
  } catch {
    return []
  }
}

const key = (o: unknown): string => JSON.stringify(o)

/** The checks every fed input must pass; throws with a reason on failure. */
function checkFeed (bytes: Buffer, cuts: readonly number[], outcomes: Record<string, number>): void {
  const one = feedPieces([bytes])
  const many = feedPieces(split(bytes, cuts))
  const o = one.outcome
  outcomes[o.kind] = (outcomes[o.kind] ?? 0) + 1
  if (one.peeker.parserFaults !== 0 || many.peeker.parserFaults !== 0) throw new Error('a parser fault was contained')
  if ((o.kind === 'sni' || o.kind === 'host') && normalizeHostname(o.name) !== o.name) throw new Error(`name not normalised: ${JSON.stringify(o.name)}`)
  if (key(summary(o)) !== key(summary(many.outcome))) throw new Error(`split-dependent: ${key(summary(o))} vs ${key(summary(many.outcome))}`)
  if (many.peeker.length !== bytes.length || !Buffer.concat(many.peeker.chunks).equals(bytes)) throw new Error('bytes lost or reordered')
  // Small inputs also one byte per push (bounded cost per execution).
  if (bytes.length <= 4096 && key(summary(feedPieces(pieces(bytes, 1)).outcome)) !== key(summary(o))) throw new Error('one-byte pushes disagree')
}

interface Target {
  name: string
  prop: (count: () => void, outcomes: Record<string, number>) => fc.IProperty<never> | fc.IProperty<unknown[]>
}

function targets (seeds: readonly Buffer[]): Target[] {
  const seedArb = fc.constantFrom(...seeds)
  const helloBodies = seeds.filter((b) => b[0] === 0x16).map((b) => handshakeOf(b).subarray(4)).filter((b) => b.length > 0)
  const heads = seeds.filter((b) => b[0] !== 0x16 && (b[0] as number) < 0x80)
  const bytesArb = fc.uint8Array({ maxLength: 4096 }).map((a) => Buffer.from(a))
  return [
    {
      name: 'peeker: mutated corpus',
      prop: (count, outcomes) => fc.property(seedArb, seedArb, fc.array(mutationArb, { minLength: 1, maxLength: 8 }), cutsArb, (seed, other, muts, cuts) => {
        count()
        checkFeed(mutate(seed, muts, other), cuts, outcomes)
      }) as fc.IProperty<unknown[]>,
    },
    {
      name: 'peeker: random bytes',
      prop: (count, outcomes) => fc.property(fc.oneof(bytesArb, fc.tuple(fc.constantFrom(...seeds), bytesArb).map(([s, b]) => Buffer.concat([s.subarray(0, 1 + (b.length % Math.max(1, s.length))), b]))), cutsArb, (bytes, cuts) => {
        count()
        checkFeed(bytes, cuts, outcomes)
      }) as fc.IProperty<unknown[]>,
    },
    {
      name: 'peeker: generated hellos',
      prop: (count) => fc.property(namedHelloArb, framingArb, cutsArb, ({ hs, name }, framing, cuts) => {
        count()
        const flight = applyFraming(hs, framing)
        const want = flight.length > tlsRawCap() ? { kind: 'too-large' } : { kind: 'sni', name }
        const got = summary(feedPieces(split(flight, cuts)).outcome)
        if (key(got) !== key(want)) throw new Error(`misrouted: ${key(got)}, wanted ${key(want)}`)
      }) as fc.IProperty<unknown[]>,
    },
    {
      name: 'peeker: generated HTTP heads',
      prop: (count) => fc.property(namedHttpHeadArb, cutsArb, ({ bytes, name }, cuts) => {
        count()
        const got = summary(feedPieces(split(bytes, cuts)).outcome)
        if (key(got) !== key({ kind: 'host', name })) throw new Error(`misrouted: ${key(got)}, wanted host ${name}`)
      }) as fc.IProperty<unknown[]>,
    },
    {
      name: 'parseClientHelloBody: mutated bodies',
      prop: (count) => fc.property(fc.constantFrom(...helloBodies), fc.constantFrom(...helloBodies), fc.array(mutationArb, { minLength: 1, maxLength: 8 }), (body, other, muts) => {
        count()
        const r = parseClientHelloBody(mutate(body, muts, other))
        if (r.ok && normalizeHostname(r.name) !== r.name) throw new Error('name not normalised')
      }) as fc.IProperty<unknown[]>,
    },
    {
      name: 'parseHttpHead: mutated heads',
      prop: (count) => fc.property(fc.constantFrom(...heads), fc.constantFrom(...heads), fc.array(mutationArb, { minLength: 1, maxLength: 8 }), (head, other, muts) => {
        count()
        const r = parseHttpHead(mutate(head, muts, other))
        if (r.ok && normalizeHostname(r.name) !== r.name) throw new Error('name not normalised')
      }) as fc.IProperty<unknown[]>,
    },
  ]
}

export async function fuzzParsers (opts: { seconds: number, seed?: number, maxCrashes?: number, crashDir?: string }): Promise<FuzzReport> {
  const seconds = Math.max(0.1, opts.seconds)
  const seed = opts.seed ?? (Date.now() & 0x7fffffff)
  const maxCrashes = opts.maxCrashes ?? 10
  const flights = loadFlights().map((f) => f.bytes)
  const committed = loadCommitted()
  const seeds = [...flights, ...committed]
  const report: FuzzReport = { seconds, seed, executions: 0, crashes: [], byTarget: {}, outcomes: {}, corpus: { flights: flights.length, committed: committed.length } }
  const list = targets(seeds)
  const deadline = performance.now() + seconds * 1000
  // Slices short enough that every target runs several times in a small
  // budget, long enough that fast-check's start-up cost is noise.
  const slice = Math.min(2000, Math.max(100, (seconds * 1000) / (list.length * 3)))
  let round = 0
  while (performance.now() < deadline && report.crashes.length < maxCrashes) {
    for (const target of list) {
      const left = deadline - performance.now()
      if (left <= 0) break
      let n = 0
      const runSeed = (seed + round * 7919 + list.indexOf(target)) | 0
      const details = fc.check(target.prop(() => { n++ }, report.outcomes), {
        seed: runSeed,
        numRuns: Number.MAX_SAFE_INTEGER,
        interruptAfterTimeLimit: Math.min(slice, left),
        markInterruptAsFailure: false,
        endOnFailure: false,
      })
      report.executions += n
      report.byTarget[target.name] = (report.byTarget[target.name] ?? 0) + n
      if (details.failed) {
        const counterexample = fc.stringify(details.counterexample).slice(0, 8192)
        const error = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance)
        report.crashes.push({ target: target.name, error: error.split('\n')[0] ?? '', counterexample, seed: runSeed, path: details.counterexamplePath ?? undefined })
        if (opts.crashDir !== undefined) {
          mkdirSync(opts.crashDir, { recursive: true })
          writeFileSync(join(opts.crashDir, `crash-${runSeed}.txt`), `${target.name}\n${error}\nseed ${runSeed} path ${details.counterexamplePath ?? ''}\n${fc.stringify(details.counterexample)}\n`)
          report.crashDir = opts.crashDir
        }
      }
    }
    round++
  }
  return report
}

function argValue (argv: readonly string[], name: string): string | undefined {
  const i = argv.indexOf(name)
  return i >= 0 ? argv[i + 1] : undefined
}

const isMain = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]

if (process.env.TAP === '1') {
  const { default: t } = await import('tap')
  const seconds = Number(process.env.KT_FUZZ_SECONDS ?? 3)
  t.test('the committed corpus never faults, at every split point', async (t) => {
    const outcomes: Record<string, number> = {}
    for (const b of loadCommitted()) {
      for (let i = 0; i < b.length; i += Math.max(1, Math.floor(b.length / 64))) checkFeed(b, [i], outcomes)
    }
    t.ok(loadCommitted().length >= 10, 'corpus present')
  })
  t.test(`fuzzing both parsers for ${seconds} s`, async (t) => {
    const r = await fuzzParsers({ seconds })
    t.comment(JSON.stringify({ executions: r.executions, seed: r.seed, byTarget: r.byTarget, outcomes: r.outcomes }))
    t.same(r.crashes, [], 'no crashes')
    t.ok(r.executions > 100, `${r.executions} executions`)
    t.ok(Object.keys(r.outcomes).length >= 5, 'the mutations reach most outcomes')
  })
} else if (isMain) {
  const argv = process.argv.slice(2)
  if (argv.includes('--write-seeds')) {
    mkdirSync(corpusDir(), { recursive: true })
    for (const [name, bytes] of syntheticSeeds()) writeFileSync(join(corpusDir(), name), bytes)
    process.stderr.write(`wrote ${syntheticSeeds().size} seeds to ${corpusDir()}\n`)
  }
  const positional = argv.filter((a, i) => !a.startsWith('--') && (i === 0 || !['--seed', '--crash-dir'].includes(argv[i - 1] as string)))
  const seconds = positional[0] !== undefined ? Number(positional[0]) : 10
  if (!Number.isFinite(seconds) || seconds <= 0) {
    process.stderr.write(`error KT_ERR_INVALID_ARG: seconds ${JSON.stringify(positional[0])} is not a positive number\n`)
    process.exit(2)
  }
  const seedArg = argValue(argv, '--seed')
  const report = await fuzzParsers({
    seconds,
    ...(seedArg !== undefined ? { seed: Number(seedArg) } : {}),
    crashDir: argValue(argv, '--crash-dir') ?? join(tmpdir(), 'kt-fuzz-crashes'),
  })
  process.stdout.write(JSON.stringify(report) + '\n')
  process.exitCode = report.crashes.length > 0 ? 1 : 0
}
