// `--relay` (issue 12): relay mode, the macOS and Windows path, against the
// paths a kind user has, end to end through the real Docker engine.
//
// A kind-like cluster: one node container on its own network, with kind's
// labels, nginx on NodePort 30080 and iperf3 -s on 30201 (busybox, nginx and
// iperf3 copied from this host, as the main mode's image). Paths, interleaved
// in shuffled order every round:
//   direct        client → node:30080
//   portmap       client → docker-proxy (dockerd's, -p 127.0.0.1::30080) → node
//   cpk           client → a standalone docker-proxy on the host (cloud-provider-kind's
//                 Go tunnel: io.Copy) → dockerd's docker-proxy → an HAProxy container
//                 on the kind network (its Envoy) → node: three hops
//   relay-js      client → kind-tunnel's data plane, KT_NATIVE=0 (a Mac or Windows host)
//                 → dockerd's docker-proxy → the relay container → node: three hops
//   relay-native  the same with the host's native splicer and accept lane (Linux)
//   relay-js+fwdD the JS host dialing the relay through a forwarder that waits D ms
//                 before each onward connect (D = 0 is the reference for the delayed ones)
//   relay-js and relay-native use the relay transport `auto`, the default: a pooled
//                 connection per client while new connections come slowly, streams
//                 over mux carriers from 5 new connections a second (the relay's addon serves them)
//   relay-pool    relay-js with the pool only (`--transport pool`)
//   relay-mux     relay-js with the multiplexed transport only (streams over two
//                 long-lived relay connections, src/relay/mux-client.ts)
//   relay-mux+fwdD the same behind the delay forwarder
// Placement `mac`: CPU 0 is the host (load generators, the kind-tunnel host process,
// cloud-provider-kind's tunnel), CPU 1 the Docker VM (every container, dockerd's
// docker-proxy processes, the delay forwarders). `shared`: nothing pinned.
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { buildImage } from './backends.js';
import { installPackedPackage } from './installed.js';
import { parseIperf, parseTtfb, parseWrk, WRK_SCRIPT } from './parse.js';
import { findProcesses, freePort, offCleanup, onCleanup, run, sleep, start, stop, waitForOutput, type Proc } from './proc.js';
import { rng, shuffle } from './stats.js';

const execFileP = promisify(execFile);

export const RELAY_START = '<!-- relay:start -->';
export const RELAY_END = '<!-- relay:end -->';

export const RELAY_USAGE = `usage: npm run bench -- --relay [options]

Relay mode against direct, port mapping and cloud-provider-kind's shape, through
the real Docker engine (about 8 minutes with the defaults).
  --rounds N          interleaved rounds per placement (default 3)
  --duration S        seconds per wrk and iperf3 run (default 3)
  --ttfb-samples N    sequential fresh connections per path and round (default 200)
  --placements LIST   mac,shared (default both)
  --delays LIST       forwarder connect delays in ms for relay-js (default 1,5; 0 is always added)
  --seed N            seed of the shuffled order
  --out FILE          results JSON (default results/<time>-relay.json)
  --docs-dir DIR      where benchmarks.md is (default ../docs); --no-docs to skip
  --installed         kind-tunnel as a user installs it: the repository packed and
                      installed into an empty prefix (or KT_INSTALLED=PREFIX/bin/kind-tunnel);
                      the relay hosts load that package, and its relay image is built
                      from it (the tarball's linux prebuild), not from this checkout
  --access-log        the hosts log a line per connection, as \`up\` does by default
                      (to a file under /tmp); without it they log warnings only
`;

export class RelayUsageError extends Error {}

export interface RelayOptions {
  rounds: number;
  durationS: number;
  ttfbSamples: number;
  placements: Array<'mac' | 'shared'>;
  delays: number[];
  seed: number;
  out: string | undefined;
  docsDir: string | undefined;
  /** Run the hosts and build the relay image from the packed, installed package. */
  installed: boolean;
  /** The relay hosts write `up`'s default access log (a line per connection) to a file. */
  accessLog: boolean;
}

function intArg(name: string, v: string | undefined, min: number, max: number): number {
  const n = Number(v);
  if (v === undefined || !Number.isInteger(n) || n < min || n > max) throw new RelayUsageError(`${name} needs an integer from ${min} to ${max}, got ${JSON.stringify(v ?? '')}`);
  return n;
}

export function parseRelayOptions(argv: readonly string[], defaultDocsDir: string): RelayOptions {
  const o: RelayOptions = { rounds: 3, durationS: 3, ttfbSamples: 200, placements: ['mac', 'shared'], delays: [1, 5], seed: Date.now() % 1_000_000, out: undefined, docsDir: defaultDocsDir, installed: false, accessLog: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string | undefined => argv[++i];
    switch (a) {
      case '--relay': break;
      case '--rounds': o.rounds = intArg(a, next(), 1, 20); break;
      case '--duration': o.durationS = intArg(a, next(), 1, 60); break;
      case '--ttfb-samples': o.ttfbSamples = intArg(a, next(), 10, 5000); break;
      case '--seed': o.seed = intArg(a, next(), 0, 2 ** 31); break;
      case '--placements': {
        const l = (next() ?? '').split(',').filter((x) => x !== '');
        if (l.length === 0 || l.some((x) => x !== 'mac' && x !== 'shared')) throw new RelayUsageError('--placements is a list of mac, shared');
        o.placements = l as Array<'mac' | 'shared'>;
        break;
      }
      case '--delays': {
        const l = (next() ?? '').split(',').filter((x) => x !== '').map((x) => intArg('--delays', x, 0, 100));
        o.delays = l;
        break;
      }
      case '--out': o.out = next(); if (o.out === undefined) throw new RelayUsageError('--out needs a file'); break;
      case '--docs-dir': o.docsDir = next(); if (o.docsDir === undefined) throw new RelayUsageError('--docs-dir needs a directory'); break;
      case '--no-docs': o.docsDir = undefined; break;
      case '--installed': o.installed = true; break;
      case '--access-log': o.accessLog = true; break;
      default: throw new RelayUsageError(`unknown option ${a} (with --relay)`);
    }
  }
  return o;
}

async function docker(args: string[], timeoutMs = 60_000): Promise<string> {
  const { stdout } = await execFileP('docker', args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 });
  return stdout.trim();
}

async function sharedLibs(binary: string): Promise<string[]> {
  const { stdout } = await execFileP('ldd', [binary], { timeout: 10_000 });
  const libs: string[] = [];
  for (const line of stdout.split('\n')) {
    const m = line.match(/(?:=>\s+)?(\/\S+)\s+\(0x/);
    if (m?.[1] !== undefined) libs.push(m[1]);
  }
  return libs;
}

/** HAProxy from this host, with its libraries, in an imported image (cloud-provider-kind's Envoy stand-in). */
export async function haproxyImage(): Promise<string> {
  const bin = '/usr/sbin/haproxy';
  const files = new Set<string>([bin, '/usr/bin/busybox', ...(await sharedLibs(bin))]);
  const hash = createHash('sha256');
  for (const f of [...files].sort()) { const st = statSync(f); hash.update(`${f}:${st.size}:${st.mtimeMs}\n`); }
  const tag = `kind-tunnel-bench-haproxy:${hash.digest('hex').slice(0, 12)}`;
  try { await docker(['image', 'inspect', tag], 10_000); return tag; } catch { /* build it */ }
  const root = mkdtempSync('/tmp/kt-bench-haproxy-');
  try {
    for (const f of files) { mkdirSync(join(root, dirname(f)), { recursive: true }); copyFileSync(f, join(root, f)); }
    for (const d of ['bin', 'tmp', 'etc']) mkdirSync(join(root, d), { recursive: true });
    copyFileSync('/usr/bin/busybox', join(root, 'bin/sh'));
    writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/:/bin/sh\n');
    await execFileP('sh', ['-c', `tar -C "$1" -c . | docker import -c 'ENV PATH=/usr/sbin:/usr/bin:/bin' - "$2"`, 'sh', root, tag], { timeout: 120_000 });
    return tag;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

const KIND_CLUSTER_LABEL = 'io.x-k8s.kind.cluster';
const KIND_ROLE_LABEL = 'io.x-k8s.kind.role';
const BENCH_LABEL = 'dev.kind-tunnel.bench';

export interface Cluster {
  name: string;
  network: string;
  node: { name: string; ip: string };
  portmap: { http: number; bulk: number };
  haproxy: { http: number; bulk: number };
  containers: string[];
}

function nodeScript(): string {
  // The main image's nginx config, moved to the NodePort; iperf3 on a second NodePort.
  return [
    'IP=$(busybox hostname -i | busybox cut -d" " -f1)',
    'busybox sed "s/__IP__:80/$IP:30080/" /etc/bench/nginx.conf.in > /tmp/nginx.conf',
    'iperf3 -s -B "$IP" -p 30201 &',
    'exec nginx -p /tmp -c /tmp/nginx.conf',
  ].join('\n');
}

export async function publishedPort(container: string, port: number): Promise<number> {
  const out = await docker(['port', container, `${port}/tcp`], 10_000);
  const m = out.match(/^127\.0\.0\.1:(\d+)$/m);
  if (!m) throw new Error(`docker port ${container} ${port}: unexpected "${out}"`);
  return Number(m[1]);
}

export async function makeCluster(image: string, haproxy: string): Promise<Cluster> {
  const name = `ktbr${process.pid.toString(36)}`;
  const network = `${name}-net`;
  const containers: string[] = [];
  const cleanup = (): void => {
    for (const c of [...containers, `kind-tunnel-relay-${name}`]) { try { execFileSync('docker', ['rm', '-f', c], { stdio: 'ignore', timeout: 15_000 }); } catch { /* gone */ } }
    try { execFileSync('docker', ['network', 'rm', network], { stdio: 'ignore', timeout: 15_000 }); } catch { /* gone */ }
  };
  onCleanup(`relaybench:${name}`, cleanup);
  await docker(['network', 'create', '--label', `${BENCH_LABEL}=${name}`, network]);
  const nodeName = `${name}-control-plane`;
  containers.push(nodeName);
  await docker(['run', '-d', '--name', nodeName, '--hostname', nodeName, '--network', network,
    '--label', `${KIND_CLUSTER_LABEL}=${name}`, '--label', `${KIND_ROLE_LABEL}=control-plane`, '--label', `${BENCH_LABEL}=${name}`,
    '-p', '127.0.0.1::30080', '-p', '127.0.0.1::30201', image, '/bin/sh', '-c', nodeScript()]);
  const ip = await docker(['inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, nodeName]);
  const cfg = [
    'global', '  nbthread 1',
    'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 1h', '  timeout server 1h',
    'frontend http', '  bind __IP__:10000', '  default_backend http',
    'backend http', `  server n1 ${ip}:30080`,
    'frontend bulk', '  bind __IP__:10001', '  default_backend bulk',
    'backend bulk', `  server n1 ${ip}:30201`, '',
  ].join('\n');
  const hname = `${name}-haproxy`;
  containers.push(hname);
  await docker(['run', '-d', '--name', hname, '--network', network, '--label', `${BENCH_LABEL}=${name}`,
    '-p', '127.0.0.1::10000', '-p', '127.0.0.1::10001', haproxy, '/bin/sh', '-c',
    `IP=$(busybox hostname -i | busybox cut -d" " -f1); printf '%s' '${cfg.replace(/'/g, '')}' | busybox sed "s/__IP__/$IP/" > /tmp/h.cfg; exec haproxy -db -f /tmp/h.cfg`]);
  await sleep(300);
  const state = await docker(['inspect', '-f', '{{.State.Status}}', hname]);
  if (state !== 'running') throw new Error(`the HAProxy container is ${state}: ${await docker(['logs', hname]).catch((e: Error) => e.message)}`);
  const c: Cluster = {
    name, network, node: { name: nodeName, ip },
    portmap: { http: await publishedPort(nodeName, 30080), bulk: await publishedPort(nodeName, 30201) },
    haproxy: { http: await publishedPort(hname, 10000), bulk: await publishedPort(hname, 10001) },
    containers,
  };
  await waitHttp('127.0.0.1', c.portmap.http, 20_000);
  await waitHttp('127.0.0.1', c.haproxy.http, 20_000);
  return c;
}

/** The node image, HAProxy's, kind-tunnel's base image (for the relay container, from `repoDir`), and the kind-like cluster on them. */
export async function benchImagesAndCluster(repoDir: string): Promise<{ image: string; hap: string; base: string; cl: Cluster }> {
  const image = await buildImage();
  const hap = await haproxyImage();
  const base = (await execFileP('sh', [join(repoDir, 'docker', 'build-base.sh')], { timeout: 180_000 })).stdout.trim().split('\n').pop() as string;
  return { image, hap, base, cl: await makeCluster(image, hap) };
}

export async function waitHttp(host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
    try {
      const r = await fetch(`http://${host}:${port}/`, { signal: AbortSignal.timeout(1000) });
      await r.text();
      if (r.status === 200) return;
    } catch { /* not yet */ }
    await sleep(100);
  }
  throw new Error(`${host}:${port} did not answer HTTP within ${timeoutMs} ms`);
}

interface Path {
  id: string;
  /** Where the load generators connect. */
  addr: string;
  http: number;
  bulk: number;
  /** Host-side processes of this path (pinned to CPU 0 in `mac`). */
  host: Proc[];
  /** Only TTFB and new connections (the delay variants). */
  short?: boolean;
}

interface Sample { placement: string; round: number; path: string; workload: string; metrics: Record<string, number>; error?: string }

export function pin(pids: number[], cpu: string): void {
  for (const pid of pids) { try { execFileSync('taskset', ['-a', '-p', '-c', cpu, String(pid)], { stdio: 'ignore', timeout: 5000 }); } catch { /* exited */ } }
}

export function procTree(pid: number): number[] {
  try {
    const out = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8', timeout: 5000 });
    const kids = out.split('\n').map((l) => Number(l.trim())).filter((n) => n > 0);
    return [pid, ...kids.flatMap(procTree)];
  } catch { return [pid]; }
}

export interface RelayCtx { repoDir: string; benchDir: string; buildDir: string; defaultDocsDir: string }

export async function relayMain(argv: readonly string[], ctx: RelayCtx): Promise<number> {
  let o: RelayOptions;
  try { o = parseRelayOptions(argv, ctx.defaultDocsDir); } catch (err) {
    if (err instanceof RelayUsageError) { process.stderr.write(`native-bench: ${err.message}\n${RELAY_USAGE}`); return 2; }
    throw err;
  }
  const log = (m: string): void => { process.stderr.write(`[relay] ${m}\n`); };
  const notes: string[] = [];
  const startedAt = new Date().toISOString();
  const load0 = loadavg();
  // --installed: the package a user gets (installed.ts). Its docker/ builds the base, its
  // ensureRelay builds the relay image from its own files, and the hosts load its dist.
  const pkg = o.installed ? installPackedPackage(mkdtempSync('/tmp/kt-relaybench-pkg-')) : undefined;
  const ktDir = pkg?.pkgDir ?? ctx.repoDir;
  if (pkg !== undefined) log(`installed package ${pkg.pkgDir}`);
  const { image, hap, base, cl } = await benchImagesAndCluster(ktDir);
  log(`images ${image} ${hap} ${base}`);
  log(`cluster ${cl.name}: node ${cl.node.ip}`);
  const node = process.execPath;
  const paths: Path[] = [
    { id: 'direct', addr: cl.node.ip, http: 30080, bulk: 30201, host: [] },
    { id: 'portmap', addr: '127.0.0.1', http: cl.portmap.http, bulk: cl.portmap.bulk, host: [] },
  ];
  const procs: Proc[] = [];
  // --access-log: the hosts' logs, removed at the end (a line per connection: about 100 MB a run).
  const logDir = o.accessLog ? mkdtempSync('/tmp/kt-relaybench-logs-') : undefined;
  try {
    // cloud-provider-kind's host tunnel: a standalone docker-proxy per port, onto the HAProxy container's published ports.
    const cpkHttp = await freePort();
    const cpkBulk = await freePort();
    const tunnel = (hp: number, target: number): Proc => start(`cpk-tunnel-${hp}`, '/usr/sbin/docker-proxy', ['-proto', 'tcp', '-host-ip', '127.0.0.1', '-host-port', String(hp), '-container-ip', '127.0.0.1', '-container-port', String(target)], { fd3DevNull: true });
    const t1 = tunnel(cpkHttp, cl.haproxy.http);
    const t2 = tunnel(cpkBulk, cl.haproxy.bulk);
    procs.push(t1, t2);
    await waitHttp('127.0.0.1', cpkHttp, 10_000);
    paths.push({ id: 'cpk', addr: '127.0.0.1', http: cpkHttp, bulk: cpkBulk, host: [t1, t2] });

    const hostScript = join(ctx.buildDir, 'relay-host.js');
    const relayHost = async (id: string, env: NodeJS.ProcessEnv, via?: number, transport = 'auto'): Promise<Path> => {
      const http = await freePort();
      const bulk = await freePort();
      const args = [hostScript, '--cluster', cl.name, '--network', cl.network, '--base', base, '--node', cl.node.ip, '--http-port', String(http), '--bulk-port', String(bulk), '--transport', transport, ...(via !== undefined ? ['--via', String(via)] : [])];
      const logEnv = logDir !== undefined ? { KT_BENCH_ACCESS_LOG: join(logDir, `${id}.log`) } : {};
      const p = start(id, node, args, { env: { ...process.env, KT_BENCH_REPO: ktDir, ...logEnv, ...env } });
      procs.push(p);
      const m = await waitForOutput(p, /^ready (\{.*\})$/m, 180_000);
      log(`${id}: ${m[1]}`);
      return { id, addr: '127.0.0.1', http, bulk, host: [p] };
    };
    const js = await relayHost('relay-js', { KT_NATIVE: '0' });
    paths.push(js);
    paths.push(await relayHost('relay-native', {}));
    const pool = await relayHost('relay-pool', { KT_NATIVE: '0' }, undefined, 'pool');
    paths.push(pool);
    const mux = await relayHost('relay-mux', { KT_NATIVE: '0' }, undefined, 'mux');
    paths.push(mux);
    const relayPort = await publishedPort(`kind-tunnel-relay-${cl.name}`, 7000);
    const forwarders: Proc[] = [];
    for (const d of [0, ...o.delays.filter((x) => x !== 0)]) {
      const f = start(`fwd-${d}`, node, [join(ctx.buildDir, 'delay-forwarder.js'), String(relayPort), String(d)]);
      procs.push(f);
      forwarders.push(f);
      const m = await waitForOutput(f, /^listening (\d+)$/m, 10_000);
      const p = await relayHost(`relay-js+fwd${d}`, { KT_NATIVE: '0' }, Number(m[1]));
      p.short = true;
      paths.push(p);
      const pm = await relayHost(`relay-mux+fwd${d}`, { KT_NATIVE: '0' }, Number(m[1]), 'mux');
      pm.short = true;
      paths.push(pm);
    }

    const samples: Sample[] = [];
    const rand = rng(o.seed);
    const order: string[][] = [];
    const wrkScript = join(mkdtempSync('/tmp/kt-relaybench-'), 'p.lua');
    writeFileSync(wrkScript, WRK_SCRIPT);
    const dockerProxies = (): number[] => [cl.portmap.http, cl.portmap.bulk, cl.haproxy.http, cl.haproxy.bulk, relayPort].flatMap((p) => findProcesses(['-host-port', String(p)]));
    for (const placement of o.placements) {
      const hostCpu = placement === 'mac' ? '0' : undefined;
      const vmCpu = placement === 'mac' ? '1' : '0,1';
      for (const c of [...cl.containers, `kind-tunnel-relay-${cl.name}`]) await docker(['update', '--cpuset-cpus', vmCpu, c], 20_000);
      pin(dockerProxies().flatMap(procTree), vmCpu);
      pin(forwarders.flatMap((f) => procTree(f.pid)), vmCpu);
      for (const p of paths) pin(p.host.flatMap((h) => procTree(h.pid)), hostCpu ?? '0,1');
      log(`placement ${placement}`);
      for (let round = 1; round <= o.rounds; round++) {
        const ids = shuffle(paths.map((p) => p.id), rand);
        order.push([placement, ...ids]);
        for (const id of ids) {
          const p = paths.find((x) => x.id === id) as Path;
          const wl: Array<[string, () => Promise<Record<string, number>>]> = [];
          const wrk = async (close: boolean): Promise<Record<string, number>> => {
            const r = await run(`wrk-${id}`, 'wrk', ['-t1', '-c50', `-d${o.durationS}s`, '--latency', '-s', wrkScript, ...(close ? ['-H', 'Connection: close'] : []), `http://${p.addr}:${p.http}/`], { cpu: hostCpu, timeoutMs: (o.durationS + 20) * 1000 });
            return parseWrk(r.stdout);
          };
          const ttfb = async (): Promise<Record<string, number>> => {
            const r = await run(`ttfb-${id}`, node, [join(ctx.buildDir, 'ttfb-client.js'), String(p.http), String(o.ttfbSamples), 'bench.localhost', '30000', '2', p.addr], { cpu: hostCpu, timeoutMs: 40_000 });
            return parseTtfb(r.stdout);
          };
          const bulk = async (): Promise<Record<string, number>> => {
            const r = await run(`iperf-${id}`, 'iperf3', ['-c', p.addr, '-p', String(p.bulk), '-t', String(o.durationS), '-O', '1', '-J', '--connect-timeout', '3000'], { cpu: hostCpu, timeoutMs: (o.durationS + 25) * 1000 });
            return parseIperf(r.stdout);
          };
          const ttfbKeep = async (): Promise<Record<string, number>> => {
            const r = await run(`ttfbk-${id}`, node, [join(ctx.buildDir, 'ttfb-client.js'), String(p.http), String(o.ttfbSamples), 'bench.localhost', '30000', '2', p.addr, 'keep'], { cpu: hostCpu, timeoutMs: 40_000 });
            return parseTtfb(r.stdout);
          };
          wl.push(['ttfb', ttfb], ['connclose', () => wrk(true)]);
          if (id.startsWith('relay-') && id !== 'relay-native') wl.push(['ttfbkeep', ttfbKeep]);
          if (p.short !== true) wl.push(['wrk', () => wrk(false)], ['bulk', bulk]);
          for (const [w, fn] of wl) {
            try {
              const metrics = await fn();
              samples.push({ placement, round, path: id, workload: w, metrics });
            } catch (err) {
              samples.push({ placement, round, path: id, workload: w, metrics: {}, error: (err as Error).message.split('\n')[0] ?? 'error' });
              log(`${placement} r${round} ${id} ${w}: ${(err as Error).message.split('\n')[0]}`);
            }
          }
        }
        // TTFB in paired turns: one fresh connection through each of these paths
        // in a shuffled order per turn, so all see the same moment's load (the
        // sequential figure above moves with whatever else ran during its own run).
        const pairIds = ['portmap', 'cpk', 'relay-js', 'relay-pool', 'relay-mux'].filter((id) => paths.some((x) => x.id === id && x.addr === '127.0.0.1'));
        if (pairIds.length >= 2) {
          try {
            const ports = pairIds.map((id) => (paths.find((x) => x.id === id) as Path).http);
            const r = await run('ttfb-pair', node, [join(ctx.buildDir, 'ttfb-pair.js'), ports.join(','), String(o.ttfbSamples), '2'], { cpu: hostCpu, timeoutMs: 120_000 });
            const j = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { p50: number[] };
            pairIds.forEach((id, i) => { samples.push({ placement, round, path: id, workload: 'ttfbpair', metrics: { p50: j.p50[i] ?? Number.NaN } }); });
          } catch (err) {
            log(`${placement} r${round} ttfb-pair: ${(err as Error).message.split('\n')[0]}`);
          }
        }
        log(`${placement} round ${round} done`);
      }
    }
    // Each relay host prints its dialer's stats every 5 s: the last, per transport.
    for (const [p, what] of [[js, 'relay-js host dialer (auto)'], [pool, 'relay-pool host pool'], [mux, 'relay-mux host dialer']] as const) {
      const last = p.host[0]?.stdout.split('\n').filter((l) => l.startsWith('pool ')).pop();
      if (last !== undefined) notes.push(`${what} at the end: ${last.slice(5)}`);
    }
    const results = {
      schema: 1, mode: 'relay', command: `npm run bench -- ${argv.join(' ')}`, startedAt, finishedAt: new Date().toISOString(),
      machine: { cpuModel: cpus()[0]?.model ?? '', cores: cpus().length, kernel: release(), node: process.version, loadAvgStart: load0, loadAvgEnd: loadavg() },
      method: { ...o, order }, samples, notes,
    };
    const out = o.out ?? join(ctx.benchDir, 'results', `${startedAt.replace(/[:.]/g, '-')}-relay.json`);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify(results, null, 2));
    log(`results ${out}`);
    const md = relayReport(results);
    process.stdout.write(md + '\n');
    if (o.docsDir !== undefined) writeDocs(join(o.docsDir, 'benchmarks.md'), md);
    return 0;
  } finally {
    for (const p of procs.reverse()) await stop(p).catch(() => undefined);
    offCleanup(`relaybench:${cl.name}`);
    if (logDir !== undefined) rmSync(logDir, { recursive: true, force: true });
    for (const c of [...cl.containers, `kind-tunnel-relay-${cl.name}`]) await docker(['rm', '-f', c], 30_000).catch(() => undefined);
    await docker(['network', 'rm', cl.network], 30_000).catch(() => undefined);
  }
}

function median(xs: number[]): number {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

interface Results { command: string; startedAt: string; machine: { loadAvgStart: number[]; loadAvgEnd: number[] }; method: RelayOptions; samples: Sample[]; notes: string[] }

/** Medians per placement and path: keep-alive req/s, new conn/s, TTFB p50 (ms), bulk Gbit/s; and the issue's targets as ratios. */
export function relayReport(r: Results): string {
  const lines: string[] = [RELAY_START, '## Relay mode (issue 12): the macOS and Windows path', ''];
  lines.push(`Command: \`${r.command}\` (from native-bench/, after \`npm run build\` in the root). Run ${r.startedAt}; load average ${r.machine.loadAvgStart.map((x) => x.toFixed(1)).join(' ')} at the start, ${r.machine.loadAvgEnd.map((x) => x.toFixed(1)).join(' ')} at the end.`, '');
  lines.push(
    'Method: a kind-like cluster in the real Docker engine (one node container with kind\'s labels on its own network; nginx, one worker, 100-byte body, on NodePort 30080; `iperf3 -s` on 30201; busybox, nginx and iperf3 copied from this host into an imported image). Paths: **direct** (client → node); **portmap** (dockerd\'s docker-proxy for `-p 127.0.0.1::30080`, what `extraPortMappings` gives, standing in for Docker Desktop\'s forwarder); **cpk**, cloud-provider-kind\'s shape (a standalone docker-proxy on the host for its Go tunnel → dockerd\'s docker-proxy → an HAProxy container, `nbthread 1`, mode tcp, for its Envoy → node: three hops); **relay-js** (kind-tunnel\'s data plane with `KT_NATIVE=0`, as on a Mac or Windows host, with the relay dialer as `up --mode relay` builds it, transport `auto` → dockerd\'s docker-proxy → the relay container `up` starts → node: three hops; `auto` dials a pooled relay connection per client while new connections come slowly and opens streams over two multiplexed relay connections from 5 new connections a second to a destination, against this relay, whose addon serves them (`INFO_MUX_LANE`; 20 a second against a relay without an addon, 400 against one whose addon accepts but leaves the streams to its JS), and a destination that just moved 4 MiB in one connection keeps the pool for a minute); **relay-pool** and **relay-mux** (relay-js with one transport only: `--relay-transport pool` or `mux`); **relay-native** (the same host on the native splicer; relay-dialed listeners stay off the native accept lane); **relay-js+fwdD** (relay-js dialing the relay through a forwarder, `src/delay-forwarder.ts`, that waits D ms before each onward connect; data is not delayed; D = 0 is the reference for the others). `native-bench/src/relay-host.ts` runs the host side: kind-tunnel\'s ListenerManager and RelayDialer with their defaults and the routes computeRoutes makes, without the controller (no Kubernetes API in the loop). Workloads, one after another in shuffled path order each round: `wrk -t1 -c50` keep-alive and with `Connection: close` (new conn/s), TTFB p50 of sequential fresh connections (`ttfb-client.js`, 2 ms apart), for relay paths also TTFB of requests on one already-open connection (ttfb open), and `iperf3 -c -t D -O 1` through the bulk port; after each round, TTFB p50 in paired turns (`ttfb-pair.js`: each turn one fresh connection through port mapping, cloud-provider-kind\'s shape, relay-js, relay-pool and relay-mux in a shuffled order, 2 ms apart, as many turns as TTFB samples), which sees every path under the same moment\'s load. Placement **mac**: `taskset` CPU 0 for the load generators, the kind-tunnel host process and the cloud-provider-kind tunnel; CPU 1 (`docker update --cpuset-cpus 1`, `taskset -a -p`) for every container, dockerd\'s docker-proxy processes and the delay forwarders. **shared**: nothing pinned.',
    '',
    r.method.installed === true
      ? 'Package: kind-tunnel as a user installs it. The repository was packed (`npm pack`, whose prepack builds the prebuilds) and installed with `npm install -g --prefix` into an empty prefix; the relay hosts load that package (`KT_BENCH_REPO`), and `up`\'s relay image was built from it, with the tarball\'s linux-x64 prebuild in the relay container.'
      : 'Package: this checkout\'s build (`dist/` and the addon compiled here); `--installed` runs the same bench from the packed, installed package.',
    '',
    r.method.accessLog === true
      ? 'Access log: on, as `up` runs by default (a line per connection at close, level info, pino\'s async destination), written to a file.'
      : 'Access log: off in the relay hosts (warnings only); `up` logs a line per connection by default, and `--access-log` measures with it.',
    '',
    'Contention: the load averages above are the whole machine\'s; a figure above about 1 at the start means other work shared the 2 cores, which single-CPU placements suffer most from. Absolute figures move between runs; the ratios come from the same interleaved rounds.',
    '',
  );
  const get = (pl: string, path: string, w: string, k: string): number => median(r.samples.filter((s) => s.placement === pl && s.path === path && s.workload === w && s.error === undefined).map((s) => s.metrics[k] ?? Number.NaN));
  const fmt = (x: number, d = 1): string => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
  for (const pl of r.method.placements) {
    const paths = [...new Set(r.samples.filter((s) => s.placement === pl).map((s) => s.path))];
    const delayOf = (p: string): number => Number(p.slice(p.indexOf('+fwd') + 4));
    const order = ['direct', 'portmap', 'cpk', 'relay-js', 'relay-native', 'relay-pool', 'relay-mux', ...paths.filter((p) => p.startsWith('relay-js+')).sort((a, b) => delayOf(a) - delayOf(b)), ...paths.filter((p) => p.startsWith('relay-mux+')).sort((a, b) => delayOf(a) - delayOf(b))];
    lines.push(`### Placement: ${pl === 'mac' ? 'Mac-like (CPU 0 host, CPU 1 the Docker VM)' : 'shared (nothing pinned)'}`, '');
    lines.push('| path | keep-alive req/s | new conn/s | TTFB p50 ms | TTFB p50 ms, paired turns | ttfb open ms | bulk Gbit/s |', '|---|---|---|---|---|---|---|');
    const k = (x: number): string => (Number.isFinite(x) ? `${fmt(x / 1000, 2)}k` : 'n/a');
    for (const p of order.filter((x) => paths.includes(x))) {
      lines.push(`| ${p} | ${k(get(pl, p, 'wrk', 'rps'))} | ${k(get(pl, p, 'connclose', 'rps'))} | ${fmt(get(pl, p, 'ttfb', 'p50') / 1000, 2)} | ${fmt(get(pl, p, 'ttfbpair', 'p50') / 1000, 2)} | ${fmt(get(pl, p, 'ttfbkeep', 'p50') / 1000, 2)} | ${fmt(get(pl, p, 'bulk', 'gbps'), 2)} |`);
    }
    const ratio = (a: number, b: number): string => fmt(a / b, 2);
    const rj = (w: string, k: string): number => get(pl, 'relay-js', w, k);
    lines.push('', `Ratios, relay-js (pure-JS host) over cloud-provider-kind's shape: keep-alive ${ratio(rj('wrk', 'rps'), get(pl, 'cpk', 'wrk', 'rps'))}×, new conn/s ${ratio(rj('connclose', 'rps'), get(pl, 'cpk', 'connclose', 'rps'))}×, bulk ${ratio(rj('bulk', 'gbps'), get(pl, 'cpk', 'bulk', 'gbps'))}× (targets ≥ 1.0).`);
    lines.push(`Over port mapping: keep-alive ${ratio(rj('wrk', 'rps'), get(pl, 'portmap', 'wrk', 'rps'))}× (≥ 0.5), bulk ${ratio(rj('bulk', 'gbps'), get(pl, 'portmap', 'bulk', 'gbps'))}× (≥ 0.5), new conn/s ${ratio(rj('connclose', 'rps'), get(pl, 'portmap', 'connclose', 'rps'))}× (≥ 0.35), TTFB p50 ${ratio(rj('ttfb', 'p50'), get(pl, 'portmap', 'ttfb', 'p50'))}× (≤ 1.5), in paired turns ${ratio(rj('ttfbpair', 'p50'), get(pl, 'portmap', 'ttfbpair', 'p50'))}×.`);
    const keepBase = get(pl, 'relay-js', 'ttfbkeep', 'p50');
    if (Number.isFinite(keepBase)) {
      lines.push(`**Pool or multiplexing.** TTFB p50 of a fresh connection through relay-js ${fmt(rj('ttfb', 'p50') / 1000, 2)} ms, of a request on an already-open relay-js connection ${fmt(keepBase / 1000, 2)} ms (the floor a stream multiplexed over a long-lived connection could reach, before its own framing); behind +D ms: ${paths.filter((p) => p.startsWith('relay-js+fwd')).map((p) => `${p.slice(9)} fresh ${fmt(get(pl, p, 'ttfb', 'p50') / 1000, 2)} / open ${fmt(get(pl, p, 'ttfbkeep', 'p50') / 1000, 2)} ms`).join(', ')}.`);
    }
    for (const t of ['relay-js', 'relay-mux']) {
      const base = get(pl, `${t}+fwd0`, 'ttfb', 'p50');
      const delayed = paths.filter((p) => p.startsWith(`${t}+fwd`) && p !== `${t}+fwd0`);
      if (Number.isFinite(base) && delayed.length > 0) {
        lines.push(`${t === 'relay-js' ? 'Auto (relay-js)' : 'Mux (relay-mux)'} behind a forwarder's connect delay, TTFB p50 minus the same forwarder with no delay (${fmt(base / 1000, 2)} ms): ${delayed.map((p) => `+${delayOf(p)} ms → ${fmt((get(pl, p, 'ttfb', 'p50') - base) / 1000, 2)} ms`).join(', ')} (target ≤ 0.3 ms).`);
      }
    }
    lines.push('', ...targetsTable((path, w, k) => get(pl, path, w, k), paths))
    const rm = (w: string, k: string): number => get(pl, 'relay-mux', w, k);
    const rp = (w: string, k: string): number => get(pl, paths.includes('relay-pool') ? 'relay-pool' : 'relay-js', w, k);
    if (Number.isFinite(rm('connclose', 'rps'))) {
      lines.push(`**Mux against pool** (relay-mux over ${paths.includes('relay-pool') ? 'relay-pool' : 'relay-js'}, same rounds): keep-alive ${ratio(rm('wrk', 'rps'), rp('wrk', 'rps'))}×, new conn/s ${ratio(rm('connclose', 'rps'), rp('connclose', 'rps'))}×, TTFB p50 ${fmt(rm('ttfb', 'p50') / 1000, 2)} against ${fmt(rp('ttfb', 'p50') / 1000, 2)} ms, bulk ${ratio(rm('bulk', 'gbps'), rp('bulk', 'gbps'))}×.`);
      lines.push(`relay-mux over cloud-provider-kind's shape: keep-alive ${ratio(rm('wrk', 'rps'), get(pl, 'cpk', 'wrk', 'rps'))}×, new conn/s ${ratio(rm('connclose', 'rps'), get(pl, 'cpk', 'connclose', 'rps'))}×, bulk ${ratio(rm('bulk', 'gbps'), get(pl, 'cpk', 'bulk', 'gbps'))}× (≥ 1.0); over port mapping: keep-alive ${ratio(rm('wrk', 'rps'), get(pl, 'portmap', 'wrk', 'rps'))}× (≥ 0.5), bulk ${ratio(rm('bulk', 'gbps'), get(pl, 'portmap', 'bulk', 'gbps'))}× (≥ 0.5), new conn/s ${ratio(rm('connclose', 'rps'), get(pl, 'portmap', 'connclose', 'rps'))}× (≥ 0.35), TTFB p50 ${ratio(rm('ttfb', 'p50'), get(pl, 'portmap', 'ttfb', 'p50'))}× (≤ 1.5).`);
    }
    lines.push('');
  }
  const errs = r.samples.filter((s) => s.error !== undefined);
  if (errs.length > 0) lines.push(`Failed runs: ${errs.map((s) => `${s.placement}/${s.path}/${s.workload} r${s.round}: ${s.error}`).join('; ')}.`, '');
  for (const n of r.notes) lines.push(`Note: ${n}`, '');
  lines.push(RELAY_END);
  return lines.join('\n');
}

type Getter = (path: string, workload: string, key: string) => number;

/** Issue 12's targets, one row each, for the default transport (relay-js, auto) and for pool and mux alone: the ratio and whether it holds. */
export function targetsTable(get: Getter, paths: readonly string[]): string[] {
  const transports = [['relay-js', 'auto (the default)'], ['relay-pool', 'pool only'], ['relay-mux', 'mux only']].filter(([p]) => paths.includes(p!)) as Array<[string, string]>;
  if (transports.length === 0) return [];
  const fmt = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
  const cell = (v: number, ok: boolean, unit = '×'): string => (Number.isFinite(v) ? (ok ? `**${fmt(v)}${unit} (met)**` : `${fmt(v)}${unit} (not met)`) : 'n/a');
  const rows: Array<[string, (t: string) => string]> = [
    ['keep-alive ≥ 1.0× cloud-provider-kind\'s shape', (t) => { const v = get(t, 'wrk', 'rps') / get('cpk', 'wrk', 'rps'); return cell(v, v >= 1); }],
    ['new conn/s ≥ 1.0× cloud-provider-kind\'s shape', (t) => { const v = get(t, 'connclose', 'rps') / get('cpk', 'connclose', 'rps'); return cell(v, v >= 1); }],
    ['bulk ≥ 1.0× cloud-provider-kind\'s shape', (t) => { const v = get(t, 'bulk', 'gbps') / get('cpk', 'bulk', 'gbps'); return cell(v, v >= 1); }],
    ['keep-alive ≥ 0.5× port mapping', (t) => { const v = get(t, 'wrk', 'rps') / get('portmap', 'wrk', 'rps'); return cell(v, v >= 0.5); }],
    ['bulk ≥ 0.5× port mapping', (t) => { const v = get(t, 'bulk', 'gbps') / get('portmap', 'bulk', 'gbps'); return cell(v, v >= 0.5); }],
    ['new conn/s ≥ 0.35× port mapping', (t) => { const v = get(t, 'connclose', 'rps') / get('portmap', 'connclose', 'rps'); return cell(v, v >= 0.35); }],
    ['TTFB p50 ≤ 1.5× port mapping', (t) => { const v = get(t, 'ttfb', 'p50') / get('portmap', 'ttfb', 'p50'); return cell(v, v <= 1.5); }],
    ['TTFB p50 behind +1 / +5 ms connect delay within 0.3 ms of +0', (t) => {
      const base = get(`${t}+fwd0`, 'ttfb', 'p50');
      const d = [1, 5].map((ms) => (get(`${t}+fwd${ms}`, 'ttfb', 'p50') - base) / 1000);
      if (!d.every(Number.isFinite)) return 'n/a';
      const txt = d.map((x) => `${x >= 0 ? '+' : ''}${x.toFixed(2)}`).join(' / ');
      return d.every((x) => x <= 0.3) ? `**${txt} ms (met)**` : `${txt} ms (not met)`;
    }],
  ];
  // Not one of the issue's targets: the same ratio from paired turns, where other work runs on a host's CPU between two of its connections.
  const paired = transports.map(([p, n]) => `${n} ${fmt(get(p, 'ttfbpair', 'p50') / get('portmap', 'ttfbpair', 'p50'))}×`).join(', ');
  return [
    `**Issue 12's targets, this placement, pure-JS host:**`, '',
    `| target | ${transports.map(([, n]) => n).join(' | ')} |`, `|---|${transports.map(() => '---|').join('')}`,
    ...rows.map(([name, f]) => `| ${name} | ${transports.map(([p]) => f(p)).join(' | ')} |`), '',
    `A stricter reading, not one of the issue's targets: TTFB p50 in paired turns (each turn one fresh connection through every path, so other work runs on a host's CPU between two of its connections and its code is partly out of the caches again) over port mapping's in the same turns: ${paired}.`, '',
  ];
}

export function extractRelaySection(existing: string | undefined): string | undefined {
  if (existing === undefined) return undefined;
  const a = existing.indexOf(RELAY_START);
  const b = existing.indexOf(RELAY_END);
  if (a < 0 || b < a) return undefined;
  return existing.slice(a, b + RELAY_END.length);
}

/** Replace the section in place, or append it; the rest of the page is left alone. */
export function writeDocs(file: string, section: string): void {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const a = text.indexOf(RELAY_START);
  const b = text.indexOf(RELAY_END);
  const next = a >= 0 && b > a ? text.slice(0, a) + section + text.slice(b + RELAY_END.length) : `${text.trimEnd()}\n\n${section}\n`;
  writeFileSync(file, next);
}
