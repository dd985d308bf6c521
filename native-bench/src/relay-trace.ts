// Relay mode, where a fresh connection's time to first byte goes (issue 12):
// the kind-like cluster of `--relay` in the Mac-like placement, port mapping and
// relay-js hosts (one per transport named), and `tcpdump -i any` while
// sequential fresh connections run 50 ms apart through one path at a time.
// Each connection's packets (on loopback, the bridge and the veths) form one
// group; groups with the path's most common packet sequence give, per packet,
// the median time since the client's SYN: a per-hop timeline.
// Options: --samples N (default 40), --gap MS between connections (default 50),
// --strace (the hosts' syscalls too), --prof DIR (the hosts' --cpu-prof), --hold (leave
// the cluster up until SIGINT for experiments, printing its ports and pids).
// Usage: npm run bench:relay-trace -- [options] [TRANSPORT...]   (root: tcpdump)
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { findProcesses, freePort, offCleanup, run, start, stop, waitForOutput, sleep, type Proc } from './proc.js';
import { benchImagesAndCluster, pin, procTree } from './relaybench.js';

const execFileP = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const repoDir = join(here, '..', '..', '..');
const args = process.argv.slice(2);
let samples = 40;
let straceHost = false;
let prof: string | undefined;
let gapMs = 50;
let hold = false;
const transports: string[] = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--samples') samples = Math.max(5, Math.min(500, Number(args[++i]) || 40));
  else if (args[i] === '--strace') straceHost = true;
  else if (args[i] === '--prof') prof = args[++i];
  else if (args[i] === '--hold') hold = true;
  else if (args[i] === '--gap') gapMs = Math.max(2, Math.min(1000, Number(args[++i]) || 50));
  else transports.push(args[i]!);
}
if (transports.length === 0) transports.push('mux', 'pool');

const docker = async (a: string[]): Promise<string> => (await execFileP('docker', a, { timeout: 60_000 })).stdout.trim();
const { base, cl } = await benchImagesAndCluster(repoDir);
const procs: Proc[] = [];
try {
  const relayFile = join(mkdtempSync('/tmp/kt-relaytrace-'), 'relay.json');
  const paths: Array<{ id: string; http: number; pid?: number }> = [{ id: 'portmap', http: cl.portmap.http }];
  let relayPort = 0;
  const hostPids: number[] = [];
  for (const t of transports) {
    const http = await freePort();
    const bk = await freePort();
    const extra = prof !== undefined ? ['--cpu-prof', '--cpu-prof-interval', '50', '--cpu-prof-dir', join(prof, t)] : [];
    const p = start(`host-${t}`, process.execPath, [...extra, join(here, 'relay-host.js'), '--cluster', cl.name, '--network', cl.network, '--base', base, '--node', cl.node.ip, '--http-port', String(http), '--bulk-port', String(bk), '--transport', t], { env: { ...process.env, KT_NATIVE: '0', KT_BENCH_RELAY_FILE: relayFile } });
    procs.push(p);
    const m = await waitForOutput(p, /^ready (\{.*\})$/m, 180_000);
    relayPort = (JSON.parse(m[1]!) as { relayPort: number }).relayPort;
    paths.push({ id: `relay-${t}`, http, pid: p.pid });
    hostPids.push(p.pid);
  }
  for (const c of [...cl.containers, `kind-tunnel-relay-${cl.name}`]) await docker(['update', '--cpuset-cpus', '1', c]);
  pin([cl.portmap.http, cl.portmap.bulk, relayPort].flatMap((pt) => findProcesses(['-host-port', String(pt)])).flatMap(procTree), '1');
  pin(hostPids.flatMap(procTree), '0');
  const dir = mkdtempSync('/tmp/kt-relaytrace-');
  if (hold) {
    // --hold: leave the cluster up for experiments until SIGINT; print where things are.
    process.stdout.write(`${JSON.stringify({ paths, relayPort, node: cl.node, relayContainer: `kind-tunnel-relay-${cl.name}` })}\n`);
    await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
    paths.length = 0;
  }
  for (const p of paths) {
    // Warm up (carriers, pools), then trace.
    await run('warm', process.execPath, [join(here, 'ttfb-client.js'), String(p.http), '20', 'bench.localhost', '10000', '2', '127.0.0.1'], { cpu: '0', timeoutMs: 20_000 });
    const file = join(dir, `${p.id}.txt`);
    const td = spawn('taskset', ['-c', '1', 'tcpdump', '-i', 'any', '-nn', '-tt', '--time-stamp-precision=nano', '-l', '-w', join(dir, `${p.id}.pcap`), 'tcp and not port 2375'], { stdio: ['ignore', 'ignore', 'pipe'] });
    await new Promise<void>((resolve) => { td.stderr.on('data', (c: Buffer) => { if (/listening on/.test(String(c))) resolve(); }); setTimeout(resolve, 3000); });
    // --strace: the host process's syscalls too (slower, but where it waits shows).
    const st = straceHost && p.pid !== undefined ? spawn('strace', ['-f', '-ttt', '-T', '-p', String(p.pid), '-o', join(dir, `${p.id}.strace`)], { stdio: 'ignore' }) : undefined;
    await sleep(st !== undefined ? 1000 : 200);
    const out = await run('ttfb', process.execPath, [join(here, 'ttfb-client.js'), String(p.http), String(samples), 'bench.localhost', '30000', String(gapMs), '127.0.0.1'], { cpu: '0', timeoutMs: 60_000 });
    await sleep(200);
    td.kill('SIGINT');
    if (st !== undefined) { st.kill('SIGINT'); await new Promise((r) => st.once('exit', r)); }
    await new Promise((r) => td.once('exit', r));
    const { stdout } = await execFileP('tcpdump', ['-r', join(dir, `${p.id}.pcap`), '-nn', '-tt', '--time-stamp-precision=nano'], { maxBuffer: 64 * 1024 * 1024 });
    writeFileSync(file, stdout);
    process.stdout.write(`\n== ${p.id}: ${out.stdout.trim()}\n`);
    timeline(stdout, p.http);
  }
  process.stdout.write(`\ntraces in ${dir}\n`);
} finally {
  for (const p of procs.reverse()) await stop(p).catch(() => undefined);
  offCleanup(`relaybench:${cl.name}`);
  for (const c of [...cl.containers, `kind-tunnel-relay-${cl.name}`]) await docker(['rm', '-f', c]).catch(() => undefined);
  await docker(['network', 'rm', cl.network]).catch(() => undefined);
}

interface Pkt { t: number; iface: string; src: string; dst: string; flags: string; len: number }

/** Per connection (a group starts at a client SYN to `port`), the packet sequence; the median offset of each packet. */
function timeline(text: string, port: number): void {
  const pkts: Pkt[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+\.\d+) (\S+)\s+(?:In|Out|M|P)?\s*IP6? (\S+) > (\S+): Flags \[([^\]]+)\].*length (\d+)/.exec(line);
    if (m === null) continue;
    pkts.push({ t: Number(m[1]), iface: m[2]!, src: m[3]!, dst: m[4]!.replace(/:$/, ''), flags: m[5]!, len: Number(m[6]) });
  }
  const groups: Pkt[][] = [];
  let cur: Pkt[] | undefined;
  for (const p of pkts) {
    if (p.flags === 'S' && p.dst.endsWith(`.${port}`) && p.src.startsWith('127.0.0.1.')) { cur = [p]; groups.push(cur); continue; }
    cur?.push(p);
  }
  // Up to the first packet that carries the response back to the client.
  const cut = groups.map((g) => {
    const client = g[0]!.src;
    const end = g.findIndex((p) => p.dst === client && p.len > 0);
    return end < 0 ? g : g.slice(0, end + 1);
  });
  const role = (g: Pkt[], addr: string): string => {
    const [ip, pt] = [addr.slice(0, addr.lastIndexOf('.')), addr.slice(addr.lastIndexOf('.') + 1)];
    if (addr === g[0]!.src) return 'client';
    if (Number(pt) === port) return 'listen';
    return `${ip}:${Number(pt) > 32767 ? 'eph' : pt}`;
  };
  const sig = (g: Pkt[]): string => g.map((p) => `${p.iface} ${role(g, p.src)}>${role(g, p.dst)} [${p.flags}] ${p.len}`).join('|');
  const counts = new Map<string, Pkt[][]>();
  for (const g of cut) { const s = sig(g); const l = counts.get(s) ?? []; l.push(g); counts.set(s, l); }
  const best = [...counts.values()].sort((a, b) => b.length - a.length)[0];
  if (best === undefined) { process.stdout.write('no connections seen\n'); return; }
  process.stdout.write(`${cut.length} connections, ${best.length} with the most common sequence of ${best[0]!.length} packets (${counts.size} sequences)\n`);
  const med = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] ?? NaN; };
  const g0 = best[0]!;
  let prev = 0;
  for (let i = 0; i < g0.length; i++) {
    const at = med(best.map((g) => (g[i]!.t - g[0]!.t) * 1e6));
    const p = g0[i]!;
    process.stdout.write(`${at.toFixed(0).padStart(6)} µs  +${(at - prev).toFixed(0).padStart(4)}  ${p.iface.padEnd(16)} ${role(g0, p.src)} > ${role(g0, p.dst)} [${p.flags}] ${p.len}\n`);
    prev = at;
  }
}
