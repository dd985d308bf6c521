// Child processes for the soak runner and the reliability tests: the real
// `kind-tunnel proxy` CLI and our own worker scripts (backends, load
// generators, the reload harness), each optionally under a raised or lowered
// `ulimit -n`. Every child is tracked and killed when the parent exits, so a
// failed run leaves nothing behind.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { onLines, RpcClient } from './rpc.js'
import { sleep, waitFor } from '../../support/wait.js'

export const CLI = fileURLToPath(new URL('../../../src/cli/main.js', import.meta.url))
export const WORKERS = {
  backend: fileURLToPath(new URL('./backend.js', import.meta.url)),
  loadgen: fileURLToPath(new URL('./loadgen.js', import.meta.url)),
  harness: fileURLToPath(new URL('./harness.js', import.meta.url)),
  fuzz: fileURLToPath(new URL('../../fuzz/fuzz-parsers.js', import.meta.url)),
} as const

const live = new Set<ChildProcess>()
let hooked = false
function track (c: ChildProcess): void {
  live.add(c)
  c.once('exit', () => live.delete(c))
  if (!hooked) {
    hooked = true
    process.once('exit', killAll)
  }
}

/** SIGKILL every child still running (idempotent; safe in an 'exit' handler). */
export function killAll (): void {
  for (const c of live) { try { c.kill('SIGKILL') } catch {} }
  live.clear()
}

/** The environment for children: without tap's markers, so our scripts run as programs. */
function childEnv (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra }
  delete env.TAP
  delete env.TAP_CHILD_ID
  delete env.NODE_OPTIONS
  return env
}

function spawnNode (script: string, args: string[], opts: { nofile?: number, stdin?: 'pipe' | 'ignore', env?: NodeJS.ProcessEnv, wrap?: string[] }): ChildProcess {
  const argv = [...(opts.wrap ?? []), process.execPath, script, ...args]
  const child = opts.nofile === undefined
    ? spawn(argv[0] as string, argv.slice(1), { env: childEnv(opts.env), stdio: [opts.stdin ?? 'pipe', 'pipe', 'pipe'] })
    // exec replaces the shell, so child.pid is node's own pid (RSS and fds are read from it).
    : spawn('/bin/sh', ['-c', `ulimit -n ${opts.nofile} && exec "$0" "$@"`, ...argv], { env: childEnv(opts.env), stdio: [opts.stdin ?? 'pipe', 'pipe', 'pipe'] })
  track(child)
  return child
}

export interface Worker {
  child: ChildProcess
  rpc: RpcClient
  pid: number
  /** `listening HOST:PORT` events the worker announced (backends, harness). */
  listening: Array<{ host: string, port: number }>
  stderrTail: string[]
  stop (): Promise<void>
}

/** Start one of our worker scripts with a JSON config; resolves once it reports `ready`. */
export async function startWorker (kind: keyof typeof WORKERS, config: Record<string, unknown>, opts: { nofile?: number, timeoutMs?: number, wrap?: string[] } = {}): Promise<Worker> {
  const child = spawnNode(WORKERS[kind], [JSON.stringify(config)], opts)
  const rpc = new RpcClient(child, kind)
  const stderrTail: string[] = []
  onLines(child.stderr!, (l) => { stderrTail.push(l); if (stderrTail.length > 50) stderrTail.shift() })
  const w: Worker = {
    child,
    rpc,
    pid: child.pid ?? 0,
    listening: [],
    stderrTail,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      child.stdin?.end()
      const t = setTimeout(() => child.kill('SIGKILL'), 3000)
      await exited
      clearTimeout(t)
    },
  }
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000)
  while (true) {
    const ready = rpc.events.find((e) => e.event === 'ready')
    if (ready !== undefined) {
      w.listening = (ready.listening as Array<{ host: string, port: number }> | undefined) ?? []
      if (typeof ready.pid === 'number') w.pid = ready.pid
      return w
    }
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${kind} worker exited before ready: ${stderrTail.join('\n')}`)
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`${kind} worker not ready in time: ${stderrTail.join('\n')}`) }
    await sleep(10)
  }
}

export interface ProxyProcess {
  child: ChildProcess
  pid: number
  listening: Array<{ host: string, port: number }>
  metrics: { host: string, port: number } | undefined
  /** Lines of stderr at level warn or above (pino JSON), and any non-JSON lines; bounded. */
  warnings: string[]
  /** Access-log lines seen (counted, not kept). */
  accessLines: number
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  stop (signal?: NodeJS.Signals): Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/** Start `kind-tunnel proxy ARGS`; resolves once it printed `listening` for each --listen (and `metrics` if asked). */
export async function startProxyCli (args: string[], opts: { nofile?: number, timeoutMs?: number, waitListening?: number, env?: NodeJS.ProcessEnv } = {}): Promise<ProxyProcess> {
  const child = spawnNode(CLI, ['proxy', ...args], { ...opts, stdin: 'ignore' })
  const p: ProxyProcess = {
    child,
    pid: child.pid ?? 0,
    listening: [],
    metrics: undefined,
    warnings: [],
    accessLines: 0,
    exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))),
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000)
      const r = await p.exited
      clearTimeout(t)
      return r
    },
  }
  onLines(child.stdout!, (line) => {
    const m = /^(listening|metrics) (\[?[^\]]*\]?):(\d+)$/.exec(line)
    if (m === null) return
    const ep = { host: (m[2] as string).replace(/^\[|\]$/g, ''), port: Number(m[3]) }
    if (m[1] === 'metrics') p.metrics = ep
    else p.listening.push(ep)
  })
  onLines(child.stderr!, (line) => {
    // pino levels: 30 info, 40 warn, 50 error, 60 fatal.
    if (line.startsWith('{"level":30')) { p.accessLines++; return }
    if (p.warnings.length < 200) p.warnings.push(line)
  })
  const want = opts.waitListening ?? args.filter((a) => a === '--listen').length
  const wantMetrics = args.includes('--metrics')
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000)
  while (p.listening.length < want || (wantMetrics && p.metrics === undefined)) {
    if (child.exitCode !== null) throw new Error(`kind-tunnel proxy exited ${child.exitCode}: ${p.warnings.join('\n')}`)
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`kind-tunnel proxy did not listen in time: ${p.warnings.join('\n')}`) }
    await sleep(10)
  }
  return p
}

/** Resident set size of a process, KiB (from /proc/PID/status). */
export function rssKiB (pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8')
    return Number(/VmRSS:\s+(\d+)/.exec(s)?.[1] ?? 0)
  } catch {
    return 0
  }
}

/** Open file descriptors of a process. */
export function fdCount (pid: number): number {
  try { return readdirSync(`/proc/${pid}/fd`).length } catch { return -1 }
}

export function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

export { sleep, waitFor }

/**
 * RSS sampled a few times after things settle: the minimum of `n` samples
 * `gap` ms apart (RSS only drops when V8 returns pages, so the low point is
 * the steady state, not a transient).
 */
export async function settledRss (pid: number, n = 5, gap = 200): Promise<number> {
  let min = Infinity
  for (let i = 0; i < n; i++) {
    min = Math.min(min, rssKiB(pid))
    if (i < n - 1) await sleep(gap)
  }
  return min
}

/**
 * The hard RLIMIT_NOFILE of this process. Children can raise their soft
 * limit up to it, not beyond (that needs CAP_SYS_RESOURCE).
 */
export function hardFdLimit (): number {
  try {
    const m = /^Max open files\s+\S+\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
    if (m === null) return 1024
    return m[1] === 'unlimited' ? 1_048_576 : Number(m[1])
  } catch {
    return 1024
  }
}

/** `want`, or the hard limit when that is lower: for `ulimit -n` in a child. */
export function nofile (want = 65_536): number {
  return Math.min(want, hardFdLimit())
}

/** CPU time (user + system) a process has used, seconds (clock ticks at 100 Hz, Linux's USER_HZ). */
export function cpuSeconds (pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which may hold spaces) start at ") ".
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / 100
  } catch {
    return 0
  }
}

/** Sample RSS every `everyMs` until stopped; returns the peak and all samples. */
export function rssSampler (pid: number, everyMs = 250): { stop (): { peak: number, samples: number[] } } {
  const samples: number[] = []
  const iv = setInterval(() => { samples.push(rssKiB(pid)) }, everyMs)
  return {
    stop () {
      clearInterval(iv)
      samples.push(rssKiB(pid))
      return { peak: Math.max(...samples), samples }
    },
  }
}

/** The inode of the socket listening on HOST:PORT (from `ss`), or 0. Same inode = never rebound. */
export function listenInode (host: string, port: number): number {
  try {
    const out = execFileSync('ss', ['-ltneH', `sport = :${port}`], { encoding: 'utf8', timeout: 5000 })
    for (const line of out.split('\n')) {
      if (!line.includes(`${host}:${port} `)) continue
      const m = /ino:(\d+)/.exec(line)
      if (m !== null) return Number(m[1])
    }
  } catch {}
  return 0
}

/** The load average (1 min) of this machine, for the report: other work shares its 2 cores. */
export function loadAverage (): number {
  try { return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]) } catch { return 0 }
}
