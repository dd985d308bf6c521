// The --placement shared run and the main (pinned) run write one page between
// them: each keeps what the other wrote, byte for byte.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Placement, Results, Sample } from '../src/defs.js';
import { extractSharedSection, placeSharedSection, renderMarkdown, renderSharedSection, SHARED_END, SHARED_START, TRIED_END, TRIED_START, writeDocs } from '../src/report.js';
import { SLOW_END, SLOW_START } from '../src/slowpath.js';

function fixture(placement: Placement, scale: number): Results {
  const samples: Sample[] = [];
  for (const round of [1, 2, 3]) {
    samples.push({ round, contender: 'direct', workload: 'wrk', metrics: { rps: 100_000 * scale, p50: 0.3, p99: 1, p999: 2 } });
    samples.push({ round, contender: 'docker-proxy', workload: 'wrk', metrics: { rps: 80_000 * scale, p50: 0.5, p99: 2, p999: 3, cpuPct: 100 } });
    samples.push({ round, contender: 'kt-l4', workload: 'wrk', metrics: { rps: (100_000 + 10_000 * round) * scale, p50: 0.4, p99: 1.5, p999: 2.5, cpuPct: 60 + round } });
    samples.push({ round, contender: 'direct', workload: 'connclose', metrics: { rps: 20_000, p50: 1, p99: 3, p999: 5 } });
    samples.push({ round, contender: 'docker-proxy', workload: 'connclose', metrics: { rps: 8000, p50: 3, p99: 9, p999: 12, cpuPct: 95 } });
    if (round === 2) samples.push({ round, contender: 'kt-l4', workload: 'connclose', metrics: {}, error: 'wrk: 900 errors in 1000 requests' });
    else samples.push({ round, contender: 'kt-l4', workload: 'connclose', metrics: { rps: 10_000, p50: 2, p99: 6, p999: 9, cpuPct: 80 } });
  }
  const shared = placement === 'shared';
  return {
    schema: 1,
    mode: 'custom',
    command: `cd native-bench && npm run bench -- ${shared ? '--placement shared ' : ''}--rounds 3 --duration 3`,
    startedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: '2026-01-01T00:02:00.000Z',
    machine: { cpuModel: 'Test CPU', cores: 2, kernel: '6.0', node: 'v20.20.2', memoryGiB: 8, loadAvgStart: [0.5, 0.5, 0.5], loadAvgEnd: [2, 1, 1], tools: {}, kindTunnelCommit: 'abc1234' },
    method: {
      rounds: 3,
      durationS: 3,
      bulkOmitS: 1,
      idleConns: 5000,
      ttfbSamples: 2000,
      wrkConnections: 50,
      poolSize: 32,
      nofile: 20000,
      placement,
      pinning: shared ? { loadGenerator: 'unpinned', proxy: 'unpinned', backend: 'unpinned' } : { loadGenerator: 'CPU 0', proxy: 'CPU 1', backend: 'unpinned' },
      seed: 11,
      order: [['direct', 'kt-l4', 'docker-proxy'], ['kt-l4', 'docker-proxy', 'direct'], ['docker-proxy', 'direct', 'kt-l4']],
      env: { KT_NATIVE_ADDON: '/tmp/x.node' },
    },
    contenders: [
      { id: 'direct', label: 'direct (no proxy)', family: 'direct', command: 'x', notes: [] },
      { id: 'kt-l4', label: 'kind-tunnel L4', family: 'kind-tunnel', command: '$KT_BIN proxy', notes: [] },
      { id: 'docker-proxy', label: 'docker-proxy', family: 'rival', command: 'docker-proxy', notes: [] },
      { id: 'haproxy', label: 'HAProxy 2.6 splice-auto', family: 'rival', command: 'haproxy', notes: [], skipped: 'haproxy is not installed' },
    ],
    workloads: [
      { id: 'wrk', label: 'wrk', backend: 'http', command: 'wrk -t1 -c50 -d3s http://127.0.0.1:P/' },
      { id: 'connclose', label: 'close', backend: 'http', command: "wrk -t1 -c50 -d3s -H 'Connection: close' http://127.0.0.1:P/" },
    ],
    samples,
    notes: [],
  };
}

const SLOW = `${SLOW_START}\n## Slow connect path\n\nkept slow figures 21.12 ms\n${SLOW_END}`;
const TRIED = '- splice addon: kept\n- cluster × 2: no gain';

/** A page as the main run, the lead's edit and a --slowpath run leave it. */
function pageWithMainTriedAndSlow(dir: string): string {
  writeDocs(fixture('pinned', 1), dir, '/x/results/main-1.json');
  const md = join(dir, 'benchmarks.md');
  const edited = readFileSync(md, 'utf8').replace(/(what-was-tried:start -->\n)[\s\S]*?(\n<!-- what-was-tried:end)/, `$1${TRIED}$2`);
  writeFileSync(md, `${edited.replace(/\n*$/, '')}\n\n${SLOW}\n`);
  return readFileSync(md, 'utf8');
}

function without(page: string, section: string): string {
  const a = page.indexOf(section);
  return page.slice(0, a) + page.slice(a + section.length);
}

t.test('the section has the command, the machine, values with [min–max], ratios and proxy CPU', async (t) => {
  const s = renderSharedSection(fixture('shared', 1), 'results/s.json');
  t.ok(s.startsWith(`${SHARED_START}\n## Shared CPUs (nothing pinned)`));
  t.ok(s.endsWith(SHARED_END));
  t.match(s, /```sh\ncd native-bench && KT_NATIVE_ADDON="\/tmp\/x\.node" npm run bench -- --placement shared --rounds 3 --duration 3\n```/, 'the exact command with its KT_ environment');
  t.match(s, /- machine: Test CPU, 2 cores, Linux 6\.0, Node v20\.20\.2; kind-tunnel commit abc1234; load 0\.5 0\.5 0\.5 at the start, 2 1 1 at the end/);
  t.match(s, /\| contender \| wrk keep-alive \(req\/s\) \| wrk p99 \(ms\) \| proxy CPU, keep-alive \(% of a core\) \| new conn\/s \(conn\/s\) \| proxy CPU, new conns \(% of a core\) \|/);
  t.match(s, /\| kind-tunnel L4 \| 120\.0k \[110\.0k–130\.0k\] \| 1\.50 \[1\.50–1\.50\] \| 62 \[61–63\] \| 10\.0k \[10\.0k–10\.0k\] \| 80 \[80–80\] \|/);
  t.match(s, /\| direct \(no proxy\) \| 100\.0k \[100\.0k–100\.0k\] \| 1\.00 \[1\.00–1\.00\] \| n\/a \|/, 'direct has no proxy CPU');
  t.match(s, /\| kind-tunnel L4 \| 1\.20× \/ 1\.50× \| 1\.50× \/ 0\.75× \| – \/ 0\.62× \| 0\.50× \/ 1\.25× \|/, 'per-round ratios to direct and to docker-proxy');
  t.match(s, /\*\*Placement: shared\*\*[^\n]*Nothing pinned[^\n]*HAProxy \(`nbthread 1`\) and nginx \(one worker\) are single-threaded by their own config/);
  t.match(s, /kind-tunnel L4, New connections \(wrk, Connection: close\): wrk: 900 errors in 1000 requests \(1 of 3 rounds\)/);
  t.match(s, /HAProxy 2\.6 splice-auto: \*\*skipped\*\*: haproxy is not installed/);
  t.notMatch(s, /\| HAProxy/, 'a skipped contender has no row');
  for (const marker of [TRIED_START, TRIED_END, SLOW_START, SLOW_END]) t.notOk(s.includes(marker), `no ${marker} inside`);
});

t.test('the main report gains the keep-alive proxy CPU column and says its placement', async (t) => {
  const md = renderMarkdown(fixture('pinned', 1), { resultsFile: 'results/m.json', tried: 'x' });
  t.match(md, /## Latency and the rest\n\nMedians over rounds\.\n\n\| contender \| wrk p50 \(ms\) \| wrk p99 \(ms\) \| wrk p99\.9 \(ms\) \| proxy CPU, keep-alive \(% of a core\) \|/);
  t.match(md, /\| kind-tunnel L4 \| 0\.40 \| 1\.50 \| 2\.50 \| 62 \|/);
  t.match(md, /\*\*Placement: pinned\*\*\. Load generator on CPU 0, proxy on CPU 1 \(`taskset`\), backends unpinned/);
  t.notMatch(md, /shared:start/, 'the main report itself has no shared section');
  const old = fixture('pinned', 1);
  delete old.method.placement;
  t.match(renderMarkdown(old, { resultsFile: 'results/old.json', tried: 'x' }), /\*\*Placement: pinned\*\*/, 'results from before the option read as pinned');
});

t.test('a shared run keeps the main report, "What was tried", the slow-path section and the SVG', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ktb-shared-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const before = pageWithMainTriedAndSlow(dir);
  const svgBefore = readFileSync(join(dir, 'benchmarks.svg'), 'utf8');
  const written = writeDocs(fixture('shared', 1), dir, '/x/results/shared-1.json');
  t.same(written, [join(dir, 'benchmarks.md')], 'only the page is written');
  const after = readFileSync(join(dir, 'benchmarks.md'), 'utf8');
  const section = extractSharedSection(after);
  t.ok(section !== undefined, 'the section is in');
  t.match(section!, /results\/shared-1\.json/);
  t.equal(without(after, `${section!}\n\n`), before, 'everything else is byte for byte what it was');
  t.ok(after.indexOf(TRIED_END) < after.indexOf(SHARED_START) && after.indexOf(SHARED_END) < after.indexOf(SLOW_START), 'placed after "What was tried", before the slow path');
  t.equal(readFileSync(join(dir, 'benchmarks.svg'), 'utf8'), svgBefore, 'the chart of the main run is untouched');

  // a second shared run replaces its section in place, and only it
  writeDocs(fixture('shared', 2), dir, '/x/results/shared-2.json');
  const again = readFileSync(join(dir, 'benchmarks.md'), 'utf8');
  t.equal(again.split(SHARED_START).length, 2, 'still one section');
  const section2 = extractSharedSection(again)!;
  t.match(section2, /results\/shared-2\.json/);
  t.match(section2, /240\.0k/, 'the new figures');
  t.equal(without(again, `${section2}\n\n`), before);
});

t.test('a main run keeps the shared section as it is, with "What was tried" and the slow path', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ktb-shared-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  pageWithMainTriedAndSlow(dir);
  writeDocs(fixture('shared', 1), dir, '/x/results/shared-1.json');
  const shared = extractSharedSection(readFileSync(join(dir, 'benchmarks.md'), 'utf8'))!;
  writeDocs(fixture('pinned', 3), dir, '/x/results/main-2.json');
  const after = readFileSync(join(dir, 'benchmarks.md'), 'utf8');
  t.equal(extractSharedSection(after), shared, 'the shared section, byte for byte');
  t.ok(after.includes(`${TRIED_START}\n${TRIED}\n${TRIED_END}`), '"What was tried" kept');
  t.ok(after.includes(SLOW), 'the slow-path section kept');
  t.match(after, /results\/main-2\.json/, 'the main report is the new run');
  t.match(after, /360\.0k/, 'with the new figures');
  t.ok(after.indexOf(TRIED_END) < after.indexOf(SHARED_START) && after.indexOf(SHARED_END) < after.indexOf(SLOW_START), 'main, shared, slow path, in that order');
  t.ok(after.endsWith(`${SLOW_END}\n`));
  writeDocs(fixture('pinned', 3), dir, '/x/results/main-2.json');
  t.equal(readFileSync(join(dir, 'benchmarks.md'), 'utf8'), after, 'regenerating is stable');
});

t.test('placing the section: into a missing page, at the end, and with $ patterns in it', async (t) => {
  const sec = `${SHARED_START}\ncost $& and $' and $1\n${SHARED_END}`;
  t.equal(placeSharedSection(undefined, sec), `# Benchmarks\n\n${sec}\n`);
  t.equal(placeSharedSection('# Benchmarks\n\ntext\n\n\n', sec), `# Benchmarks\n\ntext\n\n${sec}\n`, 'appended when there is no slow path');
  const page = `# B\n\n${SHARED_START}\nold\n${SHARED_END}\n\ntail\n`;
  t.equal(placeSharedSection(page, sec), `# B\n\n${sec}\n\ntail\n`, 'replaced literally: $ patterns are not expanded');
  t.equal(extractSharedSection(`${SHARED_END} ${SHARED_START}`), undefined, 'markers out of order are no section');
});
