// Issue 15: one CIDR parser in TS (routing/cidr.ts parseCidr, `bare` for
// source ranges); the native lane keeps its own (kt_lane_napi.c parse_cidr, it
// runs on the workers) and must accept exactly what the TS one accepts. The
// lane is only ever handed canonical text (fastlane.ts lanePlan), so the
// corpus has no surrounding whitespace (which the TS parser trims).
import t from 'tap'
import fc from 'fast-check'
import net from 'node:net'
import { laneBindingOf } from '../../src/dataplane/native/index.js'
import { parseCidr } from '../../src/routing/cidr.js'
import { SKIP, splicerFor } from './fixtures/harness.js'

function tsAccepts (s: string): boolean {
  try { parseCidr(s, { bare: true }); return true } catch { return false }
}

/** The lane binding and a fresh lane on a splicer of the test. */
function openLane (t: Parameters<typeof splicerFor>[0]) {
  const lb = laneBindingOf(splicerFor(t, 'splice'))
  if (lb === undefined) throw new Error('no lane')
  return { b: lb.binding, lane: lb.binding.createLane(lb.engines, () => {}) }
}

t.test('the native CIDR parser accepts exactly what routing/cidr.ts accepts', { skip: SKIP }, async (t) => {
  const { b, lane } = openLane(t)
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const l = b.laneListen(lane, 1, (server as unknown as { _handle: { fd: number } })._handle.fd, false)
  const cAccepts = (cidr: string): boolean => {
    try { b.laneSetRoutes(l, 0, [], [], [], -1, 1000, 1, [], 0, [[cidr]]); return true } catch { return false }
  }
  const corpus = [
    '127.0.0.1', '127.0.0.0/8', '10.1.2.3/8', '0.0.0.0/0', '255.255.255.255/32', '::1', '::/0', 'fd00::/8', '::ffff:10.0.0.1/120',
    '2001:db8::1/64', '1.2.3.4/33', '::/129', '10.0.0.0/', '10.0.0.0/ 8', '10.0.0.0/0x8', '10.0.0.0/8.0', '10.0.0.0/08', '10.0.0.0/-1',
    'fe80::1%eth0/64', 'fe80::1%1', '010.0.0.1', '1.2.3', '1.2.3.4.5', 'nope', '', '/8', '1.2.3.4//8', '[::1]/128', '::ffff:1.2.3.4',
    '1:2:3:4:5:6:7:8/128', '1:2:3:4:5:6:7:8:9', 'g::1', '1.2.3.256/8', '10.0.0.0/0008',
  ]
  const differ: string[] = []
  for (const c of corpus) if (tsAccepts(c) !== cAccepts(c)) differ.push(`${JSON.stringify(c)}: ts ${tsAccepts(c)}, native ${cAccepts(c)}`)
  t.same(differ, [], 'the fixed corpus')
  // Random strings over the characters CIDRs are made of.
  const chars = fc.constantFrom(...'0123456789abcdef:./%x'.split(''))
  fc.assert(fc.property(fc.string({ unit: chars, maxLength: 24 }), (x) => tsAccepts(x) === cAccepts(x)), { numRuns: 3000, seed: 15 })
  // And canonical forms of random valid ones (what the lane is really given).
  fc.assert(fc.property(fc.ipV4(), fc.integer({ min: 0, max: 32 }), (ip, p) => cAccepts(parseCidr(`${ip}/${p}`, { bare: true }).text)), { numRuns: 500, seed: 15 })
  fc.assert(fc.property(fc.ipV6(), fc.integer({ min: 0, max: 128 }), (ip, p) => tsAccepts(`${ip}/${p}`) === cAccepts(`${ip}/${p}`)), { numRuns: 500, seed: 15 })
  b.laneStop(l)
  b.laneClose(lane)
})

// Not a CIDR case, but the same direct use of the lane binding: the
// per-backend queries share one argument path in kt_lane_napi.c (backend_query).
t.test('laneBackendActive / laneBackendFree: one argument path, answers per slot', { skip: SKIP }, async (t) => {
  const { b, lane } = openLane(t)
  t.teardown(() => { b.laneClose(lane) })
  t.equal(b.laneBackendActive(lane, 5), 0, 'no pair uses backend 5')
  t.equal(b.laneBackendFree(lane, 5), true, 'its slot is free')
  for (const [name, call] of [
    ['negative id (active)', () => b.laneBackendActive(lane, -1)],
    ['negative id (free)', () => b.laneBackendFree(lane, -1)],
    ['not a lane (active)', () => b.laneBackendActive({}, 1)],
    ['not a lane (free)', () => b.laneBackendFree({}, 1)],
    ['no id', () => (b.laneBackendFree as unknown as (l: object) => boolean)(lane)],
  ] as const) {
    t.throws(call, { code: 'ERR_INVALID_ARG_TYPE' }, name)
  }
  t.throws(() => b.laneBackendActive(lane, -1), { message: /backendActive\(lane, id\)/ }, 'the usage names the call')
})

// The splice engine's calls (abort, stats, ref, close) share one argument
// path in kt_splice.c (engine_call): each refuses a non-engine with the same
// TypeError, and still works on a real engine.
t.test('engine calls: one argument path, a TypeError for anything but an engine', { skip: SKIP }, async (t) => {
  const lb = laneBindingOf(splicerFor(t, 'splice'))
  if (lb === undefined) throw new Error('no lane')
  const b = lb.binding as unknown as Record<'abort' | 'stats' | 'ref' | 'close', (...a: unknown[]) => unknown>
  for (const name of ['abort', 'stats', 'ref', 'close'] as const) {
    t.throws(() => b[name]({}, 1), { name: 'TypeError', message: /not a splice engine/ }, `${name}({})`)
    t.throws(() => b[name](), { name: 'TypeError', message: /not a splice engine/ }, `${name}()`)
  }
  const engine = lb.engines[0]
  const stats = b.stats(engine) as number[]
  t.equal(stats.length, 3, 'stats on an engine: [pairs, pipesPooled, pipeFallbacks]')
  t.equal(b.abort(engine, 12345), undefined, 'aborting an unknown pair is a no-op')
  t.throws(() => b.abort(engine), { name: 'TypeError', message: /id must be a number/ })
})
