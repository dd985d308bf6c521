// The --slowpath mode, small: one round, a few samples, real nginx, real
// kind-tunnel processes, the real slow forwarder and relay. It must produce
// finite figures, show the pool's effect, write its section, and keep it when
// the main generator rewrites benchmarks.md.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { start, stop } from '../src/proc.js';
import { SLOW_END, SLOW_START, extractSlowSection, type SlowResults } from '../src/slowpath.js';

const here = dirname(fileURLToPath(import.meta.url));
const runJs = join(here, '../src/run.js');
const repoDist = join(here, '../../../dist');
const missing = ['nginx', 'wrk'].filter((b) => !['/usr/bin', '/usr/sbin', '/bin', '/usr/local/bin'].some((d) => existsSync(join(d, b))));
if (!existsSync(join(repoDist, 'src/cli/main.js')) || !existsSync(join(repoDist, 'test/support/slow-forwarder.js'))) missing.push('the root build (npm run build in the repo root)');

t.test('--slowpath with tiny budgets produces numbers and its docs section', { skip: missing.length > 0 ? `missing ${missing.join(', ')}` : false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ktb-slow-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'benchmarks.md'), '# Benchmarks\n\nearlier text\n');
  const out = join(dir, 'slow.json');
  const p = start('slowpath', process.execPath, [runJs, '--slowpath', '--rounds', '1', '--ttfb-samples', '15', '--duration', '1', '--relay-samples', '15', '--delay', '20', '--seed', '3', '--out', out, '--docs-dir', dir]);
  t.teardown(() => stop(p));
  const { code } = await p.exited;
  t.equal(code, 0, p.stderr);
  const r = JSON.parse(readFileSync(out, 'utf8')) as SlowResults;
  t.equal(r.mode, 'slowpath');
  t.same(r.method.order[0]?.slice().sort(), ['fwd-direct', 'kt-pool0', 'kt-pool8']);
  const get = (c: string): Record<string, number> => r.samples.find((s) => s.contender === c && s.error === undefined)?.metrics ?? {};
  for (const c of ['fwd-direct', 'kt-pool0', 'kt-pool8']) {
    const m = get(c);
    t.ok(Number.isFinite(m['ttfbP50']) && m['ttfbP50']! > 0, `${c}: TTFB p50 ${m['ttfbP50']} µs`);
    t.ok(Number.isFinite(m['rps']) && m['rps']! > 0, `${c}: ${m['rps']} conn/s`);
  }
  // 20 ms onward delay: unpooled pays it on every connection, a refilled pool does not
  t.ok(get('kt-pool0')['ttfbP50']! >= 20_000, 'the unpooled proxy waits for the slow connect');
  t.ok(get('kt-pool8')['ttfbP50']! < get('kt-pool0')['ttfbP50']!, 'the warm pool skips it');
  const relayNote = r.notes.find((n) => n.startsWith('relay not measured'));
  if (relayNote === undefined) {
    t.ok(get('relay-pool0')['ttfbP50']! >= 20_000, 'unpooled relay dial waits for the slow forwarder');
    t.ok(get('relay-pool4')['ttfbP50']! < get('relay-pool0')['ttfbP50']!, 'pooled relay dial does not');
    t.ok((get('relay-pool4')['poolHits'] ?? 0) > 0, 'pool hits counted');
  } else {
    t.comment(relayNote);
  }
  const md = readFileSync(join(dir, 'benchmarks.md'), 'utf8');
  t.match(md, /earlier text/, 'the rest of the file is kept');
  t.match(md, /## Slow connect path/);
  t.match(md, /npm run bench -- --slowpath/);
  t.ok(md.includes(SLOW_START) && md.includes(SLOW_END));
  t.equal(extractSlowSection(md)?.startsWith(SLOW_START), true);
});
