import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Results, Sample, WorkloadId } from '../src/defs.js';
import { cell, extractTried, renderMarkdown, renderSvg, TRIED_END, TRIED_START, writeDocs } from '../src/report.js';

// Three rounds; docker-proxy at half of direct, kt-l4 at 0.6 of direct, haproxy failing once.
function fixture(): Results {
  const samples: Sample[] = [];
  const add = (round: number, contender: string, workload: WorkloadId, metrics: Record<string, number>, error?: string): void => {
    samples.push(error === undefined ? { round, contender, workload, metrics } : { round, contender, workload, metrics, error });
  };
  for (const round of [1, 2, 3]) {
    const k = round; // the machine drifts between rounds; ratios within a round do not
    add(round, 'direct', 'bulk1', { gbps: 20 * k });
    add(round, 'docker-proxy', 'bulk1', { gbps: 10 * k, cpuSecPerGB: 0.3 });
    add(round, 'kt-l4', 'bulk1', { gbps: 12 * k, cpuSecPerGB: 0.6 });
    add(round, 'direct', 'wrk', { rps: 90000, p50: 0.3, p99: 1, p999: 2 });
    add(round, 'docker-proxy', 'wrk', { rps: 36000, p50: 1, p99: 5, p999: 8 });
    add(round, 'kt-l4', 'wrk', { rps: 30000, p50: 1.2, p99: 4, p999: 7 });
    add(round, 'direct', 'autocannon', { rps: 20000, p50: 2, p99: 5, p999: 9 });
    add(round, 'direct', 'idle', {});
    if (round === 1) samples.push({ round, contender: 'docker-proxy', workload: 'idle', metrics: { rssPerConnKiB: 14.5, pssPerConnKiB: 14.4 }, note: '1700 of 5000 connections failed' });
    else add(round, 'docker-proxy', 'idle', { rssPerConnKiB: 14.5, pssPerConnKiB: 14.4 });
    add(round, 'kt-l4', 'idle', { rssPerConnKiB: 8, pssPerConnKiB: 7.5 });
    if (round === 2) add(round, 'haproxy', 'wrk', {}, 'wrk: 900 errors in 1000 requests');
    else add(round, 'haproxy', 'wrk', { rps: 45000, p50: 0.8, p99: 2, p999: 3 });
  }
  return {
    schema: 1,
    mode: 'quick',
    command: 'cd native-bench && npm run bench -- --quick',
    startedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: '2026-01-01T00:03:00.000Z',
    machine: {
      cpuModel: 'Test CPU <2.5 GHz> & co',
      cores: 2,
      kernel: '6.0',
      node: 'v20.20.2',
      memoryGiB: 24,
      loadAvgStart: [0.1, 0.2, 0.3],
      loadAvgEnd: [1, 1, 1],
      tools: { wrk: 'wrk 4.1.0', haproxy: 'HAProxy version 2.6.12 | x' },
      kindTunnelCommit: 'abc1234',
    },
    method: {
      rounds: 3,
      durationS: 1,
      bulkOmitS: 0,
      idleConns: 1000,
      ttfbSamples: 200,
      wrkConnections: 50,
      poolSize: 32,
      nofile: 20000,
      pinning: { loadGenerator: 'CPU 0', proxy: 'CPU 1', backend: 'unpinned' },
      seed: 7,
      env: { KT_BIN: 'node /x/main.js' },
      order: [['direct', 'kt-l4'], ['kt-l4', 'direct'], ['direct', 'kt-l4']],
    },
    contenders: [
      { id: 'direct', label: 'direct (no proxy)', family: 'direct', command: 'x', notes: [] },
      { id: 'kt-l4', label: 'kind-tunnel L4', family: 'kind-tunnel', command: '$KT_BIN proxy', notes: ['no peek'] },
      { id: 'docker-proxy', label: 'docker-proxy', family: 'rival', command: 'docker-proxy 3>/dev/null', notes: [] },
      { id: 'haproxy', label: 'HAProxy 2.6 splice-auto', family: 'rival', command: 'haproxy', notes: [] },
      { id: 'socat', label: 'socat', family: 'rival', command: 'socat', notes: [], skipped: 'not installed' },
    ],
    workloads: [
      { id: 'idle', label: 'idle', backend: 'echo', command: 'idle-client' },
      { id: 'bulk1', label: 'bulk', backend: 'bulk', command: 'iperf3 -c 127.0.0.1 -p P' },
      { id: 'wrk', label: 'wrk', backend: 'http', command: "wrk -H 'Host: bench.localhost'" },
      { id: 'autocannon', label: 'ac', backend: 'http', command: 'autocannon' },
    ],
    samples,
    notes: ['a run note'],
  };
}

const bulk = { workload: 'bulk1', metric: 'gbps', title: 'iperf3 1 stream', unit: 'Gbit/s', better: 'higher', digits: 2, headline: true } as const;

t.test('ratios are per round, so drift between rounds cancels', async (t) => {
  const c = cell(fixture(), 'docker-proxy', bulk);
  t.equal(c.value.median, 20);
  t.equal(c.value.min, 10);
  t.equal(c.value.max, 30);
  t.equal(c.vsDirect.median, 0.5);
  t.equal(c.vsDirect.min, 0.5);
  t.equal(c.vsDirect.max, 0.5);
  t.equal(cell(fixture(), 'kt-l4', bulk).vsDocker.median, 1.2);
});

t.test('the markdown has the table, the ratios, the machine, the method and the failures', async (t) => {
  const md = renderMarkdown(fixture(), { resultsFile: 'results/x.json', tried: 'kept: nothing yet' });
  t.match(md, /^# Benchmarks/);
  t.match(md, /Provisional figures/);
  t.match(md, /\| kind-tunnel L4 \| 24\.00 \[12\.00–36\.00\] \| 30\.0k \[30\.0k–30\.0k\] \| n\/a \| 8\.0 \[8\.0–8\.0\] \| 0\.600/, 'kt-l4 row: median [min–max] per headline metric, n/a where not run');
  t.match(md, /\| kind-tunnel L4 \|[^\n]*0\.60× \/ 1\.20×/, 'bulk ratio to direct and to docker-proxy');
  t.match(md, /0\.83×/, 'wrk ratio of kt-l4 to docker-proxy');
  t.match(md, /autocannon itself is the bottleneck/, 'autocannon at 22% of wrk on direct is called out');
  t.match(md, /HAProxy 2\.6 splice-auto, HTTP keep-alive \(wrk\): wrk: 900 errors in 1000 requests \(1 of 3 rounds\)/);
  t.match(md, /\*\*skipped\*\*: not installed/);
  t.match(md, /docker-proxy, Memory per idle connection: 1700 of 5000 connections failed \(1 of 3 rounds; counted\)/, 'a caveat is listed and the figure still counts');
  t.match(md, /\| docker-proxy \|[^\n]*\| 14\.5 \[14\.5–14\.5\] \|/);
  t.match(md, /HAProxy version 2\.6\.12 \\\| x/, 'pipes in cells are escaped');
  t.match(md, /round 1: direct, kt-l4; round 2: kt-l4, direct/);
  t.match(md, /generated from `cd native-bench && KT_BIN="node \/x\/main\.js" npm run bench -- --quick`/, 'the exact command, with its KT_ environment');
  t.ok(md.includes(`${TRIED_START}\nkept: nothing yet\n${TRIED_END}`));
  t.notMatch(md, /\| socat \|/, 'a skipped contender has no result row');
});

t.test('"What was tried" survives regeneration; a missing section gets the placeholder', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ktb-docs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeDocs(fixture(), dir, '/somewhere/results/a.json');
  const first = readFileSync(join(dir, 'benchmarks.md'), 'utf8');
  t.match(first, /The lead fills this in/);
  const edited = first.replace(/(what-was-tried:start -->\n)[\s\S]*?(\n<!-- what-was-tried:end)/, '$1- splice addon: bulk 1.15× docker-proxy, kept\n- cluster × 2: no gain$2');
  writeFileSync(join(dir, 'benchmarks.md'), edited);
  writeDocs(fixture(), dir, '/somewhere/results/b.json');
  const second = readFileSync(join(dir, 'benchmarks.md'), 'utf8');
  t.match(second, /- splice addon: bulk 1\.15× docker-proxy, kept\n- cluster × 2: no gain/);
  t.match(second, /results\/b\.json/);
  t.equal(extractTried('no markers here'), extractTried(undefined));
});

t.test('the SVG is one well-formed document with escaped text and a bar per contender', async (t) => {
  const svg = renderSvg(fixture());
  t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  t.match(svg, /<\/svg>\n$/);
  t.match(svg, /Test CPU &lt;2\.5 GHz&gt; &amp; co/);
  t.notMatch(svg, /<2\.5/);
  const opens = (svg.match(/<g /g) ?? []).length;
  t.equal(opens, (svg.match(/<\/g>/g) ?? []).length, 'every group is closed');
  t.ok(opens >= 4, 'one panel per headline metric measured');
  t.match(svg, /1\.20×/, 'kt-l4 bulk labelled with its ratio to docker-proxy');
  t.match(svg, /no proxy/, 'direct has no memory figure, and says why');
  t.match(svg, /stroke-dasharray/, 'the reference line at 1');
});
