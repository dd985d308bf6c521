// Slow connect path (issues #4 and #6): what a warm pool buys when the upstream
// connect is slow. This kernel has no netem qdisc, so the delay lives in the
// repo's slow forwarder (test/support/slow-forwarder.ts): it accepts at once,
// like Docker Desktop's port forwarder, and connects onward D ms later.
//
//   kt-pool0 / kt-pool8: client -> kind-tunnel proxy -> slow forwarder -> nginx
//   fwd-direct:          client -> slow forwarder -> nginx (the reference)
//   relay pooled/unpooled (in-process RelayDialer): client -> slow forwarder
//                        -> startRelay on 127.0.0.1 -> a responder on 198.18.213.1
//
// The relay refuses loopback destinations whatever its allowlist says
// (src/relay/allow.ts), so its destination sits on a dummy interface this mode
// creates (a veth pair: no dummy module here) with one address from
// 198.18.0.0/15 (RFC 2544's benchmarking range) and deletes afterwards; traffic to it never leaves the host's stack.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { cpus, loadavg, release } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { startHostBackends, type HostBackends } from './backends.js';
import { parseTtfb, parseWrk, WRK_SCRIPT } from './parse.js';
import { freePort, run, sleep, start, stop, waitForOutput, type Proc } from './proc.js';
import { percentileSorted, rng, shuffle, summarize } from './stats.js';

const execFileP = promisify(execFile);

export const SLOW_START = '<!-- slowpath:start -->';
export const SLOW_END = '<!-- slowpath:end -->';
const DUMMY_IF = 'ktbslow0';
const DUMMY_IP = '198.18.213.1';

export const SLOW_USAGE = `usage: npm run bench -- --slowpath [options]

Warm pools over a slow connect path (about 1-2 minutes with the defaults).
  --delay MS           the slow forwarder's onward connect delay (default 20)
  --rounds N           interleaved rounds (default 3, at least 1)
  --ttfb-samples N     sequential fresh connections per contender and round (default 200)
  --duration S         wrk -t1 -c4 Connection: close run, seconds (default 3)
  --pool-size N        the pooled kind-tunnel's --pool-size (default 8)
  --relay-samples N    relay dials per variant and round (default 200; 0 skips the relay)
  --seed N             seed of the shuffled order
  --out FILE           results JSON (default results/<time>-slowpath.json)
  --docs-dir DIR       where benchmarks.md is (default ../docs); --no-docs to skip
`;

export interface SlowOptions {
  delayMs: number;
  rounds: number;
  ttfbSamples: number;
  durationS: number;
  poolSize: number;
  relaySamples: number;
  seed: number;
  out: string | undefined;
  docsDir: string | undefined;
}

export class SlowUsageError extends Error {}

function intArg(name: string, v: string | undefined, min: number, max: number): number {
  const n = Number(v);
  if (v === undefined || !Number.isInteger(n) || n < min || n > max) throw new SlowUsageError(`${name} needs an integer from ${min} to ${max}, got ${JSON.stringify(v ?? '')}`);
  return n;
}

export function parseSlowOptions(argv: readonly string[], defaultDocsDir: string): SlowOptions {
  const o: SlowOptions = { delayMs: 20, rounds: 3, ttfbSamples: 200, durationS: 3, poolSize: 8, relaySamples: 200, seed: Date.now() % 1_000_000, out: undefined, docsDir: defaultDocsDir };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string | undefined => argv[++i];
    switch (a) {
      case '--slowpath':
        break;
      case '--delay': o.delayMs = intArg(a, next(), 0, 2000); break;
      case '--rounds': o.rounds = intArg(a, next(), 1, 20); break;
      case '--ttfb-samples': o.ttfbSamples = intArg(a, next(), 1, 5000); break;
      case '--duration': o.durationS = intArg(a, next(), 1, 60); break;
      case '--pool-size': o.poolSize = intArg(a, next(), 1, 1000); break;
      case '--relay-samples': o.relaySamples = intArg(a, next(), 0, 5000); break;
      case '--seed': o.seed = intArg(a, next(), 0, 2 ** 31); break;
      case '--out':
        o.out = next();
        if (o.out === undefined) throw new SlowUsageError('--out needs a file');
        break;
      case '--docs-dir':
        o.docsDir = next();
        if (o.docsDir === undefined) throw new SlowUsageError('--docs-dir needs a directory');
        break;
      case '--no-docs': o.docsDir = undefined; break;
      default: throw new SlowUsageError(`unknown option ${a} (with --slowpath)`);
    }
  }
  return o;
}

export interface SlowSample {
  round: number;
  contender: string;
  /** µs for TTFB, connections/s for rps. */
  metrics: Record<string, number>;
  error?: string;
}

export interface SlowResults {
  schema: 1;
  mode: 'slowpath';
  command: string;
  startedAt: string;
  finishedAt: string;
  machine: { cpuModel: string; cores: number; kernel: string; node: string; loadAvgStart: number[]; loadAvgEnd: number[] };
  method: SlowOptions & { gapMs: number; order: string[][] };
  samples: SlowSample[];
  notes: string[];
}

interface SlowForwarder {
  readonly endpoint: { host: string; port: number };
  close(): Promise<void>;
}
interface RelayHandle {
  readonly address: { port: number };
  close(): Promise<void>;
  destroy(): void;
}
interface RelayDialerLike {
  warm(timeoutMs: number): Promise<boolean>;
  dial(req: { host: string; port: number; timeoutMs: number }): Promise<Socket>;
  stats(): { hits: number; misses: number };
  close?(): void | Promise<void>;
}

/** The repo's compiled modules (npm run build in the root): the forwarder and the relay are not copied here. */
async function repoModule<T>(repoDir: string, rel: string): Promise<T> {
  const p = join(repoDir, 'dist', rel);
  if (!existsSync(p)) throw new Error(`${p} is not built (npm run build in the repo root)`);
  return (await import(pathToFileURL(p).href)) as T;
}

const REQUEST = Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');

/** One relay sample: dial through the dialer, send a request, wait for the first byte. */
async function relayOnce(d: RelayDialerLike, port: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  const s = await d.dial({ host: DUMMY_IP, port, timeoutMs: 3000 });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { s.destroy(); reject(new Error('relay sample timed out')); }, 3000);
    s.once('data', () => {
      clearTimeout(timer);
      const us = Number(process.hrtime.bigint() - t0) / 1000;
      s.destroy();
      resolve(us);
    });
    s.once('error', (e) => { clearTimeout(timer); reject(e); });
    s.resume();
    s.write(REQUEST);
  });
}

async function dummyUp(): Promise<string | undefined> {
  try {
    await execFileP('ip', ['link', 'del', DUMMY_IF], { timeout: 5000 }).catch(() => undefined); // a leftover from a killed run
    // a veth pair rather than a dummy link: this kernel has no dummy module
    await execFileP('ip', ['link', 'add', DUMMY_IF, 'type', 'veth', 'peer', 'name', `${DUMMY_IF}p`], { timeout: 5000 });
    await execFileP('ip', ['addr', 'add', `${DUMMY_IP}/32`, 'dev', DUMMY_IF], { timeout: 5000 });
    await execFileP('ip', ['link', 'set', `${DUMMY_IF}p`, 'up'], { timeout: 5000 });
    await execFileP('ip', ['link', 'set', DUMMY_IF, 'up'], { timeout: 5000 });
    return undefined;
  } catch (err) {
    await dummyDown();
    return `relay not measured: could not create the ${DUMMY_IF} veth interface (${((err as Error).message.split('\n')[0] ?? '').slice(0, 200)}); needs root`;
  }
}

async function dummyDown(): Promise<void> {
  await execFileP('ip', ['link', 'del', DUMMY_IF], { timeout: 5000 }).catch(() => undefined);
}

export interface SlowPaths {
  repoDir: string;
  benchDir: string;
  buildDir: string;
  ktArgv: string[];
}

export async function runSlowpath(opts: SlowOptions, paths: SlowPaths, log: (s: string) => void, argvForCommand: readonly string[]): Promise<SlowResults> {
  const startedAt = new Date();
  const notes: string[] = [];
  const samples: SlowSample[] = [];
  const order: string[][] = [];
  const gapMs = opts.delayMs + 5; // lets a pooled socket's onward connect finish between samples
  const { startSlowForwarder } = await repoModule<{ startSlowForwarder(t: { host: string; port: number }, d: number, h?: string): Promise<SlowForwarder> }>(paths.repoDir, 'test/support/slow-forwarder.js');
  const tmp = mkdtempSync('/tmp/kt-slowpath-');
  const wrkScript = join(tmp, 'percentiles.lua');
  writeFileSync(wrkScript, WRK_SCRIPT);
  const machine = { cpuModel: cpus()[0]?.model ?? 'unknown', cores: cpus().length, kernel: release(), node: process.version, loadAvgStart: loadavg().map((x) => Math.round(x * 100) / 100), loadAvgEnd: [] as number[] };
  let backends: HostBackends | undefined;
  let fwd: SlowForwarder | undefined;
  const random = rng(opts.seed);
  try {
    backends = await startHostBackends(tmp, paths.buildDir);
    fwd = await startSlowForwarder({ host: '127.0.0.1', port: backends.ports.http }, opts.delayMs);
    const fwdPort = fwd.endpoint.port;
    type C = { id: string; start(): Promise<{ port: number; proc?: Proc }> };
    const kt = (pool: number): C => ({
      id: `kt-pool${pool}`,
      start: async () => {
        const port = await freePort();
        const args = [...paths.ktArgv.slice(1), 'proxy', '--listen', `127.0.0.1:${port}`, '--backend', `127.0.0.1:${fwdPort}`, '--pool-size', String(pool)];
        const proc = start(`kt-pool${pool}`, paths.ktArgv[0]!, args, {});
        try {
          await waitForOutput(proc, new RegExp(`^listening 127\\.0\\.0\\.1:${port}$`, 'm'), 30_000);
        } catch (err) {
          await stop(proc, 1000);
          throw err;
        }
        return { port, proc };
      },
    });
    const contenders: C[] = [{ id: 'fwd-direct', start: async () => ({ port: fwdPort }) }, kt(0), kt(opts.poolSize)];
    for (let round = 1; round <= opts.rounds; round++) {
      const ro = shuffle(contenders, random);
      order.push(ro.map((c) => c.id));
      log(`round ${round}/${opts.rounds}: ${order.at(-1)!.join(' ')}`);
      for (const c of ro) {
        const sample: SlowSample = { round, contender: c.id, metrics: {} };
        let inst: { port: number; proc?: Proc } | undefined;
        try {
          inst = await c.start();
          await sleep(opts.delayMs * 2 + 300); // the pool fills and its onward connects finish
          const limitMs = Math.max(5000, opts.ttfbSamples * (gapMs + 40));
          const r = await run('ttfb client', process.execPath, [join(paths.buildDir, 'ttfb-client.js'), String(inst.port), String(opts.ttfbSamples), 'localhost', String(limitMs), String(gapMs)], { timeoutMs: limitMs + 20_000 });
          if (r.timedOut) throw new Error('ttfb client timed out');
          const t = parseTtfb(r.stdout);
          sample.metrics['ttfbP50'] = t['p50']!;
          sample.metrics['ttfbP99'] = t['p99']!;
          sample.metrics['ttfbSamples'] = t['samples']!;
          sample.metrics['ttfbErrors'] = t['errors']!;
          await sleep(opts.delayMs * 2 + 100);
          const w = await run('wrk', 'wrk', ['-t1', '-c4', `-d${opts.durationS}s`, '--latency', '-s', wrkScript, '-H', 'Connection: close', `http://127.0.0.1:${inst.port}/`], { timeoutMs: opts.durationS * 1000 + 20_000 });
          if (w.timedOut) throw new Error('wrk timed out');
          const m = parseWrk(w.stdout);
          sample.metrics['rps'] = m['rps']!;
          sample.metrics['wrkP50'] = m['p50']!;
          sample.metrics['wrkP99'] = m['p99']!;
          sample.metrics['wrkErrors'] = m['errors'] ?? 0;
        } catch (err) {
          sample.error = ((err as Error).message.split('\n')[0] ?? 'failed').slice(0, 300);
        } finally {
          if (inst?.proc !== undefined) await stop(inst.proc, 1000);
        }
        samples.push(sample);
        const f = (x: number | undefined, d = 0): string => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));
        log(`  ${c.id.padEnd(11)} ${sample.error !== undefined ? `ERROR ${sample.error}` : `TTFB p50 ${f(sample.metrics['ttfbP50'])} µs p99 ${f(sample.metrics['ttfbP99'])} µs; ${f(sample.metrics['rps'])} conn/s`}`);
      }
    }
    if (opts.relaySamples > 0) await relayRounds(opts, paths, fwd, gapMs, samples, notes, random, log);
  } finally {
    await fwd?.close();
    if (backends !== undefined) await Promise.all(backends.procs.map((p) => stop(p)));
    rmSync(tmp, { recursive: true, force: true });
  }
  machine.loadAvgEnd = loadavg().map((x) => Math.round(x * 100) / 100);
  return {
    schema: 1,
    mode: 'slowpath',
    command: `cd native-bench && npm run bench --${argvForCommand.map((a) => ` ${a}`).join('')}`,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    machine,
    method: { ...opts, gapMs, order },
    samples,
    notes,
  };
}

async function relayRounds(opts: SlowOptions, paths: SlowPaths, _fwd: SlowForwarder, gapMs: number, samples: SlowSample[], notes: string[], random: () => number, log: (s: string) => void): Promise<void> {
  const why = await dummyUp();
  if (why !== undefined) {
    notes.push(why);
    log(why);
    return;
  }
  const server = await repoModule<{ startRelay(o: object): Promise<RelayHandle> }>(paths.repoDir, 'src/relay/server.js');
  const client = await repoModule<{ RelayDialer: new (o: object) => RelayDialerLike }>(paths.repoDir, 'src/relay/client.js');
  const { startSlowForwarder } = await repoModule<{ startSlowForwarder(t: { host: string; port: number }, d: number, h?: string): Promise<SlowForwarder> }>(paths.repoDir, 'test/support/slow-forwarder.js');
  const live = new Set<Socket>();
  // The destination answers at once: the figure is the relay path, not nginx.
  const dest: Server = createServer((s) => {
    live.add(s);
    s.on('close', () => live.delete(s));
    s.on('error', () => undefined);
    s.once('data', () => s.end('HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n'));
  });
  let relay: RelayHandle | undefined;
  let relayFwd: SlowForwarder | undefined;
  try {
    await new Promise<void>((resolve, reject) => { dest.once('error', reject); dest.listen(0, DUMMY_IP, () => resolve()); });
    const destPort = (dest.address() as { port: number }).port;
    const token = randomBytes(32);
    relay = await server.startRelay({ host: '127.0.0.1', port: 0, token, allow: [`${DUMMY_IP}/32`], ports: { min: destPort, max: destPort, extra: [] } });
    // Docker Desktop's port forwarding between the host and the relay container
    relayFwd = await startSlowForwarder({ host: '127.0.0.1', port: relay.address.port }, opts.delayMs);
    notes.push('relay: the dialer, the slow forwarder, the relay and the destination share the harness process (one event loop)');
    const variants = [
      { id: 'relay-pool0', poolSize: 0 },
      { id: 'relay-pool4', poolSize: 4 },
    ];
    for (let round = 1; round <= opts.rounds; round++) {
      for (const v of shuffle(variants, random)) {
        const sample: SlowSample = { round, contender: v.id, metrics: {} };
        const d = new client.RelayDialer({ host: '127.0.0.1', port: relayFwd.endpoint.port, token, poolSize: v.poolSize });
        try {
          if (v.poolSize > 0) await d.warm(5000);
          await sleep(opts.delayMs * 2 + 50);
          const times: number[] = [];
          let errors = 0;
          const deadline = Date.now() + Math.max(10_000, opts.relaySamples * (gapMs + 60));
          for (let i = 0; i < opts.relaySamples && Date.now() < deadline; i++) {
            try {
              times.push(await relayOnce(d, destPort));
            } catch {
              errors++;
              if (errors > opts.relaySamples / 10) break;
            }
            await sleep(gapMs);
          }
          if (times.length === 0) throw new Error(`no successful relay sample (${errors} errors)`);
          times.sort((a, b) => a - b);
          const st = d.stats();
          Object.assign(sample.metrics, { ttfbP50: percentileSorted(times, 50), ttfbP99: percentileSorted(times, 99), ttfbSamples: times.length, ttfbErrors: errors, poolHits: st.hits, poolMisses: st.misses });
        } catch (err) {
          sample.error = ((err as Error).message.split('\n')[0] ?? 'failed').slice(0, 300);
        } finally {
          await d.close?.();
        }
        samples.push(sample);
        log(`  ${v.id.padEnd(11)} ${sample.error !== undefined ? `ERROR ${sample.error}` : `TTFB p50 ${sample.metrics['ttfbP50']!.toFixed(0)} µs p99 ${sample.metrics['ttfbP99']!.toFixed(0)} µs (pool hits ${sample.metrics['poolHits']}, misses ${sample.metrics['poolMisses']})`}`);
      }
    }
  } finally {
    await relayFwd?.close();
    relay?.destroy();
    for (const s of live) s.destroy();
    await new Promise<void>((resolve) => dest.close(() => resolve()));
    await dummyDown();
  }
}

// ---- report --------------------------------------------------------------------

const LABELS: Record<string, string> = {
  'fwd-direct': 'client → slow forwarder (reference)',
  'kt-pool0': 'kind-tunnel `--pool-size 0` → slow forwarder',
  'relay-pool0': 'relay, `poolSize: 0` (handshake + CONNECT per dial)',
  'relay-pool4': 'relay, pooled (`poolSize: 4`, pre-authenticated)',
};

function med(r: SlowResults, c: string, k: string): { m: number; n: number; min: number; max: number } {
  const v = r.samples.filter((s) => s.contender === c && s.error === undefined && Number.isFinite(s.metrics[k])).map((s) => s.metrics[k]!);
  if (v.length === 0) return { m: Number.NaN, n: 0, min: Number.NaN, max: Number.NaN };
  const s = summarize(v);
  return { m: s.median, n: v.length, min: s.min, max: s.max };
}

function ms(us: number): string {
  return Number.isFinite(us) ? (us / 1000).toFixed(2) : '-';
}

export function renderSlowSection(r: SlowResults, resultsFile: string): string {
  const L: string[] = [];
  const p = (s = ''): void => void L.push(s);
  const o = r.method;
  p(SLOW_START);
  p('## Slow connect path');
  p();
  p(`<!-- Generated by \`npm run bench -- --slowpath\` (native-bench/src/slowpath.ts) from ${resultsFile}; the main run keeps this section as it is. -->`);
  p();
  p(`Warm pools when the upstream connect is slow (issues #4 and #6). The kernel here has no netem, so a userspace forwarder (test/support/slow-forwarder.ts) accepts at once, like Docker Desktop's port forwarder, and connects onward after **${o.delayMs} ms**. Backend: nginx on 127.0.0.1. ${o.rounds} interleaved rounds (shuffled order each round), a fresh kind-tunnel process per run; figures are the median over rounds of each round's percentile.`);
  p();
  p('```sh');
  p(r.command);
  p('```');
  p();
  p(`TTFB: ${o.ttfbSamples} sequential fresh connections per run (connect, GET, first response byte), ${o.gapMs} ms apart so a pool can refill between them. New connections/s: \`wrk -t1 -c4 -d${o.durationS}s -H 'Connection: close'\`.`);
  p();
  p('| path | TTFB p50 (ms) | TTFB p99 (ms) | new conn/s | runs |');
  p('|---|---:|---:|---:|---:|');
  for (const c of ['fwd-direct', 'kt-pool0', `kt-pool${o.poolSize}`]) {
    const a = med(r, c, 'ttfbP50');
    const b = med(r, c, 'ttfbP99');
    const q = med(r, c, 'rps');
    const label = LABELS[c] ?? `kind-tunnel \`--pool-size ${o.poolSize}\` → slow forwarder`;
    p(`| ${label} | ${ms(a.m)} | ${ms(b.m)} | ${Number.isFinite(q.m) ? q.m.toFixed(0) : '-'} | ${a.n} |`);
  }
  p();
  const relayRows = ['relay-pool0', 'relay-pool4'].filter((c) => r.samples.some((s) => s.contender === c));
  if (relayRows.length > 0) {
    p(`Relay (issue #6): an in-process \`RelayDialer\` dials through a slow forwarder (${o.delayMs} ms, standing in for Docker Desktop's port forwarding) to \`startRelay\` on 127.0.0.1, whose destination is a responder on ${DUMMY_IP} (a veth this mode creates: the relay refuses loopback destinations). ${o.relaySamples} sequential dials per run, ${o.gapMs} ms apart; TTFB runs from \`dial()\` to the first response byte.`);
    p();
    p('| relay dialer | TTFB p50 (ms) | TTFB p99 (ms) | pool hits / misses (last run) | runs |');
    p('|---|---:|---:|---:|---:|');
    for (const c of relayRows) {
      const a = med(r, c, 'ttfbP50');
      const b = med(r, c, 'ttfbP99');
      const last = r.samples.filter((s) => s.contender === c && s.error === undefined).at(-1);
      p(`| ${LABELS[c]} | ${ms(a.m)} | ${ms(b.m)} | ${last === undefined ? '-' : `${last.metrics['poolHits'] ?? 0} / ${last.metrics['poolMisses'] ?? 0}`} | ${a.n} |`);
    }
    p();
  }
  const errs = r.samples.filter((s) => s.error !== undefined);
  for (const e of errs) p(`- round ${e.round}, ${e.contender}: ${e.error}`);
  for (const n of r.notes) p(`- ${n}`);
  p(`- machine: ${r.machine.cpuModel}, ${r.machine.cores} cores, Linux ${r.machine.kernel}, Node ${r.machine.node}; load ${r.machine.loadAvgStart.join(' ')} at the start, ${r.machine.loadAvgEnd.join(' ')} at the end; nothing pinned`);
  p(SLOW_END);
  return L.join('\n');
}

/** The section from an existing benchmarks.md, or undefined. */
export function extractSlowSection(existing: string | undefined): string | undefined {
  if (existing === undefined) return undefined;
  const a = existing.indexOf(SLOW_START);
  const b = existing.indexOf(SLOW_END);
  if (a < 0 || b < a) return undefined;
  return existing.slice(a, b + SLOW_END.length);
}

/** Replace (or append) the section in docsDir/benchmarks.md. */
export function writeSlowSection(docsDir: string, section: string): string {
  mkdirSync(docsDir, { recursive: true });
  const md = join(docsDir, 'benchmarks.md');
  const existing = existsSync(md) ? readFileSync(md, 'utf8') : '# Benchmarks\n';
  const old = extractSlowSection(existing);
  const next = old !== undefined ? existing.replace(old, section) : `${existing.replace(/\n*$/, '')}\n\n${section}\n`;
  writeFileSync(md, next);
  return md;
}

export async function slowMain(argv: readonly string[], paths: SlowPaths & { defaultDocsDir: string }): Promise<number> {
  let opts: SlowOptions;
  try {
    opts = parseSlowOptions(argv, paths.defaultDocsDir);
  } catch (err) {
    if (err instanceof SlowUsageError) {
      process.stderr.write(`native-bench: ${err.message}\n\n${SLOW_USAGE}`);
      return 2;
    }
    throw err;
  }
  const ktMain = paths.ktArgv[1];
  if (paths.ktArgv.length === 2 && ktMain !== undefined && !existsSync(ktMain)) {
    process.stderr.write(`native-bench: ${ktMain} is not built (npm run build in the repo root, or set KT_BIN)\n`);
    return 1;
  }
  const log = (s: string): void => void process.stdout.write(`${s}\n`);
  log(`native-bench slowpath: delay ${opts.delayMs} ms, ${opts.rounds} rounds, seed ${opts.seed}`);
  const r = await runSlowpath(opts, paths, log, argv);
  const resultsDir = join(paths.benchDir, 'results');
  const out = opts.out ?? join(resultsDir, `${r.startedAt.replace(/[:.]/g, '-')}-slowpath.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(r, null, 2)}\n`);
  log(`results: ${out}`);
  if (opts.docsDir !== undefined) {
    const section = renderSlowSection(r, `results/${out.split('/').at(-1)}`);
    log(`docs: ${writeSlowSection(opts.docsDir, section)}`);
  }
  return r.samples.some((s) => s.error === undefined) ? 0 : 1;
}
