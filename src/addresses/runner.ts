// Running a backend command: execFile with an argument array (no shell, so
// no word splitting or metacharacters), a bounded time and output, and the
// program looked up in fixed system directories rather than PATH, because
// the helper runs as root and must not run whatever `ip` comes first in a
// user-controlled PATH.

import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join, isAbsolute } from 'node:path'
import type { Command } from './backends.js'

export interface CommandResult {
  /** Exit status; -1 when the program could not be started or was killed. */
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

export type CommandRunner = (cmd: Command) => Promise<CommandResult>

export interface SystemRunnerOptions {
  /** Kill the command after this long; default 10 s. */
  readonly timeoutMs?: number
  readonly platform?: string
}

function systemDirs (platform: string): string[] {
  if (platform === 'win32') {
    const root = process.env.SystemRoot ?? 'C:\\Windows'
    return [join(root, 'System32')]
  }
  return ['/usr/sbin', '/sbin', '/usr/bin', '/bin']
}

/** Absolute path of a system program, or null. */
export function resolveProgram (file: string, platform: string = process.platform): string | null {
  if (isAbsolute(file)) return existsSync(file) ? file : null
  if (!/^[a-z0-9]+$/i.test(file)) return null
  for (const dir of systemDirs(platform)) {
    for (const name of platform === 'win32' ? [`${file}.exe`, file] : [file]) {
      const p = join(dir, name)
      if (existsSync(p)) return p
    }
  }
  return null
}

export function systemRunner (opts: SystemRunnerOptions = {}): CommandRunner {
  const platform = opts.platform ?? process.platform
  const timeout = opts.timeoutMs ?? 10_000
  const dirs = systemDirs(platform)
  return async (cmd) => {
    const file = resolveProgram(cmd.file, platform)
    if (file === null) return { code: -1, stdout: '', stderr: `${cmd.file}: not found in ${dirs.join(', ')}` }
    return await new Promise<CommandResult>((resolve) => {
      execFile(file, [...cmd.args], {
        shell: false,
        timeout,
        killSignal: 'SIGKILL',
        maxBuffer: 1024 * 1024,
        windowsHide: true,
        // C locale: outputs are parsed, and must not be translated.
        env: { PATH: dirs.join(platform === 'win32' ? ';' : ':'), LC_ALL: 'C', ...(platform === 'win32' && process.env.SystemRoot !== undefined ? { SystemRoot: process.env.SystemRoot } : {}) },
      }, (err, stdout, stderr) => {
        if (err === null) { resolve({ code: 0, stdout, stderr }); return }
        const code = typeof err.code === 'number' ? err.code : -1
        resolve({ code, stdout, stderr: stderr !== '' ? stderr : err.message })
      })
    })
  }
}
