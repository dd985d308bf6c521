// The UDP workload (issue #16): packets per second and request/response latency
// through direct, kind-tunnel (`proxy --listen P/udp`), docker-proxy `-proto udp`,
// socat (UDP4-LISTEN,fork) and a real Docker UDP port mapping, interleaved in
// rounds, in the pinned placement (load generator on CPU 0, proxy on CPU 1).
//
//   node build/src/udp.js [--rounds 3] [--duration 5] [--docs ../docs/benchmarks.md] [--contenders a,b]
//
// - pps: `iperf3 -c 127.0.0.1 -p P -u -b 0 -l 64 -t D -O 1 -J`, one stream, as
//   fast as the sender goes; the figure is what the iperf3 server received per
//   second (sent minus lost). iperf3 keeps its control connection on TCP, so
//   every contender forwards TCP and UDP on the same port (docker-proxy and socat
//   as a TCP and a UDP process, as dockerd runs them).
// - rr1 / rr32: udp-rr-client.js, 1 and 32 flows, each with one 64-byte datagram
//   in flight against a Node UDP echo server: round trips per second, p50 and p99.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildImage, dockerReachable, startIperfServer } from './backends.js';
import { freePort, nofileLimit, onCleanup, offCleanup, pinPids, processTree, run, sleep, start, stop, waitForOutput, waitForPort, findProcesses, type Proc } from './proc.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..', '..');
const PROXY_CPU = '1';
const LOAD_CPU = '0';

export const UDP_START = '<!-- udp:start -->';
export const UDP_END = '<!-- udp:end -->';

interface Running { port: number; pids(): number[]; stop(): Promise<void> }
interface UdpContender { id: string; label: string; command: string; start(backendPort: number): Promise<Running>; rr: boolean }

function args(): { rounds: number; duration: number; docs: string | undefined; only: string[] | undefined } {
  const a = process.argv.slice(2);
  const get = (k: string): string | undefined => { const i = a.indexOf(k); return i < 0 ? undefined : a[i + 1]; };
  return {
    rounds: Number(get('--rounds') ?? 3),
    duration: Number(get('--duration') ?? 5),
    docs: get('--docs'),
    only: get('--contenders')?.split(','),
  };
}

/** True once something on this host has 127.0.0.1:port bound for UDP (/proc/net/udp). */
function udpBound(port: number): boolean {
  const hex = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/udp', 'utf8').includes(` ${hex} `);
}

async function waitUdp(port: number, p?: Proc): Promise<void> {
  const end = Date.now() + 30_000;
  while (!udpBound(port)) {
    if (p?.hasExited === true) throw new Error(`${p.name} exited: ${p.stderr}`);
    if (Date.now() > end) throw new Error(`nothing bound 127.0.0.1:${port}/udp in time`);
    await sleep(20);
  }
}

async function pinned(procs: Proc[], port: number): Promise<Running> {
  const pids = (): number[] => procs.flatMap((p) => (p.hasExited ? [] : processTree(p.pid)));
  await pinPids(pids(), PROXY_CPU);
  return { port, pids, stop: async () => { for (const p of procs) await stop(p, 1000); } };
}

function ktArgv(): string[] {
  const bin = process.env['KT_BIN'];
  return bin === undefined ? [process.execPath, join(repo, 'dist', 'src', 'cli', 'main.js')] : bin.split(' ');
}

const contenders: UdpContender[] = [
  {
    id: 'direct', label: 'direct (no proxy)', command: 'the client sends to the backend itself', rr: true,
    start: async (q) => ({ port: q, pids: () => [], stop: async () => undefined }),
  },
  {
    id: 'kt', label: 'kind-tunnel', rr: true,
    command: 'kind-tunnel proxy --listen 127.0.0.1:P --listen 127.0.0.1:P/udp --backend 127.0.0.1:Q --access-log=false',
    start: async (q) => {
      const p = await freeUdpTcpPort();
      const argv = [...ktArgv(), 'proxy', '--listen', `127.0.0.1:${p}`, '--listen', `127.0.0.1:${p}/udp`, '--backend', `127.0.0.1:${q}`, '--access-log=false'];
      const proc = start('kind-tunnel', argv[0]!, argv.slice(1), { nofile: nofileLimit() });
      await waitForOutput(proc, new RegExp(`^listening 127\\.0\\.0\\.1:${p}/udp$`, 'm'), 30_000);
      return await pinned([proc], p);
    },
  },
  {
    id: 'docker-proxy', label: 'docker-proxy (-proto udp)', rr: true,
    command: 'docker-proxy -proto udp -host-ip 127.0.0.1 -host-port P -container-ip 127.0.0.1 -container-port Q (and a -proto tcp one for the iperf3 control connection)',
    start: async (q) => {
      const p = await freeUdpTcpPort();
      const dp = (proto: string): Proc => start(`docker-proxy ${proto}`, '/usr/sbin/docker-proxy', ['-proto', proto, '-host-ip', '127.0.0.1', '-host-port', String(p), '-container-ip', '127.0.0.1', '-container-port', String(q)], { nofile: nofileLimit(), fd3DevNull: true });
      const udp = dp('udp');
      const tcp = dp('tcp');
      await waitUdp(p, udp);
      await waitForPort(p, 30_000, tcp);
      return await pinned([udp, tcp], p);
    },
  },
  {
    id: 'socat', label: 'socat (UDP4-LISTEN,fork)', rr: true,
    command: 'socat UDP4-LISTEN:P,bind=127.0.0.1,fork,reuseaddr UDP4:127.0.0.1:Q (and a TCP-LISTEN one for the iperf3 control connection)',
    start: async (q) => {
      const p = await freeUdpTcpPort();
      const udp = start('socat udp', 'socat', [`UDP4-LISTEN:${p},bind=127.0.0.1,fork,reuseaddr`, `UDP4:127.0.0.1:${q}`], { nofile: nofileLimit() });
      const tcp = start('socat tcp', 'socat', [`TCP-LISTEN:${p},bind=127.0.0.1,fork,reuseaddr,backlog=4096`, `TCP:127.0.0.1:${q}`], { nofile: nofileLimit() });
      await waitUdp(p, udp);
      await waitForPort(p, 30_000, tcp);
      return await pinned([udp, tcp], p);
    },
  },
];

/** A real `docker run -p 127.0.0.1:P:5201/udp` (and /tcp) in front of iperf3 in a container: pps only. */
async function dockerContender(): Promise<UdpContender | string> {
  const why = await dockerReachable();
  if (why !== null) return why;
  const image = await buildImage();
  return {
    id: 'docker-mapping', label: 'Docker UDP port mapping', rr: false,
    command: 'docker run -p 127.0.0.1:P:5201/tcp -p 127.0.0.1:P:5201/udp (iperf3 -s in the container; dockerd\'s docker-proxy)',
    start: async () => {
      const p = await freeUdpTcpPort();
      const name = `kind-tunnel-bench-udp-${process.pid}-${Date.now().toString(36)}`;
      onCleanup(`docker:${name}`, () => { try { execFileSync('docker', ['rm', '-f', name], { stdio: 'ignore', timeout: 15_000 }); } catch { /* gone */ } });
      execFileSync('docker', ['run', '-d', '--rm', '--name', name, '-p', `127.0.0.1:${p}:5201/tcp`, '-p', `127.0.0.1:${p}:5201/udp`, image, '/bin/sh', '/start.sh'], { stdio: 'ignore', timeout: 60_000 });
      await waitForPort(p, 30_000);
      await sleep(500);
      const pids = (): number[] => findProcesses(['-host-port', String(p)]).flatMap((x) => processTree(x));
      await pinPids(pids(), PROXY_CPU);
      return { port: p, pids, stop: async () => { offCleanup(`docker:${name}`); try { execFileSync('docker', ['rm', '-f', name], { stdio: 'ignore', timeout: 30_000 }); } catch { /* gone */ } } };
    },
  };
}

async function freeUdpTcpPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await freePort();
    if (!udpBound(p)) return p;
  }
  throw new Error('no free port');
}

interface Pps { pps: number; sentPps: number; lossPct: number; cpuPct: number }
interface Rr { rr: number; p50us: number; p99us: number; lost: number; cpuPct: number }

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

async function pps(target: Running, duration: number): Promise<Pps> {
  const pids = target.pids();
  const c0 = cpuOf(pids);
  const t0 = Date.now();
  let r = await run('iperf3 -u', 'iperf3', ['-c', '127.0.0.1', '-p', String(target.port), '-u', '-b', '0', '-l', '64', '-t', String(duration), '-O', '1', '--connect-timeout', '3000', '-J'], { cpu: LOAD_CPU, timeoutMs: duration * 1000 + 20_000 });
  if (r.code !== 0) {
    await sleep(1000);
    r = await run('iperf3 -u', 'iperf3', ['-c', '127.0.0.1', '-p', String(target.port), '-u', '-b', '0', '-l', '64', '-t', String(duration), '-O', '1', '--connect-timeout', '3000', '-J'], { cpu: LOAD_CPU, timeoutMs: duration * 1000 + 20_000 });
  }
  const wall = (Date.now() - t0) / 1000;
  const cpu = cpuOf(pids) - c0;
  const j = JSON.parse(r.stdout) as { end?: { sum?: { packets: number; lost_packets: number; seconds: number } }; error?: string };
  const s = j.end?.sum;
  if (s === undefined || s.seconds <= 0) throw new Error(`iperf3: ${j.error ?? r.stderr}`);
  // iperf3 counts loss from sequence gaps; a negative figure (more lost than sent) is not a measurement.
  if (s.lost_packets > s.packets || s.lost_packets < 0) throw new Error(`iperf3 reported ${s.lost_packets} lost of ${s.packets} sent`);
  return { pps: (s.packets - s.lost_packets) / s.seconds, sentPps: s.packets / s.seconds, lossPct: (100 * s.lost_packets) / Math.max(1, s.packets), cpuPct: pids.length > 0 ? (100 * cpu) / wall : Number.NaN };
}

async function rr(target: Running, flows: number, duration: number): Promise<Rr> {
  const pids = target.pids();
  const c0 = cpuOf(pids);
  const t0 = Date.now();
  const r = await run('udp-rr', process.execPath, [join(here, 'udp-rr-client.js'), String(target.port), String(flows), String(duration * 1000)], { cpu: LOAD_CPU, timeoutMs: duration * 1000 + 20_000 });
  const wall = (Date.now() - t0) / 1000;
  const cpu = cpuOf(pids) - c0;
  const j = JSON.parse(r.stdout) as { rr: number; p50us: number; p99us: number; lost: number };
  return { ...j, cpuPct: pids.length > 0 ? (100 * cpu) / wall : Number.NaN };
}

function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function shuffle<T>(xs: T[]): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) { const j = Math.floor(Math.random() * (i + 1)); [a[i], a[j]] = [a[j]!, a[i]!]; }
  return a;
}

async function main(): Promise<void> {
  const o = args();
  const list = [...contenders];
  const notes: string[] = [];
  const d = await dockerContender().catch((err: Error) => err.message);
  if (typeof d === 'string') notes.push(`Docker UDP port mapping skipped: ${d}`);
  else list.push(d);
  const chosen = o.only === undefined ? list : list.filter((c) => o.only!.includes(c.id));
  const echoPort = await freeUdpTcpPort();
  const echo = start('udp echo', process.execPath, [join(here, 'udp-echo.js'), String(echoPort)], {});
  await waitForOutput(echo, /listening/, 10_000);
  const res: Record<string, { pps: Pps[]; rr1: Rr[]; rr32: Rr[] }> = {};
  for (const c of chosen) res[c.id] = { pps: [], rr1: [], rr32: [] };
  try {
    for (let round = 1; round <= o.rounds; round++) {
      for (const c of shuffle(chosen)) {
        const iperf = await startIperfServer();
        const inst = await c.start(iperf.port);
        try {
          const m = await pps(inst, o.duration);
          res[c.id]!.pps.push(m);
          process.stderr.write(`round ${round} ${c.id} pps ${Math.round(m.pps)} (sent ${Math.round(m.sentPps)}, cpu ${m.cpuPct.toFixed(0)}%)\n`);
        } catch (err) {
          process.stderr.write(`round ${round} ${c.id} pps failed: ${(err as Error).message}\n`);
        } finally {
          await inst.stop();
          await stop(iperf.proc, 1000);
        }
        if (!c.rr) continue;
        const inst2 = await c.start(echoPort);
        try {
          const a = await rr(inst2, 1, o.duration);
          const b = await rr(inst2, 32, o.duration);
          res[c.id]!.rr1.push(a);
          res[c.id]!.rr32.push(b);
          process.stderr.write(`round ${round} ${c.id} rr1 ${Math.round(a.rr)}/s p50 ${a.p50us.toFixed(0)} p99 ${a.p99us.toFixed(0)} µs; rr32 ${Math.round(b.rr)}/s p99 ${b.p99us.toFixed(0)} µs\n`);
        } finally {
          await inst2.stop();
        }
      }
    }
  } finally {
    await stop(echo, 1000);
  }
  const dp = median((res['docker-proxy']?.pps ?? []).map((x) => x.pps));
  const rows = chosen.map((c) => {
    const r = res[c.id]!;
    const p = median(r.pps.map((x) => x.pps));
    const f = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '–');
    return `| ${c.label} | ${f(p)} | ${f(p / dp, 2)}× | ${f(median(r.pps.map((x) => x.lossPct)), 1)} % | ${f(median(r.pps.map((x) => x.cpuPct)))} | ${f(median(r.rr1.map((x) => x.rr)))} | ${f(median(r.rr1.map((x) => x.p50us)))} | ${f(median(r.rr1.map((x) => x.p99us)))} | ${f(median(r.rr32.map((x) => x.rr)))} | ${f(median(r.rr32.map((x) => x.p99us)))} |`;
  });
  const cpuModel = (/model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU').trim();
  const md = [
    UDP_START,
    '## UDP (issue #16)',
    '',
    `Run ${new Date().toISOString().slice(0, 16)}Z on ${cpuModel}, Node ${process.version}; ${o.rounds} interleaved rounds of ${o.duration} s per workload, medians. Pinned: load generator on CPU ${LOAD_CPU}, proxy on CPU ${PROXY_CPU}, backends unpinned. Reproduce: \`npm run build && npm --prefix native-bench run bench:udp -- --rounds ${o.rounds} --duration ${o.duration}\`.`,
    '',
    '- **pps**: `iperf3 -u -b 0 -l 64 -t D -O 1`, one stream sending as fast as it can; packets per second the iperf3 server received. "× docker-proxy" is against docker-proxy `-proto udp` in the same run. Loss is what the sender offered beyond what got through.',
    '- **rr1 / rr32**: 1 or 32 flows, each with one 64-byte datagram in flight, against a Node UDP echo server: round trips per second, p50 and p99 in µs.',
    '- proxy CPU: % of one core over the pps run.',
    '',
    '| contender | pps | × docker-proxy | loss | proxy CPU % | rr1/s | rr1 p50 µs | rr1 p99 µs | rr32/s | rr32 p99 µs |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
    '',
    ...chosen.map((c) => `- ${c.label}: \`${c.command}\``),
    ...notes.map((n) => `- ${n}`),
    UDP_END,
  ].join('\n');
  process.stdout.write(md + '\n');
  mkdirSync(join(here, '..', '..', 'results'), { recursive: true });
  writeFileSync(join(here, '..', '..', 'results', `udp-${Date.now()}.json`), JSON.stringify({ rounds: o.rounds, duration: o.duration, res }, null, 2));
  if (o.docs !== undefined) {
    const doc = readFileSync(o.docs, 'utf8');
    const a = doc.indexOf(UDP_START);
    const b = doc.indexOf(UDP_END);
    const next = a >= 0 && b > a ? doc.slice(0, a) + md + doc.slice(b + UDP_END.length) : `${doc.trimEnd()}\n\n${md}\n`;
    writeFileSync(o.docs, next);
  }
}

await main();
