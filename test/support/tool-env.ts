// Command-line tools (curl, openssl) run by tests without the sanitizer
// runtime: under npm run test:asan / test:tsan (scripts/native-variant.mjs)
// LD_PRELOAD carries libasan/libtsan for node, and curl hangs with it (a
// futex wait past its own --max-time). Node children keep it.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const execFileP = promisify(execFile)

/** process.env without LD_PRELOAD. */
export function toolEnv (): NodeJS.ProcessEnv {
  const env = { ...process.env }
  delete env['LD_PRELOAD']
  return env
}

/** promisify(execFile) with toolEnv(). */
export function runTool (cmd: string, args: readonly string[], opts: { timeout?: number } = {}): Promise<{ stdout: string, stderr: string }> {
  return execFileP(cmd, args, { ...opts, env: toolEnv() })
}
