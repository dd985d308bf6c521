// UDP through the relay (issue #16): packets per second and request/response
// latency through
//   direct     the client sends to the node container itself (Linux only);
//   kt-direct  kind-tunnel's UDP plane straight to the node (`up` on Linux);
//   kt-relay   kind-tunnel's UDP plane → relay connection (framed datagrams)
//              → the relay container (ensureRelay, as `up --mode relay`) → the node,
// in one run, interleaved rounds, medians. A one-node kind-like cluster in
// Docker: a fresh `iperf3 -s -1` per run on the node's 30201 (TCP control + UDP
// data) and a node:dgram echo on its 30054, both in the node's network
// namespace (nsenter: needs root).
// Load generators on CPU 0, the kind-tunnel host process on CPU 1; the
// containers are not pinned.
//
//   node build/src/udp-relay.js [--rounds 3] [--duration 4] [--docs ../docs/benchmarks.md]
import { execFileSync, execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { loadavg } from 'node:os';
import { buildImage } from './backends.js';
import { onCleanup, offCleanup, pinPids, processTree, run, start, stop, waitForOutput, type Proc } from './proc.js';

const execFileP = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..', '..');
const HOST_CPU = '1';
const LOAD_CPU = '0';
export const UDP_RELAY_START = '<!-- udp-relay:start -->';
export const UDP_RELAY_END = '<!-- udp-relay:end -->';

function args(): { rounds: number; duration: number; docs: string | undefined } {
  const a = process.argv.slice(2);
  const get = (k: string): string | undefined => { const i = a.indexOf(k); return i < 0 ? undefined : a[i + 1]; };
  return { rounds: Number(get('--rounds') ?? 3), duration: Number(get('--duration') ?? 4), docs: get('--docs') };
}

async function docker(a: string[], timeoutMs = 60_000): Promise<string> {
  return (await execFileP('docker', a, { timeout: timeoutMs })).stdout.trim();
}

interface Path { id: string; label: string; host: string; pps: number; rr: number; pids: () => number[] }
interface Pps { pps: number; lossPct: number; cpuPct: number }
interface Rr { rr: number; p50us: number; p99us: number; lost: number }

function cpuOf(pids: number[]): number {
  let t = 0;
  for (const pid of pids) {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      t += (Number(f[11]) + Number(f[12])) / 100;
    } catch { /* gone */ }
  }
  return t;
}

/** A fresh `iperf3 -s -1` in the node's network namespace for each run, as udp.ts starts one per run (a long-lived server fails runs back to back). */
async function iperfServer(pid: string, ip: string): Promise<Proc> {
  const srv = start('iperf3 -s (node)', 'nsenter', ['-t', pid, '-n', 'iperf3', '-s', '-1', '--forceflush', '-B', ip, '-p', '30201']);
  try {
    await waitForOutput(srv, /Server listening/, 10_000);
  } catch (err) {
    await stop(srv, 1000);
    throw err;
  }
  return srv;
}

async function pps(p: Path, duration: number, node: { pid: string; ip: string }): Promise<Pps> {
  const srv = await iperfServer(node.pid, node.ip);
  try { return await ppsRun(p, duration); } finally { await stop(srv, 1000); }
}

async function ppsRun(p: Path, duration: number): Promise<Pps> {
  const pids = p.pids();
  const c0 = cpuOf(pids);
  const t0 = Date.now();
  const argv = ['-c', p.host, '-p', String(p.pps), '-u', '-b', '0', '-l', '64', '-t', String(duration), '-O', '1', '--connect-timeout', '3000', '-J'];
  const r = await run('iperf3 -u', 'iperf3', argv, { cpu: LOAD_CPU, timeoutMs: duration * 1000 + 20_000 });
  const wall = (Date.now() - t0) / 1000;
  const cpu = cpuOf(pids) - c0;
  const j = JSON.parse(r.stdout) as { end?: { sum?: { packets: number; lost_packets: number; seconds: number } }; error?: string };
  const s = j.end?.sum;
  if (s === undefined || s.seconds <= 0) throw new Error(`iperf3: ${j.error ?? r.stderr}`);
  if (s.lost_packets > s.packets || s.lost_packets < 0) throw new Error(`iperf3 reported ${s.lost_packets} lost of ${s.packets} sent`);
  return { pps: (s.packets - s.lost_packets) / s.seconds, lossPct: (100 * s.lost_packets) / Math.max(1, s.packets), cpuPct: pids.length > 0 ? (100 * cpu) / wall : Number.NaN };
}

async function rr(p: Path, flows: number, duration: number): Promise<Rr> {
  const r = await run('udp-rr', process.execPath, [join(here, 'udp-rr-client.js'), String(p.rr), String(flows), String(duration * 1000), p.host], { cpu: LOAD_CPU, timeoutMs: duration * 1000 + 20_000 });
  return JSON.parse(r.stdout) as Rr;
}

function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  const o = args();
  const load0 = loadavg()[0]!;
  const image = await buildImage();
  const base = (await execFileP('sh', [join(repo, 'docker', 'build-base.sh')], { timeout: 180_000 })).stdout.trim().split('\n').pop() as string;
  const name = `ktbu${process.pid.toString(36)}`;
  const network = `${name}-net`;
  const nodeName = `${name}-control-plane`;
  const cleanup = (): void => {
    for (const c of [nodeName, `kind-tunnel-relay-${name}`]) { try { execFileSync('docker', ['rm', '-f', c], { stdio: 'ignore', timeout: 15_000 }); } catch { /* gone */ } }
    try { execFileSync('docker', ['network', 'rm', network], { stdio: 'ignore', timeout: 15_000 }); } catch { /* gone */ }
  };
  onCleanup(`udp-relay:${name}`, cleanup);
  const procs: Proc[] = [];
  try {
    await docker(['network', 'create', '--label', `dev.kind-tunnel.bench=${name}`, network]);
    await docker(['run', '-d', '--name', nodeName, '--hostname', nodeName, '--network', network,
      '--label', `io.x-k8s.kind.cluster=${name}`, '--label', 'io.x-k8s.kind.role=control-plane', '--label', `dev.kind-tunnel.bench=${name}`,
      image, '/bin/sh', '-c', 'while true; do busybox sleep 3600; done']);
    const ip = await docker(['inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, nodeName]);
    const pid = await docker(['inspect', '-f', '{{.State.Pid}}', nodeName]);
    const echo = start('udp echo (node)', 'nsenter', ['-t', pid, '-n', process.execPath, '-e',
      `const s = require('node:dgram').createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 }); s.on('message', (m, r) => s.send(m, r.port, r.address)); s.bind(30054, ${JSON.stringify(ip)}, () => console.log('listening'))`]);
    procs.push(echo);
    await waitForOutput(echo, /listening/, 10_000);
    const host = start('kt host', process.execPath, [join(here, 'udp-relay-host.js'), '--cluster', name, '--network', network, '--base', base, '--node', ip]);
    procs.push(host);
    const m = await waitForOutput(host, /^ready (\{.*\})$/m, 180_000);
    const ports = JSON.parse(m[1]!) as { relay: { pps: number; rr: number }; direct: { pps: number; rr: number } };
    const hostPids = (): number[] => processTree(host.pid);
    await pinPids(hostPids(), HOST_CPU);
    const paths: Path[] = [
      { id: 'direct', label: 'direct to the node (no proxy)', host: ip, pps: 30201, rr: 30054, pids: () => [] },
      { id: 'kt-direct', label: 'kind-tunnel, direct mode', host: '127.0.0.1', ...ports.direct, pids: hostPids },
      { id: 'kt-relay', label: 'kind-tunnel, relay mode (framed over the relay connection)', host: '127.0.0.1', ...ports.relay, pids: hostPids },
    ];
    const res: Record<string, { pps: Pps[]; rr1: Rr[]; rr32: Rr[] }> = {};
    for (const p of paths) res[p.id] = { pps: [], rr1: [], rr32: [] };
    for (let round = 1; round <= o.rounds; round++) {
      for (const p of [...paths].sort(() => Math.random() - 0.5)) {
        try {
          // Round trips first: after a flood (pps) a proxy may still be draining its socket buffers.
          const b = await rr(p, 1, o.duration);
          const c = await rr(p, 32, o.duration);
          res[p.id]!.rr1.push(b);
          res[p.id]!.rr32.push(c);
          const a = await pps(p, o.duration, { pid, ip });
          res[p.id]!.pps.push(a);
          process.stderr.write(`round ${round} ${p.id}: pps ${Math.round(a.pps)} (loss ${a.lossPct.toFixed(1)}%, cpu ${a.cpuPct.toFixed(0)}%), rr1 ${Math.round(b.rr)}/s p50 ${b.p50us.toFixed(0)} µs lost ${b.lost}, rr32 ${Math.round(c.rr)}/s p99 ${c.p99us.toFixed(0)} µs lost ${c.lost}\n`);
        } catch (err) {
          process.stderr.write(`round ${round} ${p.id} failed: ${(err as Error).message}\n`);
        }
      }
    }
    const f = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '–');
    const ktd = res['kt-direct']!;
    const ref = { pps: median(ktd.pps.map((x) => x.pps)), rr1: median(ktd.rr1.map((x) => x.rr)), rr32: median(ktd.rr32.map((x) => x.rr)) };
    const rows = paths.map((p) => {
      const r = res[p.id]!;
      const pp = median(r.pps.map((x) => x.pps));
      const r1 = median(r.rr1.map((x) => x.rr));
      const r32 = median(r.rr32.map((x) => x.rr));
      return `| ${p.label} | ${f(pp)} | ${f(pp / ref.pps, 2)}× | ${f(median(r.pps.map((x) => x.lossPct)), 1)} % | ${f(r1)} | ${f(r1 / ref.rr1, 2)}× | ${f(median(r.rr1.map((x) => x.p50us)))} | ${f(r32)} | ${f(r32 / ref.rr32, 2)}× | ${f(median(r.rr32.map((x) => x.p99us)))} |`;
    });
    const cpuModel = (/model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU').trim();
    const md = [
      UDP_RELAY_START,
      '### UDP through the relay',
      '',
      `Run ${new Date().toISOString().slice(0, 16)}Z on ${cpuModel}, Node ${process.version}, load average ${load0.toFixed(1)} at the start and ${loadavg()[0]!.toFixed(1)} at the end (other work shared the machine: read the ratios, not the absolute figures); ${o.rounds} interleaved rounds of ${o.duration} s per workload, medians. Load generators on CPU ${LOAD_CPU}, the kind-tunnel host process on CPU ${HOST_CPU}, the containers unpinned. Reproduce: \`npm run build && npm --prefix native-bench run bench:udp-relay -- --rounds ${o.rounds} --duration ${o.duration}\` (root: the node's echo server runs in its network namespace).`,
      '',
      '- A one-node kind-like cluster in Docker; the relay container is the one `up --mode relay` starts. Both kind-tunnel modes run in one host process (`native-bench/src/udp-relay-host.ts`). "×" is against kind-tunnel in direct mode in the same run.',
      '- **pps**: `iperf3 -u -b 0 -l 64`, one stream as fast as the sender goes; packets per second the server received. **rr1 / rr32**: 1 or 32 flows, each with one 64-byte datagram in flight, against a UDP echo on the node.',
      '',
      '| path | pps | × kt direct | loss | rr1/s | × kt direct | rr1 p50 µs | rr32/s | × kt direct | rr32 p99 µs |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...rows,
      UDP_RELAY_END,
    ].join('\n');
    process.stdout.write(md + '\n');
    if (o.docs !== undefined) {
      const doc = readFileSync(o.docs, 'utf8');
      const a = doc.indexOf(UDP_RELAY_START);
      const b = doc.indexOf(UDP_RELAY_END);
      let next: string;
      if (a >= 0 && b > a) next = doc.slice(0, a) + md + doc.slice(b + UDP_RELAY_END.length);
      else {
        // After the UDP section when there is one.
        const u = doc.indexOf('<!-- udp:end -->');
        next = u >= 0 ? `${doc.slice(0, u + '<!-- udp:end -->'.length)}\n\n${md}${doc.slice(u + '<!-- udp:end -->'.length)}` : `${doc.trimEnd()}\n\n${md}\n`;
      }
      writeFileSync(o.docs, next);
    }
  } finally {
    for (const p of procs.reverse()) await stop(p, 1000).catch(() => undefined);
    offCleanup(`udp-relay:${name}`);
    cleanup();
  }
}

await main();
