// Case 6: the peek fuzzer (test/fuzz/fuzz-parsers.ts) for a time budget, in
// its own process: executions and crashes for the report.

import { execFile } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCase, type CaseResult } from '../lib/case.js'
import { WORKERS } from '../lib/proc.js'

interface FuzzReport { seconds: number, seed: number, executions: number, crashes: unknown[], byTarget: Record<string, number>, outcomes: Record<string, number>, corpus: { flights: number, committed: number } }

export function fuzz (p: { seconds: number }, log: (m: string) => void = () => {}): Promise<CaseResult> {
  return runCase('fuzz', `Fuzzing the ClientHello and HTTP-head parsers for ${p.seconds} s`, log, async (c) => {
    const crashDir = mkdtempSync(join(tmpdir(), 'kt-soak-fuzz-'))
    c.defer(() => rmSync(crashDir, { recursive: true, force: true }))
    const env = { ...process.env }
    delete env.TAP
    const seed = Math.floor(Math.random() * 2 ** 31)
    const { code, stdout, stderr } = await new Promise<{ code: number | null, stdout: string, stderr: string }>((resolve) => {
      execFile(process.execPath, [WORKERS.fuzz, String(p.seconds), '--seed', String(seed), '--crash-dir', crashDir], { env, timeout: (p.seconds + 120) * 1000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr })
      })
    })
    let r: FuzzReport
    try {
      r = JSON.parse(stdout.trim().split('\n').pop() as string) as FuzzReport
    } catch {
      c.check('the fuzzer printed its report', false, `exit ${String(code)}: ${stderr.slice(0, 200)}`)
      return
    }
    c.figure('seed', r.seed)
    c.figure('executions', `${r.executions} in ${r.seconds} s (${Math.round(r.executions / r.seconds)}/s)`)
    c.figure('executions by target', JSON.stringify(r.byTarget))
    c.figure('parser outcomes reached', JSON.stringify(r.outcomes))
    c.figure('seed corpus', `${r.corpus.flights} recorded flights + ${r.corpus.committed} committed inputs (test/fuzz/corpus)`)
    c.figure('crashes', r.crashes.length)
    c.check('0 crashes', r.crashes.length === 0 && code === 0, `${r.crashes.length} (${readdirSync(crashDir).join(', ')})`)
    c.check('a real budget was spent', r.executions > 1000)
  })
}
