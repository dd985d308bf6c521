// The whole harness, small, over TLS: new TLS connections through kind-tunnel's
// SNI-routed and L4 listeners (split from harness-end-to-end so the two run side by side).
// Every child it starts carries a marker in its environment, so the test can
// prove none is left running, after a normal end and after Ctrl-C.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { startHostBackends } from '../src/backends.js';
import { ALL_CONTENDERS, type Ctx } from '../src/contenders.js';
import type { Results } from '../src/defs.js';
import { WRK_SCRIPT } from '../src/parse.js';
import { noneLeft, start, stop } from '../src/proc.js';
import { WORKLOADS, type LoadSettings } from '../src/workloads.js';

const runJs = join(dirname(fileURLToPath(import.meta.url)), '../src/run.js');
const missing = ['nginx', 'iperf3', 'wrk', 'socat'].filter((b) => !['/usr/bin', '/usr/sbin', '/bin', '/usr/local/bin'].some((d) => existsSync(join(d, b))));

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
    [runJs, '--contenders', 'kt-l4,kt-routed', '--workloads', 'tlsclose', '--duration', '1', '--seed', '9', '--out', out, '--docs-dir', dir],
    { env: { ...process.env, [k]: v, KT_BIN: `${process.execPath} ${ktMain}`, KT_ARGS: '--access-log=false' } },
  );
  t.teardown(() => stop(p));
  const { code } = await p.exited;
  t.equal(code, 0, p.stderr);
  const r = JSON.parse(readFileSync(out, 'utf8')) as Results;
  t.equal(r.samples.length, 3 * 3, 'rounds × (direct, kt-l4, kt-routed)');
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

