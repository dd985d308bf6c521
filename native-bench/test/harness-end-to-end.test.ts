// The whole harness, small: real backends, real contenders, three rounds.
// Every child it starts carries a marker in its environment, so the test can
// prove none is left running, after a normal end and after Ctrl-C.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import type { Results } from '../src/defs.js';
import { marked, noneLeft, sleep, start, stop, waitForOutput } from '../src/proc.js';

const runJs = join(dirname(fileURLToPath(import.meta.url)), '../src/run.js');
const missing = ['nginx', 'iperf3', 'wrk', 'socat'].filter((b) => !['/usr/bin', '/usr/sbin', '/bin', '/usr/local/bin'].some((d) => existsSync(join(d, b))));

t.test('three interleaved rounds produce results and docs, and leave nothing running', { skip: missing.length > 0 ? `missing ${missing.join(', ')}` : false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ktb-e2e-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const marker = `KTB_TEST_MARKER=${randomBytes(8).toString('hex')}`;
  const [k, v] = marker.split('=') as [string, string];
  const out = join(dir, 'results.json');
  const p = start(
    'harness',
    process.execPath,
    [runJs, '--contenders', 'direct,naive-pipe,socat', '--workloads', 'idle,wrk,ttfb', '--duration', '1', '--idle-conns', '40', '--ttfb-samples', '20', '--seed', '5', '--out', out, '--docs-dir', dir],
    { env: { ...process.env, [k]: v } },
  );
  t.teardown(() => stop(p));
  const { code } = await p.exited;
  t.equal(code, 0, p.stderr);
  const r = JSON.parse(readFileSync(out, 'utf8')) as Results;
  t.equal(r.method.rounds, 3);
  t.equal(r.method.seed, 5);
  t.equal(r.method.order.length, 3);
  t.equal(r.samples.length, 3 * 3 * 3, 'rounds × contenders × workloads');
  // On a loaded shared machine a 1 s wrk run behind socat can cross the 1% error threshold;
  // that is the load, not the harness. Nothing else may fail.
  const failed = r.samples.filter((s) => s.error !== undefined);
  t.ok(failed.length <= 1, `at most one run failed: ${JSON.stringify(failed)}`);
  t.same(failed.filter((s) => !/errors in \d+ requests|timed out/.test(s.error ?? '')), [], 'and only from load');
  for (const round of [1, 2, 3]) {
    const wrkOrder = r.samples.filter((s) => s.round === round && s.workload === 'wrk').map((s) => s.contender);
    t.same(wrkOrder, r.method.order[round - 1], `round ${round} follows its shuffled order`);
  }
  const naiveIdle = r.samples.filter((s) => s.contender === 'naive-pipe' && s.workload === 'idle').map((s) => s.metrics['rssPerConnKiB'] ?? Number.NaN);
  t.ok(naiveIdle.some((v) => v > 0), `the proxy grew per idle connection: ${naiveIdle.join(', ')} KiB`);
  t.ok((r.samples.find((s) => s.contender === 'socat' && s.workload === 'idle')?.metrics['processes'] ?? 0) > 40, 'socat: one process per connection, all counted');
  t.ok(r.samples.filter((s) => s.workload === 'wrk' && s.error === undefined).every((s) => (s.metrics['rps'] ?? 0) > 0));
  t.equal(r.method.placement, 'pinned', 'pinned unless asked otherwise');
  const wrkCpu = r.samples.filter((s) => s.workload === 'wrk' && s.error === undefined && s.contender !== 'direct').map((s) => s.metrics['cpuPct'] ?? Number.NaN);
  // A figure for every run; /proc counts in 10 ms ticks, so a 1 s run of an
    // idle-ish forking proxy (socat's children) can honestly read 0.
    t.ok(wrkCpu.length > 0 && wrkCpu.every((v) => Number.isFinite(v) && v >= 0) && wrkCpu.some((v) => v > 0), `proxy CPU over each wrk run: ${wrkCpu.map((v) => v.toFixed(0)).join(', ')} %`);
  t.ok(r.samples.filter((s) => s.contender === 'direct').every((s) => s.metrics['cpuPct'] === undefined), 'no proxy, no CPU figure');
  const md = readFileSync(join(dir, 'benchmarks.md'), 'utf8');
  t.match(md, /\| Node a\.pipe\(b\)\.pipe\(a\) \|/);
  t.match(readFileSync(join(dir, 'benchmarks.svg'), 'utf8'), /<\/svg>/);
  t.same(await noneLeft(marker), [], 'no process of the run is left');
});

t.test('Ctrl-C in the middle of a run stops every contender and load generator', { skip: missing.length > 0 ? `missing ${missing.join(', ')}` : false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ktb-int-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const marker = `KTB_TEST_MARKER=${randomBytes(8).toString('hex')}`;
  const [k, v] = marker.split('=') as [string, string];
  const p = start(
    'harness',
    process.execPath,
    [runJs, '--contenders', 'direct,socat,naive-pipe', '--workloads', 'wrk', '--duration', '30', '--out', join(dir, 'r.json'), '--no-docs'],
    { env: { ...process.env, [k]: v } },
  );
  t.teardown(() => stop(p));
  await waitForOutput(p, /^round 1\/3/m, 20_000);
  await sleep(1500); // a wrk run is under way now
  t.ok(marked(marker).length >= 4, 'backends, contenders and wrk are running');
  process.kill(p.pid, 'SIGINT');
  const { code } = await p.exited;
  t.equal(code, 130);
  t.same(await noneLeft(marker), [], 'no process of the run is left');
  t.notOk(existsSync(join(dir, 'r.json')), 'no results from an interrupted run');
});
