// Relay mode, A/B and CPU per process (issue 12): the kind-like cluster of
// `--relay`, cloud-provider-kind's shape, port mapping, and one relay-js host
// (KT_NATIVE=0) per variant, each variant a built checkout (its dist/). Mac-like
// placement (CPU 0 host and load, CPU 1 the Docker VM). Interleaved rounds of
// wrk keep-alive and Connection: close; for each run, the CPU seconds each
// process group spent per request (ms).
// `--local-relay` runs the relay on the host instead (CPU 1, --log-level warn, KT_RELAY_NATIVE=0
// for its JS splice), so `--prof` profiles it too. Each REPO_DIR needs dist/ and node_modules/.
// `--paired-ttfb N` adds, each round, N turns of fresh connections alternating
// between the variants' hosts (ttfb-pair.ts): p50 each and the median paired
// difference from the first variant, steadier than separate runs on a shared machine.
// A variant may name the host's relay transport: NAME=REPO_DIR@mux or @pool (relay-host --transport; default auto).
// Usage: npm run bench:relay-ab -- [--rounds N] [--duration S] [--bulk] [--prof DIR] [--local-relay] [--paired-ttfb N] NAME=REPO_DIR[@TRANSPORT]...
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadavg } from 'node:os';
import { parseIperf, parseTtfb, parseWrk, WRK_SCRIPT } from './parse.js';
import { cpuSeconds, findProcesses, freePort, offCleanup, processTree, run, start, stop, waitForOutput, type Proc } from './proc.js';
import { benchImagesAndCluster, pin, procTree, waitHttp } from './relaybench.js';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname } from 'node:path';

const execFileP = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const repoDir = join(here, '..', '..', '..');

const args = process.argv.slice(2);
let rounds = 3;
let durationS = 2;
let bulk = false;
let prof: string | undefined;
let localRelay = false;
let pairedTtfb = 0;
const variants: Array<{ name: string; repo: string; transport: string }> = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (a === '--rounds') rounds = Number(args[++i]);
  else if (a === '--duration') durationS = Number(args[++i]);
  else if (a === '--bulk') bulk = true;
  else if (a === '--prof') prof = args[++i];
  else if (a === '--local-relay') localRelay = true;
  else if (a === '--paired-ttfb') pairedTtfb = Number(args[++i]);
  else { const [n, rt] = a.split('='); const [r, t] = rt!.split('@'); variants.push({ name: n!, repo: r!, transport: t ?? 'auto' }); }
}

/** Per CPU, jiffies busy and in all (/proc/stat). */
function cpuBusy (): Array<{ busy: number, total: number }> {
  return readFileSync('/proc/stat', 'utf8').split('\n').filter((l) => /^cpu\d+ /.test(l)).map((l) => {
    const f = l.split(/\s+/).slice(1).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    return { busy: total - idle, total };
  });
}

const docker = async (a: string[]): Promise<string> => (await execFileP('docker', a, { timeout: 60_000 })).stdout.trim();
const containerPids = async (name: string): Promise<number[]> => processTree(Number(await docker(['inspect', '-f', '{{.State.Pid}}', name])));

const load0 = loadavg();
const { base, cl } = await benchImagesAndCluster(repoDir);
const procs: Proc[] = [];
try {
  const cpkHttp = await freePort();
  const cpkBulk = await freePort();
  const tunnel = (hp: number, target: number): Proc => start(`cpk-${hp}`, '/usr/sbin/docker-proxy', ['-proto', 'tcp', '-host-ip', '127.0.0.1', '-host-port', String(hp), '-container-ip', '127.0.0.1', '-container-port', String(target)], { fd3DevNull: true });
  const t1 = tunnel(cpkHttp, cl.haproxy.http);
  const t2 = tunnel(cpkBulk, cl.haproxy.bulk);
  procs.push(t1, t2);
  await waitHttp('127.0.0.1', cpkHttp, 10_000);
  interface P { id: string; http: number; bulk: number; host: number[]; vm: () => Promise<Record<string, number[]>> }
  const relayName = `kind-tunnel-relay-${cl.name}`;
  const paths: P[] = [
    { id: 'portmap', http: cl.portmap.http, bulk: cl.portmap.bulk, host: [], vm: async () => ({ 'docker-proxy': findProcesses(['-host-port', String(cl.portmap.http)]), node: await containerPids(cl.node.name) }) },
    { id: 'cpk', http: cpkHttp, bulk: cpkBulk, host: [t1.pid, t2.pid], vm: async () => ({ 'docker-proxy': findProcesses(['-host-port', String(cl.haproxy.http)]), haproxy: await containerPids(`${cl.name}-haproxy`), node: await containerPids(cl.node.name) }) },
  ];
  let relayPort = 0;
  const relayFile = join(mkdtempSync('/tmp/kt-relayab-'), 'relay.json');
  let localRelayPid: number | undefined;
  if (localRelay) {
    // The relay on the host, on CPU 1, profiled (--prof): its JS cost per connection, without docker-proxy.
    const { randomBytes } = await import('node:crypto');
    const token = randomBytes(32).toString('hex');
    const tf = join(dirname(relayFile), 'token');
    writeFileSync(tf, token, { mode: 0o600 });
    const rp = await freePort();
    const extra = prof !== undefined ? ['--cpu-prof', '--cpu-prof-dir', join(prof, 'relay')] : [];
    const r = start('local-relay', process.execPath, [...extra, join(variants[0]!.repo, 'dist', 'src', 'relay', 'main.js'), '--listen', `127.0.0.1:${rp}`, '--token-file', tf, '--allow', `${cl.node.ip}/32`, '--log-level', 'warn'], { cpu: '1', env: { ...process.env, KT_NATIVE: process.env.KT_RELAY_NATIVE ?? '1' } });
    procs.push(r);
    await waitForOutput(r, /^listening /m, 20_000);
    localRelayPid = r.pid;
    writeFileSync(relayFile, JSON.stringify({ host: '127.0.0.1', port: rp, token }));
  }
  const poolStats = new Map<string, string>();
  for (const v of variants) {
    const http = await freePort();
    const bk = await freePort();
    const extra = prof !== undefined ? ['--cpu-prof', '--cpu-prof-dir', join(prof, v.name)] : [];
    const p = start(v.name, process.execPath, [...extra, join(here, 'relay-host.js'), '--cluster', cl.name, '--network', cl.network, '--base', base, '--node', cl.node.ip, '--http-port', String(http), '--bulk-port', String(bk), '--transport', v.transport], { env: { ...process.env, KT_NATIVE: '0', KT_BENCH_REPO: v.repo, KT_BENCH_RELAY_FILE: relayFile } });
    procs.push(p);
    // The host prints its pool's stats every 5 s: keep the last, reported at the end.
    p.child.stdout?.on('data', (c: Buffer) => { const all = [...String(c).matchAll(/^pool (\{.*\})$/gm)]; const last = all[all.length - 1]; if (last !== undefined) poolStats.set(v.name, last[1]!); });
    const m = await waitForOutput(p, /^ready (\{.*\})$/m, 180_000);
    relayPort = (JSON.parse(m[1]!) as { relayPort: number }).relayPort;
    process.stderr.write(`${v.name}: ${m[1]}\n`);
    paths.push({ id: v.name, http, bulk: bk, host: [p.pid], vm: async () => (localRelayPid !== undefined ? { relay: [localRelayPid], node: await containerPids(cl.node.name) } : { 'docker-proxy': findProcesses(['-host-port', String(relayPort)]), relay: await containerPids(relayName), node: await containerPids(cl.node.name) }) });
  }
  for (const c of [...cl.containers, ...(localRelay ? [] : [relayName])]) await docker(['update', '--cpuset-cpus', '1', c]);
  pin([cl.portmap.http, cl.portmap.bulk, cl.haproxy.http, cl.haproxy.bulk, relayPort].flatMap((pt) => findProcesses(['-host-port', String(pt)])).flatMap(procTree), '1');
  for (const p of paths) pin(p.host.flatMap(procTree), '0');
  const wrkScript = join(mkdtempSync('/tmp/kt-relayab-'), 'p.lua');
  writeFileSync(wrkScript, WRK_SCRIPT);
  const rows: Array<Record<string, string | number>> = [];
  const variantPaths = paths.filter((p) => variants.some((v) => v.name === p.id));
  for (let r = 1; r <= rounds; r++) {
    if (pairedTtfb > 0 && variantPaths.length >= 2) {
      const out = (await run('ttfb-pair', process.execPath, [join(here, 'ttfb-pair.js'), variantPaths.map((p) => p.http).join(','), String(pairedTtfb), '2'], { cpu: '0', timeoutMs: 20 * pairedTtfb * variantPaths.length + 10_000 })).stdout;
      const j = JSON.parse(out.trim().split('\n').pop() as string) as { p50: number[]; diff: number[] };
      variantPaths.forEach((p, k) => {
        const row = { round: r, path: p.id, w: 'pair', metric: j.p50[k] ?? 0, diff: j.diff[k] ?? 0 };
        rows.push(row);
        process.stdout.write(`${JSON.stringify(row)}\n`);
      });
    }
    const order = [...paths].sort(() => Math.random() - 0.5);
    for (const p of order) {
      // TTFB of 150 sequential fresh connections, 2 ms apart: p50 and p99 (µs).
      const tt = parseTtfb((await run('ttfb', process.execPath, [join(here, 'ttfb-client.js'), String(p.http), '150', 'bench.localhost', '30000', '2', '127.0.0.1'], { cpu: '0', timeoutMs: 40_000 })).stdout);
      const trow = { round: r, path: p.id, w: 'ttfb', metric: Math.round(tt.p50 ?? 0), p99: Math.round(tt.p99 ?? 0) };
      rows.push(trow);
      process.stdout.write(`${JSON.stringify(trow)}\n`);
      const wls: Array<[string, string[] | undefined]> = [['keep', []], ['close', ['-H', 'Connection: close']]];
      if (bulk) wls.push(['bulk', undefined]);
      for (const [w, extra] of wls) {
        const vm = await p.vm();
        const groups: Record<string, number[]> = { host: p.host, ...vm };
        const mainThread = (pids: number[]): number => { let t = 0; for (const pid of pids) { try { const f = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8').slice(readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8').lastIndexOf(')') + 2).split(' '); t += Number(f[11]) + Number(f[12]); } catch { /* gone */ } } return t / 100; };
        const relayMain0 = mainThread(groups.relay ?? []);
        const before = Object.fromEntries(Object.entries(groups).map(([k, v]) => [k, cpuSeconds(v)]));
        const cpu0 = cpuBusy();
        let count = 0;
        let metric = 0;
        if (extra !== undefined) {
          const res = await run('wrk', 'wrk', ['-t1', '-c50', `-d${durationS}s`, '--latency', '-s', wrkScript, ...extra, `http://127.0.0.1:${p.http}/`], { cpu: '0', timeoutMs: (durationS + 20) * 1000 });
          const m = parseWrk(res.stdout);
          metric = m.rps ?? 0;
          count = metric * durationS;
        } else {
          const res = await run('iperf', 'iperf3', ['-c', '127.0.0.1', '-p', String(p.bulk), '-t', String(durationS), '-O', '1', '-J'], { cpu: '0', timeoutMs: (durationS + 25) * 1000 });
          metric = parseIperf(res.stdout).gbps ?? 0;
          count = metric * durationS * 1000 / 8; // MB moved: bulk CPU is in ms per MB
        }
        const row: Record<string, string | number> = { round: r, path: p.id, w, metric: Math.round(metric * 100) / 100 };
        for (const [k, v] of Object.entries(groups)) row[`${k} ms/req`] = Math.round((cpuSeconds(v) - (before[k] ?? 0)) / count * 1e6) / 1000;
        if (groups.relay !== undefined) row['relay-main ms/req'] = Math.round((mainThread(groups.relay) - relayMain0) / count * 1e6) / 1000;
        // How busy each CPU was over the run (%): which side of the Mac-like placement is the bottleneck.
        cpuBusy().forEach((b, i) => { const a = cpu0[i]; if (a !== undefined && b.total > a.total) row[`cpu${i} busy%`] = Math.round((b.busy - a.busy) / (b.total - a.total) * 100); });
        rows.push(row);
        process.stdout.write(`${JSON.stringify(row)}\n`);
      }
    }
  }
  for (const [name, st] of poolStats) process.stdout.write(`POOL ${name} ${st}\n`);
  process.stdout.write(`load ${load0.map((x) => x.toFixed(1)).join(' ')} -> ${loadavg().map((x) => x.toFixed(1)).join(' ')}\n`);
  const med = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] ?? NaN; };
  for (const w of ['pair', 'ttfb', 'keep', 'close', 'bulk']) {
    for (const p of paths) {
      const rs = rows.filter((x) => x.path === p.id && x.w === w);
      if (rs.length === 0) continue;
      const keys = Object.keys(rs[0]!).filter((k) => k.endsWith('ms/req') || k.endsWith('busy%') || k === 'diff');
      process.stdout.write(`MEDIAN ${w} ${p.id} ${med(rs.map((x) => x.metric as number))} ${keys.map((k) => `${k}=${med(rs.map((x) => x[k] as number))}`).join(' ')}\n`);
    }
  }
} finally {
  for (const p of procs.reverse()) await stop(p).catch(() => undefined);
  offCleanup(`relaybench:${cl.name}`);
  for (const c of [...cl.containers, `kind-tunnel-relay-${cl.name}`]) await docker(['rm', '-f', c]).catch(() => undefined);
  await docker(['network', 'rm', cl.network]).catch(() => undefined);
}
