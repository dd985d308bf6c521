// The native hostname matcher (kt_peek.c kt_routes_match) against HostMatcher:
// the lane pushes route entries read as HostMatcher's constructor reads them
// (fastlane.ts lanePlan), and must pick the same entry for every client name:
// exact beats wildcard, the longest suffix wins, a wildcard matches one or
// more labels but never the bare suffix, names are normalised first.
import t from 'tap'
import fc from 'fast-check'
import { nativePeekHooks } from '../../src/dataplane/native/index.js'
import { HostMatcher, normalizeHostname } from '../../src/routing/hostmatch.js'
import { nativeSkip } from '../support/native.js'

const hooks = nativePeekHooks()
const skip = nativeSkip(hooks === undefined ? 'the native addon (with the peek hooks) is not available' : false)

/** Entries as fastlane.ts lanePlan pushes them (first of duplicates wins), with the index of the raw entry. */
function pushed (raw: readonly string[]): { names: string[], wild: number[], index: number[] } {
  const seen = [new Set<string>(), new Set<string>()]
  const out = { names: [] as string[], wild: [] as number[], index: [] as number[] }
  raw.forEach((r, i) => {
    const trimmed = r.trim()
    const isWild = trimmed.startsWith('*.')
    const name = normalizeHostname(isWild ? trimmed.slice(2) : trimmed) as string
    const set = seen[isWild ? 1 : 0] as Set<string>
    if (set.has(name)) return
    set.add(name)
    out.names.push(name)
    out.wild.push(isWild ? 1 : 0)
    out.index.push(i)
  })
  return out
}

function check (raw: readonly string[], name: string): string | undefined {
  const m = new HostMatcher(raw.map((r, i) => [r, i] as const))
  const want = m.match(name) ?? -1
  const p = pushed(raw)
  const hit = hooks!.peekMatch(p.names, p.wild, name)
  const got = hit < 0 ? -1 : p.index[hit] as number
  return want === got ? undefined : `${JSON.stringify(raw)} ${JSON.stringify(name)}: HostMatcher ${want}, native ${got}`
}

t.test('table: exact, wildcards, longest suffix, bare suffix, case, trailing dot, duplicates', { skip }, async (t) => {
  const raw = ['api.example.test', '*.example.test', '*.b.example.test', 'A.B.EXAMPLE.TEST.', '*.apps.test', 'api.example.test', ' *.x.test ', '*.example.test']
  const names = ['api.example.test', 'API.EXAMPLE.TEST.', 'x.example.test', 'a.b.example.test', 'z.b.example.test', 'y.z.b.example.test', 'b.example.test',
    'example.test', 'apps.test', 'one.apps.test', 'two.one.apps.test', 'q.x.test', 'x.test', 'other.test', '', '.', 'a..example.test', '*.example.test',
    '10.0.0.1', 'a.example.test..', 'a.example.test:443', 'é.example.test']
  const bad = names.map((n) => check(raw, n)).filter((x) => x !== undefined)
  t.same(bad, [])
})

const label = fc.stringMatching(/^[a-cA-C0-9](?:[a-c0-9-]{0,3}[a-c0-9])?$/)
const tld = fc.constantFrom('test', 'x', 'Ab')
const host = fc.tuple(fc.array(label, { maxLength: 3 }), tld).map(([ls, t]) => [...ls, t].join('.'))
const entry = fc.tuple(fc.boolean(), host, fc.boolean()).map(([w, h, dot]) => `${w ? '*.' : ''}${h}${dot ? '.' : ''}`)

t.test('fast-check: random tables and names over a small alphabet (many collisions)', { skip }, async (t) => {
  fc.assert(fc.property(fc.array(entry, { maxLength: 12 }), fc.oneof(host, host.map((h) => `${h}.`), fc.string({ maxLength: 12 })), (raw, name) => {
    const d = check(raw, name)
    if (d !== undefined) throw new Error(d)
  }), { numRuns: 2000, seed: 0x6b74 })
  t.pass()
})
