// Shared CLI plumbing: one-line errors with stable codes, exit statuses, and
// signals turned into an AbortSignal. No stack traces for expected failures.

import { InvalidArgumentError, isKtError } from '../errors.js'

export const EXIT_OK = 0
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2

/** Print `error CODE: message` on stderr and return the exit status for it. */
export function reportError (err: unknown): number {
  if (err instanceof InvalidArgumentError) {
    process.stderr.write(`error ${err.code}: ${err.message}\n`)
    return EXIT_USAGE
  }
  if (isKtError(err)) {
    process.stderr.write(`error ${err.code}: ${err.message}\n`)
    return EXIT_FAILURE
  }
  const e = err as NodeJS.ErrnoException
  const code = typeof e?.code === 'string' ? e.code : 'KT_ERR_INTERNAL'
  process.stderr.write(`error ${code}: ${e?.message ?? String(err)}\n`)
  if (process.env.KT_DEBUG === '1' && e?.stack !== undefined) process.stderr.write(e.stack + '\n')
  return EXIT_FAILURE
}

/**
 * An AbortSignal that fires on the first SIGINT or SIGTERM. A second signal
 * exits at once (status 130), for a user who does not want to wait for a drain.
 */
export function shutdownSignal (): AbortSignal {
  const ac = new AbortController()
  let count = 0
  const on = (sig: NodeJS.Signals): void => {
    count++
    if (count === 1) ac.abort(sig)
    else process.exit(130)
  }
  process.on('SIGINT', on)
  process.on('SIGTERM', on)
  return ac.signal
}

export function waitForAbort (signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve()
  return new Promise((resolve) => { signal.addEventListener('abort', () => { resolve() }, { once: true }) })
}

/** The soft RLIMIT_NOFILE of this process, where the platform tells it. */
export async function fdLimit (): Promise<number | undefined> {
  try {
    const { readFile } = await import('node:fs/promises')
    const text = await readFile('/proc/self/limits', 'utf8')
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(text)
    if (m === null) return undefined
    return m[1] === 'unlimited' ? Infinity : Number(m[1])
  } catch {
    return undefined
  }
}
