// Helpers for the product tests (up, down, demo, doctor, sidecar): free
// ports, scratch state dirs, unique loopback pools, and bounded child
// processes (curl, kubectl) whose output is returned.

import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomInt } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, connect, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface Teardown { teardown (fn: () => unknown): void }

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort (host = '127.0.0.1'): Promise<number> {
  const s = createServer()
  await new Promise<void>((resolve, reject) => { s.once('error', reject); s.listen(0, host, () => resolve()) })
  const port = (s.address() as AddressInfo).port
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

export async function scratchDir (t: Teardown, prefix = 'kt-product-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix))
  t.teardown(() => rm(d, { recursive: true, force: true }))
  return d
}

/** A /24 in 127/8 that no other test picks in practice (LB IPs of one test). */
export function loopbackPool (): string {
  return `127.${randomInt(200, 239)}.${randomInt(1, 255)}.0/24`
}

/** Run a program to completion (bounded); never throws on a non-zero exit. */
export function run (file: string, args: string[], timeoutMs = 15_000, env?: NodeJS.ProcessEnv): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024, ...(env !== undefined ? { env } : {}) }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1
      resolve({ code, stdout, stderr })
    })
  })
}

export function curl (url: string, extra: string[] = []): Promise<{ code: number, stdout: string, stderr: string }> {
  return run('curl', ['-sS', '--max-time', '5', '--noproxy', '*', ...extra, url])
}

/** Resolves with how a TCP connect ends: 'open', or the errno code. */
export function connectOutcome (host: string, port: number, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host, port })
    const timer = setTimeout(() => { s.destroy(); resolve('timeout') }, timeoutMs)
    s.once('connect', () => { clearTimeout(timer); s.destroy(); resolve('open') })
    s.once('error', (e: NodeJS.ErrnoException) => { clearTimeout(timer); resolve(e.code ?? 'error') })
  })
}

/** A long-running child whose output lines are collected; killed at teardown. */
export function background (t: Teardown, file: string, args: string[]): { child: ChildProcess, lines: string[], exited: Promise<number | null> } {
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: string[] = []
  let buf = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    buf += d
    let i
    while ((i = buf.indexOf('\n')) >= 0) { lines.push(buf.slice(0, i)); buf = buf.slice(i + 1) }
  })
  child.stderr?.resume()
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)))
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  return { child, lines, exited }
}

import { sleep, waitFor } from '../support/wait.js'

export { sleep, waitFor }

/** The first line matching `re` in `lines`, waiting up to `timeoutMs`. */
export async function waitLine (lines: string[], re: RegExp, timeoutMs: number, what = String(re)): Promise<string> {
  let found: string | undefined
  await waitFor(() => { found = lines.find((l) => re.test(l)); return found !== undefined }, what, timeoutMs)
  return found as string
}
