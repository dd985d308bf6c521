// Run the built CLI as a child process, as a user would.

import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { readFileSync } from 'node:fs'

export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))

export interface RunningCli {
  child: ChildProcess
  stdout: string[]
  stderr: string[]
  /** The `listening HOST:PORT` lines, parsed. */
  listening: Array<{ host: string, port: number }>
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  rssKiB (): number
  stop (signal?: NodeJS.Signals): Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

export interface StartOptions { env?: NodeJS.ProcessEnv, shellPrefix?: string, waitListening?: number, timeoutMs?: number }

/** Start `kind-tunnel <args>`; resolves once `waitListening` listening lines appeared (default 1). */
export async function startCli (args: string[], opts: StartOptions = {}): Promise<RunningCli> {
  const env = { ...process.env, ...opts.env }
  const child = opts.shellPrefix === undefined
    ? spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn('/bin/sh', ['-c', `${opts.shellPrefix}; exec "$0" "$@"`, process.execPath, CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  const r: RunningCli = {
    child,
    stdout: [],
    stderr: [],
    listening: [],
    exited: exitedAndDrained(child).then(() => ({ code: child.exitCode, signal: child.signalCode })),
    rssKiB () {
      const s = readFileSync(`/proc/${child.pid}/status`, 'utf8')
      return Number(/VmRSS:\s+(\d+)/.exec(s)?.[1] ?? 0)
    },
    async stop (signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return await r.exited
    },
  }
  let buf = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    buf += d
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      r.stdout.push(line)
      const m = /^listening (\[?[^\]]*\]?):(\d+)$/.exec(line)
      if (m !== null) r.listening.push({ host: (m[1] as string).replace(/^\[|\]$/g, ''), port: Number(m[2]) })
    }
  })
  let ebuf = ''
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    ebuf += d
    let i
    while ((i = ebuf.indexOf('\n')) >= 0) { r.stderr.push(ebuf.slice(0, i)); ebuf = ebuf.slice(i + 1) }
  })
  const want = opts.waitListening ?? 1
  if (want > 0) {
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000)
    while (r.listening.length < want) {
      if (child.exitCode !== null) throw new Error(`kind-tunnel exited ${child.exitCode}: ${r.stderr.join('\n')}`)
      if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`kind-tunnel did not listen in time: ${r.stderr.join('\n')}`) }
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }
  return r
}

/** Run the CLI to completion; resolves with exit status and output. */
export async function runCli (args: string[], opts: { env?: NodeJS.ProcessEnv, timeoutMs?: number } = {}): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000)
  const code = await exitedAndDrained(child)
  clearTimeout(timer)
  return { code, stdout, stderr }
}

/**
 * The child's exit status, once its output has been read too. 'exit' can come
 * before the last bytes of stdout/stderr are read from their pipes (on a busy
 * machine a one-line error was seen as empty), so this waits for 'close'. A
 * grandchild still holding the pipes would delay 'close' for ever: after
 * `drainMs` past the exit, the status is given as it is. (With several
 * children running, one SIGCHLD reaps every child that has exited, so a
 * child's 'exit' can be emitted before the loop has read its last output.)
 */
export async function exitedAndDrained (child: ChildProcess, drainMs = 2000): Promise<number | null> {
  return await new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined
    child.once('close', (c: number | null) => { clearTimeout(timer); resolve(c) })
    child.once('exit', (c) => { timer = setTimeout(() => resolve(c), drainMs) })
  })
}
