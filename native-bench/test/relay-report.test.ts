// --relay's pure parts: its options, its report (medians, the ratios,
// the delay line) and its docs section, which the main generator keeps.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { extractRelaySection, parseRelayOptions, relayReport, RELAY_END, RELAY_START, targetsTable, writeDocs } from '../src/relaybench.js';

t.test('options: defaults, lists, bad values', async (t) => {
  const o = parseRelayOptions(['--relay'], '/docs');
  t.same(o.placements, ['mac', 'shared']);
  t.same(o.delays, [1, 5]);
  t.equal(o.rounds, 3);
  const p = parseRelayOptions(['--relay', '--placements', 'mac', '--delays', '0,5', '--rounds', '1', '--no-docs'], '/docs');
  t.same(p.placements, ['mac']);
  t.same(p.delays, [0, 5]);
  t.equal(p.docsDir, undefined);
  t.throws(() => parseRelayOptions(['--placements', 'linux'], '/d'), { message: /--placements/ });
  t.throws(() => parseRelayOptions(['--rounds', '0'], '/d'), { message: /--rounds/ });
  t.throws(() => parseRelayOptions(['--bogus'], '/d'), { message: /unknown option/ });
  t.equal(o.installed, false, 'this checkout by default');
  t.equal(parseRelayOptions(['--relay', '--installed'], '/d').installed, true);
  t.equal(o.accessLog, false, 'the hosts log warnings only by default');
  t.equal(parseRelayOptions(['--relay', '--access-log'], '/d').accessLog, true);
});

t.test('report: medians per path, the ratios against the targets, the delay line', async (t) => {
  const s = (path: string, workload: string, metrics: Record<string, number>, round = 1) => ({ placement: 'mac', round, path, workload, metrics });
  const samples = [];
  for (const round of [1, 2, 3]) {
    samples.push(
      s('portmap', 'wrk', { rps: 20000 + round }, round), s('portmap', 'connclose', { rps: 5000 }, round), s('portmap', 'ttfb', { p50: 700 }, round), s('portmap', 'bulk', { gbps: 10 }, round),
      s('cpk', 'wrk', { rps: 10000 }, round), s('cpk', 'connclose', { rps: 2500 }, round), s('cpk', 'ttfb', { p50: 1200 }, round), s('cpk', 'bulk', { gbps: 3 }, round),
      s('relay-js', 'wrk', { rps: 12000 }, round), s('relay-js', 'connclose', { rps: 2000 }, round), s('relay-js', 'ttfb', { p50: 1000 }, round), s('relay-js', 'bulk', { gbps: 6 }, round), s('relay-js', 'ttfbkeep', { p50: 500 }, round),
      s('relay-js+fwd0', 'ttfb', { p50: 1100 }, round), s('relay-js+fwd5', 'ttfb', { p50: 1250 }, round),
      s('portmap', 'ttfbpair', { p50: 800 }, round), s('relay-js', 'ttfbpair', { p50: 1280 }, round),
    );
  }
  const md = relayReport({ command: 'npm run bench -- --relay', startedAt: 'now', machine: { loadAvgStart: [1, 1, 1], loadAvgEnd: [1, 1, 1] }, method: parseRelayOptions(['--placements', 'mac'], '/d'), samples, notes: [] });
  t.ok(md.startsWith(RELAY_START) && md.endsWith(RELAY_END));
  t.match(md, /\| portmap \| 20\.00k \| 5\.00k \| 0\.70 \| 0\.80 \| n\/a \| 10\.00 \|/);
  t.match(md, /over cloud-provider-kind's shape: keep-alive 1\.20×, new conn\/s 0\.80×, bulk 2\.00×/);
  t.match(md, /Over port mapping: keep-alive 0\.60× \(≥ 0\.5\), bulk 0\.60× \(≥ 0\.5\), new conn\/s 0\.40× \(≥ 0\.35\), TTFB p50 1\.43× \(≤ 1\.5\), in paired turns 1\.60×/);
  t.match(md, /\+5 ms → 0\.15 ms \(target ≤ 0\.3 ms\)/);
  t.match(md, /already-open relay-js connection 0\.50 ms/);
  // The targets table: each row's ratio and verdict (no +1 ms run here: that row is n/a).
  t.match(md, /\| target \| auto \(the default\) \|/);
  t.match(md, /\| keep-alive ≥ 1\.0× cloud-provider-kind's shape \| \*\*1\.20× \(met\)\*\* \|/);
  t.match(md, /\| new conn\/s ≥ 1\.0× cloud-provider-kind's shape \| 0\.80× \(not met\) \|/);
  t.match(md, /\| TTFB p50 ≤ 1\.5× port mapping \| \*\*1\.43× \(met\)\*\* \|/);
  t.match(md, /A stricter reading, not one of the issue's targets: TTFB p50 in paired turns .* auto \(the default\) 1\.60×\./);
  t.match(md, /\| TTFB p50 behind \+1 \/ \+5 ms connect delay within 0\.3 ms of \+0 \| n\/a \|/);
  t.match(md, /Package: this checkout's build/, 'says which kind-tunnel it measured');
  t.match(md, /Access log: off in the relay hosts/, 'says whether the hosts logged each connection');
  const inst = relayReport({ command: 'npm run bench -- --relay --installed', startedAt: 'now', machine: { loadAvgStart: [1, 1, 1], loadAvgEnd: [1, 1, 1] }, method: parseRelayOptions(['--placements', 'mac', '--installed'], '/d'), samples, notes: [] });
  t.match(inst, /Package: kind-tunnel as a user installs it\. The repository was packed/);
});

t.test('targets table: both transports, the delay row, and a missed TTFB', async (t) => {
  const m: Record<string, number> = {
    'cpk wrk rps': 100, 'cpk connclose rps': 100, 'cpk bulk gbps': 1, 'portmap wrk rps': 200, 'portmap connclose rps': 300, 'portmap bulk gbps': 4, 'portmap ttfb p50': 1000,
    'relay-js wrk rps': 90, 'relay-js connclose rps': 50, 'relay-js bulk gbps': 2, 'relay-js ttfb p50': 1600,
    'relay-mux wrk rps': 110, 'relay-mux connclose rps': 120, 'relay-mux bulk gbps': 0.5, 'relay-mux ttfb p50': 1400,
    'relay-js+fwd0 ttfb p50': 2000, 'relay-js+fwd1 ttfb p50': 2100, 'relay-js+fwd5 ttfb p50': 2400,
  };
  const rows = targetsTable((p, w, k) => m[`${p} ${w} ${k}`] ?? Number.NaN, ['relay-js', 'relay-mux', 'relay-js+fwd0', 'relay-js+fwd1', 'relay-js+fwd5']).join('\n');
  t.match(rows, /\| target \| auto \(the default\) \| mux only \|/);
  t.match(rows, /\| keep-alive ≥ 1\.0× cloud-provider-kind's shape \| 0\.90× \(not met\) \| \*\*1\.10× \(met\)\*\* \|/);
  t.match(rows, /\| TTFB p50 ≤ 1\.5× port mapping \| 1\.60× \(not met\) \| \*\*1\.40× \(met\)\*\* \|/);
  t.match(rows, /within 0\.3 ms of \+0 \| \+0\.10 \/ \+0\.40 ms \(not met\) \| n\/a \|/);
  t.same(targetsTable(() => 1, ['portmap']), [], 'no relay path: no table');
});

t.test('the section replaces itself in place and survives extraction', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kt-relay-report-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const f = join(dir, 'benchmarks.md');
  writeFileSync(f, `# Benchmarks\n\nbefore\n\n${RELAY_START}\nold\n${RELAY_END}\n\nafter\n`);
  writeDocs(f, `${RELAY_START}\nnew\n${RELAY_END}`);
  const text = readFileSync(f, 'utf8');
  t.match(text, /before\n\n<!-- relay:start -->\nnew\n<!-- relay:end -->\n\nafter/);
  t.equal(extractRelaySection(text), `${RELAY_START}\nnew\n${RELAY_END}`);
});
