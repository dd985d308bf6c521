// Child processes for the bench: every contender, backend and load generator is
// spawned here, in its own process group, and recorded so that one synchronous
// sweep can kill them all on exit, Ctrl-C, SIGTERM or an uncaught error.
import { execFile, spawn, execFileSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import { openSync, readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';

export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** stdout so far, capped at OUTPUT_CAP characters. */
  stdout: string;
  stderr: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited: boolean;
}

export interface StartOptions {
  /** CPU list for taskset -c, e.g. '1'. */
  cpu?: string | undefined;
  /** RLIMIT_NOFILE soft and hard, set through prlimit(1) before exec. */
  nofile?: number | undefined;
  env?: NodeJS.ProcessEnv | undefined;
  cwd?: string | undefined;
  /** Keep fd 3 open on /dev/null: docker-proxy closes its listener when fd 3 is closed. */
  fd3DevNull?: boolean | undefined;
  /** Keep stdin as a pipe (the idle client waits on it). */
  stdinPipe?: boolean | undefined;
}

const OUTPUT_CAP = 256 * 1024;
const live = new Set<Proc>();
const syncCleanups = new Map<string, () => void>();
let handlersInstalled = false;

/** The argv that wraps a command in prlimit and taskset. Both exec the command, so the pid stays the same. */
export function wrapArgv(cmd: string, args: readonly string[], opts: StartOptions): string[] {
  let argv = [cmd, ...args];
  if (opts.cpu !== undefined) argv = ['taskset', '-c', opts.cpu, ...argv];
  if (opts.nofile !== undefined) argv = ['prlimit', `--nofile=${opts.nofile}:${opts.nofile}`, '--', ...argv];
  return argv;
}

export function start(name: string, cmd: string, args: readonly string[], opts: StartOptions = {}): Proc {
  installExitHandlers();
  const argv = wrapArgv(cmd, args, opts);
  const stdio: StdioOptions = [opts.stdinPipe === true ? 'pipe' : 'ignore', 'pipe', 'pipe'];
  if (opts.fd3DevNull === true) stdio.push(openSync('/dev/null', 'r+'));
  // detached: the child leads its own process group, so kill(-pid) also reaches
  // what it forks (socat forks one child per connection).
  const child = spawn(argv[0]!, argv.slice(1), {
    detached: true,
    stdio,
    env: opts.env ?? process.env,
    cwd: opts.cwd,
  });
  if (child.pid === undefined) {
    // spawn reports ENOENT asynchronously; surface it here as a plain error.
    throw new Error(`cannot start ${name}: ${argv[0]} did not spawn`);
  }
  let resolveExit!: (v: { code: number | null; signal: NodeJS.Signals | null }) => void;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => {
    resolveExit = r;
  });
  const p: Proc = { name, child, pid: child.pid, stdout: '', stderr: '', exited, hasExited: false };
  child.stdout?.setEncoding('utf8');
  child.stderr?.setEncoding('utf8');
  child.stdout?.on('data', (s: string) => {
    if (p.stdout.length < OUTPUT_CAP) p.stdout += s;
  });
  child.stderr?.on('data', (s: string) => {
    if (p.stderr.length < OUTPUT_CAP) p.stderr += s;
  });
  child.on('error', (err) => {
    if (p.stderr.length < OUTPUT_CAP) p.stderr += `\n${name}: ${err.message}`;
  });
  child.on('exit', (code, signal) => {
    p.hasExited = true;
    live.delete(p);
    resolveExit({ code, signal });
  });
  live.add(p);
  return p;
}

function killGroup(pid: number, signal: NodeJS.Signals, leaderToo = true): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is gone already
  }
  if (!leaderToo) return;
  try {
    process.kill(pid, signal);
  } catch {
    // gone already
  }
}

/** SIGTERM the process group, then SIGKILL after graceMs. Bounded by graceMs + 2 s. */
export async function stop(p: Proc, graceMs = 3000): Promise<void> {
  if (!p.hasExited) killGroup(p.pid, 'SIGTERM');
  if (await settlesWithin(p.exited, graceMs)) {
    // the leader is gone (its pid may be reused now); reach only forked children left in its group
    killGroup(p.pid, 'SIGKILL', false);
    return;
  }
  killGroup(p.pid, 'SIGKILL');
  await settlesWithin(p.exited, 2000);
}

async function settlesWithin(pr: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((r) => {
    timer = setTimeout(() => r(false), ms);
  });
  try {
    return await Promise.race([pr.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Run a command to completion, killed (whole group) after timeoutMs. */
export async function run(
  name: string,
  cmd: string,
  args: readonly string[],
  opts: StartOptions & { timeoutMs: number },
): Promise<RunResult> {
  const p = start(name, cmd, args, opts);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(p.pid, 'SIGKILL');
  }, opts.timeoutMs);
  try {
    const { code, signal } = await p.exited;
    // let the stdio streams flush their last chunk
    await new Promise((r) => setImmediate(r));
    return { code, signal, stdout: p.stdout, stderr: p.stderr, timedOut };
  } finally {
    clearTimeout(timer);
  }
}

/** Register a synchronous cleanup (e.g. `docker rm -f`) that the exit sweep runs. */
export function onCleanup(key: string, fn: () => void): void {
  installExitHandlers();
  syncCleanups.set(key, fn);
}

export function offCleanup(key: string): void {
  syncCleanups.delete(key);
}

/** Kill everything still alive. Synchronous, so it can run from 'exit'. */
export function killAllSync(): void {
  for (const p of live) killGroup(p.pid, 'SIGKILL');
  live.clear();
  for (const [key, fn] of syncCleanups) {
    syncCleanups.delete(key);
    try {
      fn();
    } catch {
      // best effort: the process is on its way out
    }
  }
}

export function liveCount(): number {
  return live.size;
}

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', killAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nnative-bench: ${sig}, stopping every contender\n`);
      killAllSync();
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
}

/** Resolve once `re` matches the process's stdout; reject on exit or after timeoutMs. */
export async function waitForOutput(p: Proc, re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000 && Date.now() < deadline; i++) {
    const m = p.stdout.match(re);
    if (m !== null) return m;
    if (p.hasExited) break;
    await sleep(20);
  }
  const m = p.stdout.match(re);
  if (m !== null) return m;
  throw new Error(
    `${p.name}: ${p.hasExited ? 'exited' : 'timed out'} before printing ${String(re)}; stderr: ${tail(p.stderr)}`,
  );
}

/** Poll until something accepts on 127.0.0.1:port. Bounded by timeoutMs. */
export async function waitForPort(port: number, timeoutMs: number, p?: Proc): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    if (p?.hasExited === true) throw new Error(`${p.name} exited before listening: ${tail(p.stderr)}`);
    if (await canConnect(port)) return;
    await sleep(30);
  }
  throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms${p ? `: ${tail(p.stderr)}` : ''}`);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function tail(s: string, n = 400): string {
  const t = s.trim();
  return t.length <= n ? t : `...${t.slice(-n)}`;
}

// ---- /proc readers -------------------------------------------------------

let clkTck: number | undefined;
function ticksPerSecond(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

interface StatFields {
  ppid: number;
  /** utime + stime + cutime + cstime, in ticks: cutime/cstime keep the time of reaped children. */
  ticks: number;
}

/** proc(5): fields after the last ')' start at field 3 (state). */
export function parseStat(text: string): StatFields | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const f = text.slice(close + 2).split(' ');
  // f[0] = field 3 (state); field N is f[N - 3]
  const ppid = Number(f[1]);
  const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  if (!Number.isFinite(ppid) || !Number.isFinite(ticks)) return undefined;
  return { ppid, ticks };
}

function readStat(pid: number): StatFields | undefined {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** pid and every descendant, from one pass over /proc. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [pid];
  }
  for (const e of entries) {
    const n = Number(e);
    if (!Number.isInteger(n)) continue;
    const st = readStat(n);
    if (st === undefined) continue;
    const list = children.get(st.ppid);
    if (list) list.push(n);
    else children.set(st.ppid, [n]);
  }
  const out: number[] = [];
  const queue = [pid];
  for (let i = 0; i < queue.length && i < 100_000; i++) {
    const cur = queue[i]!;
    out.push(cur);
    for (const c of children.get(cur) ?? []) queue.push(c);
  }
  return out;
}

/** CPU seconds (user + system, including reaped children) of the given pids. */
export function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) ticks += readStat(pid)?.ticks ?? 0;
  return ticks / ticksPerSecond();
}

/** Sum of VmRSS (KiB) from /proc/PID/status. */
export function rssKiB(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) {
    try {
      const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+)\s+kB/m);
      if (m) sum += Number(m[1]);
    } catch {
      // exited meanwhile
    }
  }
  return sum;
}

/** Sum of Pss (KiB) from /proc/PID/smaps_rollup: shared pages split among sharers. */
export function pssKiB(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) {
    try {
      const m = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').match(/^Pss:\s+(\d+)\s+kB/m);
      if (m) sum += Number(m[1]);
    } catch {
      // exited meanwhile
    }
  }
  return sum;
}

/**
 * pids whose command line holds the given arguments one after another, e.g.
 * `['-host-port', '8080']`: a docker-proxy whose *container* port is 8080 does
 * not match (cloud-provider-kind's host tunnel forwards to another proxy's port).
 */
export function findProcesses(args: readonly string[]): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    const n = Number(e);
    if (!Number.isInteger(n)) continue;
    try {
      const argv = readFileSync(`/proc/${n}/cmdline`, 'utf8').split('\0');
      if (hasRun(argv, args)) out.push(n);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Whether `argv` holds `run` as consecutive elements. */
export function hasRun(argv: readonly string[], run: readonly string[]): boolean {
  if (run.length === 0) return true;
  for (let i = 0; i + run.length <= argv.length; i++) {
    if (run.every((a, k) => argv[i + k] === a)) return true;
  }
  return false;
}

let nofileCache: number | undefined;
/**
 * The RLIMIT_NOFILE every proxy and backend gets: 65536, or this process's hard
 * limit when that is lower (raising it needs CAP_SYS_RESOURCE, which a container may lack).
 */
export function nofileLimit(): number {
  if (nofileCache === undefined) {
    let hard = 65536;
    try {
      const out = execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
      if (out !== 'unlimited' && Number.isInteger(Number(out))) hard = Number(out);
    } catch {
      // keep the default
    }
    nofileCache = Math.min(65536, hard);
  }
  return nofileCache;
}

/**
 * Pin every thread of these processes (taskset -a -p). Proxies start unpinned and are
 * pinned once ready, so a dozen Node start-ups do not queue on one CPU; threads
 * and children created later inherit the mask.
 */
export async function pinPids(pids: readonly number[], cpu: string | undefined): Promise<void> {
  if (cpu === undefined) return;
  await Promise.all(
    pids.map(
      (pid) =>
        new Promise<void>((resolve) => {
          execFile('taskset', ['-a', '-p', '-c', cpu, String(pid)], { timeout: 10_000 }, () => resolve());
        }),
    ),
  );
}

/** Pids of this machine's processes whose environment carries `marker` (NAME=VALUE): what a run started, for the tests that prove nothing is left. */
export function marked(marker: string): number[] {
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

/** `marked`, waited on for up to 5 s until it is empty: what is still left then. */
export async function noneLeft(marker: string): Promise<number[]> {
  let left = marked(marker);
  for (let i = 0; i < 50 && left.length > 0; i++) {
    await sleep(100);
    left = marked(marker);
  }
  return left;
}
