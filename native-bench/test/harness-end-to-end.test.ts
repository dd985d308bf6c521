// The whole harness, small: real backends, real contenders, two rounds (the
// shuffled order differs between them; a third round only adds load-generator CPU).
// Every child it starts carries a marker in its environment, so the test can
// prove none is left running, after a normal end and after Ctrl-C.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { startHostBackends } from '../src/backends.js';
import { ALL_CONTENDERS, type Ctx } from '../src/contenders.js';
import type { Results } from '../src/defs.js';
import { WRK_SCRIPT } from '../src/parse.js';
import { sleep, start, stop, waitForOutput } from '../src/proc.js';
import { WORKLOADS, type LoadSettings } from '../src/workloads.js';

const runJs = join(dirname(fileURLToPath(import.meta.url)), '../src/run.js');
const missing = ['nginx', 'iperf3', 'wrk', 'socat'].filter((b) => !['/usr/bin', '/usr/sbin', '/bin', '/usr/local/bin'].some((d) => existsSync(join(d, b))));

function marked(marker: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${e}/environ`, 'latin1').includes(marker)) out.push(Number(e));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

async function noneLeft(marker: string): Promise<number[]> {
  let left = marked(marker);
  for (let i = 0; i < 50 && left.length > 0; i++) {
    await sleep(100);
    left = marked(marker);
  }
  return left;
}

t.test('two interleaved rounds produce results and docs, and leave nothing running', { skip: missing.length > 0 ? `missing ${missing.join(', ')}` : false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ktb-e2e-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const marker = `KTB_TEST_MARKER=${randomBytes(8).toString('hex')}`;
  const [k, v] = marker.split('=') as [string, string];
  const out = join(dir, 'results.json');
  const p = start(
    'harness',
    process.execPath,
    [runJs, '--contenders', 'direct,naive-pipe,socat', '--workloads', 'idle,wrk,ttfb', '--rounds', '2', '--duration', '1', '--idle-conns', '40', '--ttfb-samples', '20', '--seed', '5', '--out', out, '--docs-dir', dir],
    { env: { ...process.env, [k]: v } },
  );
  t.teardown(() => stop(p));
  const { code } = await p.exited;
  t.equal(code, 0, p.stderr);
  const r = JSON.parse(readFileSync(out, 'utf8')) as Results;
  t.equal(r.method.rounds, 2);
  t.equal(r.method.seed, 5);
  t.equal(r.method.order.length, 2);
  t.equal(r.samples.length, 2 * 3 * 3, 'rounds × contenders × workloads');
  // On a loaded shared machine a 1 s wrk run behind socat can cross the 1% error threshold;
  // that is the load, not the harness. Nothing else may fail.
  const failed = r.samples.filter((s) => s.error !== undefined);
  t.ok(failed.length <= 1, `at most one run failed: ${JSON.stringify(failed)}`);
  t.same(failed.filter((s) => !/errors in \d+ requests|timed out/.test(s.error ?? '')), [], 'and only from load');
  for (const round of [1, 2]) {
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

const ktMain = join(dirname(fileURLToPath(import.meta.url)), '../../../dist/src/cli/main.js');
const tlsMissing = [...missing, ...(existsSync(ktMain) ? [] : ['kind-tunnel dist/ (npm run build in the root)'])];

t.test('tlsclose: new TLS connections through the SNI-routed listener and the L4 one, no errors, the routing-cost line', { skip: tlsMissing.length > 0 ? `missing ${tlsMissing.join(', ')}` : false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ktb-tls-e2e-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const marker = `KTB_TEST_MARKER=${randomBytes(8).toString('hex')}`;
  const [k, v] = marker.split('=') as [string, string];
  const out = join(dir, 'results.json');
  const p = start(
    'harness',
    process.execPath,
    [runJs, '--contenders', 'kt-l4,kt-routed', '--workloads', 'tlsclose', '--rounds', '2', '--duration', '1', '--seed', '9', '--out', out, '--docs-dir', dir],
    { env: { ...process.env, [k]: v, KT_BIN: `${process.execPath} ${ktMain}`, KT_ARGS: '--access-log=false' } },
  );
  t.teardown(() => stop(p));
  const { code } = await p.exited;
  t.equal(code, 0, p.stderr);
  const r = JSON.parse(readFileSync(out, 'utf8')) as Results;
  t.equal(r.samples.length, 2 * 3, 'rounds × (direct, kt-l4, kt-routed)');
  t.ok(r.method.tls !== undefined && ['localhost', 'bench.localhost'].includes(r.method.tls.serverName), `SNI name recorded: ${r.method.tls?.serverName}`);
  const routed = r.samples.filter((s) => s.contender === 'kt-routed');
  // the routed listener's default route is the plain-HTTP port: a connection that missed
  // its SNI route fails its handshake, and the harness fails that run
  t.same(routed.filter((s) => s.error !== undefined), [], 'every kt-routed run routed every TLS connection by SNI');
  t.ok(routed.every((s) => s.metrics['connectErrors'] === 0 && s.metrics['readErrors'] === 0 && (s.metrics['rps'] ?? 0) > 0), 'wrk: 0 connect and 0 read errors');
  const others = r.samples.filter((s) => s.contender !== 'kt-routed');
  t.same(others.filter((s) => s.error !== undefined && !/errors in \d+ requests|timed out/.test(s.error)), [], 'others fail only from load');
  t.ok(r.samples.filter((s) => s.contender === 'kt-l4' && s.error === undefined).every((s) => (s.metrics['cpuPct'] ?? 0) > 0), 'proxy CPU over the TLS runs');
  const md = readFileSync(join(dir, 'benchmarks.md'), 'utf8');
  t.match(md, /new TLS conn\/s \(conn\/s\)/);
  t.match(md, /\*\*routing cost \(issue #3\)\*\*/);
  t.match(md, /New TLS connections \(`tlsclose`, routed by SNI\): kt-routed ÷ kt-l4 = \*\*\d\.\d\d/);
  t.match(md, /wrk connect \+ read errors through kt-routed: 0\./);
  t.same(await noneLeft(marker), [], 'no process of the run is left');
});

t.test('a TLS connection that misses its SNI route fails its handshake and is counted', { skip: tlsMissing.length > 0 ? `missing ${tlsMissing.join(', ')}` : false }, async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'ktb-misroute-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const b = await startHostBackends(tmp, dirname(runJs));
  t.teardown(() => Promise.all(b.procs.map((x) => stop(x))));
  const routed = ALL_CONTENDERS.find((c) => c.info.id === 'kt-routed')!;
  const ctx: Ctx = {
    tmp,
    buildDir: dirname(runJs),
    proxyCpu: undefined,
    nofile: 4096,
    backends: { ...b.ports, bulk: 0 },
    ktArgv: [process.execPath, ktMain],
    ktExtraArgs: ['--access-log=false'],
    poolSize: 4,
    routeHost: 'bench.localhost',
    // the listener routes only these two names; the load below sends another
    tlsHost: 'bench.localhost',
    docker: undefined,
  };
  const inst = await routed.start('https', ctx);
  t.teardown(() => inst.stop());
  const script = join(tmp, 'percentiles.lua');
  writeFileSync(script, WRK_SCRIPT);
  const tlsclose = WORKLOADS.find((w) => w.id === 'tlsclose')!;
  const settings: LoadSettings = {
    durationS: 1,
    bulkOmitS: 0,
    wrkConnections: 4,
    idleConns: 1,
    ttfbSamples: 1,
    loadCpu: undefined,
    routeHost: 'bench.localhost',
    tlsHost: 'localhost', // resolves, but no route names it: it falls to the plain-HTTP default
    wrkScript: script,
    buildDir: dirname(runJs),
    autocannonBin: undefined,
  };
  await t.rejects(tlsclose.run(inst, settings), /no request \(\d+ connect errors\)/, 'every handshake failed, as connect errors');
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
