// Table tests for hostname normalisation and the HostMatcher rules:
// exact > longest wildcard suffix; `*.x` matches one or more labels, never `x`.
import t from 'tap'
import { HostMatcher, normalizeHostname } from '../../src/routing/hostmatch.js'

t.test('normalizeHostname', async (t) => {
  const table: Array<[string, string | undefined]> = [
    ['example.test', 'example.test'],
    ['EXAMPLE.Test', 'example.test'],
    ['example.test.', 'example.test'],
    ['example.test..', undefined],
    ['.example.test', undefined],
    ['a..b', undefined],
    ['.', undefined],
    ['', undefined],
    ['localhost', 'localhost'],
    ['LOCALHOST.', 'localhost'],
    ['under_score.test', 'under_score.test'],
    ['xn--bcher-kva.test', 'xn--bcher-kva.test'],
    ['bücher.test', undefined],
    ['a b.test', undefined],
    ['a/b.test', undefined],
    ['*.test', undefined],
    ['a.test:443', undefined],
    ['127.0.0.1', undefined],
    ['127.0.0.1.', undefined],
    ['127.1', undefined],
    ['1.2.3.0x10', undefined],
    ['0x7f000001', undefined],
    ['1e100.test', '1e100.test'],
    ['123.test', '123.test'],
    ['test.123a', 'test.123a'],
    ['::1', undefined],
    ['[::1]', undefined],
    ['fe80::1%lo', undefined],
    [`${'a'.repeat(63)}.test`, `${'a'.repeat(63)}.test`],
    [`${'a'.repeat(64)}.test`, undefined],
    [`${'a.'.repeat(126)}b`, `${'a.'.repeat(126)}b`], // 253 characters
    [`${'a.'.repeat(126)}bc`, undefined], // 254
    [`${'a.'.repeat(126)}b.`, `${'a.'.repeat(126)}b`], // 253 + the root dot
  ]
  for (const [raw, want] of table) t.equal(normalizeHostname(raw), want, JSON.stringify(raw.length > 40 ? `${raw.slice(0, 20)}…(${raw.length})` : raw))
})

t.test('exact beats wildcard; longest wildcard suffix wins', async (t) => {
  const m = new HostMatcher<string>([
    ['*.example.test', 'wild'],
    ['api.example.test', 'exact'],
    ['*.eu.example.test', 'wild-eu'],
    ['*.test', 'tld'],
    ['EXACT.Upper.Test.', 'upper'],
  ])
  const table: Array<[string, string | undefined]> = [
    ['api.example.test', 'exact'],
    ['API.EXAMPLE.TEST.', 'exact'],
    ['web.example.test', 'wild'],
    ['a.b.example.test', 'wild'],
    ['web.eu.example.test', 'wild-eu'],
    ['a.b.eu.example.test', 'wild-eu'],
    ['eu.example.test', 'wild'],
    ['example.test', 'tld'],
    ['other.test', 'tld'],
    ['test', undefined],
    ['exact.upper.test', 'upper'],
    ['example.org', undefined],
    ['xexample.test', 'tld'],
    ['', undefined],
    ['*.example.test', undefined],
    ['10.0.0.1', undefined],
  ]
  for (const [name, want] of table) t.equal(m.match(name), want, JSON.stringify(name))
})

t.test('*.x.test matches one or more labels but not x.test', async (t) => {
  const m = new HostMatcher([['*.x.test', 1]])
  t.equal(m.match('a.x.test'), 1)
  t.equal(m.match('a.b.x.test'), 1)
  t.equal(m.match('a.b.c.d.x.test'), 1)
  t.equal(m.match('x.test'), undefined)
  t.equal(m.match('ax.test'), undefined)
  t.equal(m.match('x.test.other'), undefined)
})

t.test('an exact entry for the bare suffix is separate from the wildcard', async (t) => {
  const m = new HostMatcher([['*.x.test', 'wild'], ['x.test', 'apex']])
  t.equal(m.match('x.test'), 'apex')
  t.equal(m.match('www.x.test'), 'wild')
})

t.test('wildcards on one label (the *.localhost scheme)', async (t) => {
  const m = new HostMatcher([['*.localhost', 'any'], ['web.default.localhost', 'web']])
  t.equal(m.match('web.default.localhost'), 'web')
  t.equal(m.match('api.default.localhost'), 'any')
  t.equal(m.match('localhost'), undefined)
})

t.test('duplicates: the first entry wins and the name is reported', async (t) => {
  const m = new HostMatcher([['a.test', 1], ['A.TEST.', 2], ['*.b.test', 3], ['*.B.test', 4]])
  t.equal(m.match('a.test'), 1)
  t.equal(m.match('x.b.test'), 3)
  t.same(m.duplicates, ['a.test', '*.b.test'])
  t.equal(m.size, 2)
})

t.test('invalid entry names throw KT_ERR_INVALID_ROUTE', async (t) => {
  for (const bad of ['', '*', '*.', 'a.*.test', '**.test', 'a b', '10.0.0.1', '*.10.0.0.1', '[::1]', 'a..test']) {
    t.throws(() => new HostMatcher([[bad, 1]]), { code: 'KT_ERR_INVALID_ROUTE' }, JSON.stringify(bad))
  }
})

t.test('an empty matcher matches nothing', async (t) => {
  const m = new HostMatcher<number>([])
  t.equal(m.match('a.test'), undefined)
  t.equal(m.size, 0)
})
