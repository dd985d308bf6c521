// The suite's one bounded wait and its one sleep.
//
// Tests wait on the event or counter that matters, never on a fixed sleep
// that races it: `await waitFor(() => be.accepts >= 3, 'three accepts')`.
// On timeout waitFor throws with what it was waiting for and what it last
// saw (the predicate's last value, or the error it last threw, plus the
// `seen` description when given), so a failure says why.

import { inspect } from 'node:util'

export function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** What to wait for: a fixed text, or a function describing the current state (called on timeout). */
export type What = string | (() => string)

export interface WaitOptions {
  /** Poll interval (default 10 ms). */
  everyMs?: number
  /** Called on timeout: the state worth reporting (counters, lines read so far). */
  seen?: () => unknown
}

type Truthy<V> = Exclude<V, undefined | null | false | 0 | ''>

export class WaitTimeout extends Error {
  override readonly name = 'WaitTimeout'
}

/**
 * Polls `fn` (sync or async) until it returns a truthy value, and resolves
 * with that value. A throw counts as "not yet"
 * (and is what it last saw). After `timeoutMs` it looks once more, then
 * throws a WaitTimeout naming `what` and the last value or error.
 */
export async function waitFor<V> (fn: () => V | Promise<V>, what: What, timeoutMs = 5000, opts: WaitOptions = {}): Promise<Truthy<V>> {
  const every = opts.everyMs ?? 10
  const deadline = Date.now() + timeoutMs
  let last: { value: unknown } | { error: unknown } = { value: undefined }
  const look = async (): Promise<boolean> => {
    try {
      const v = await fn()
      last = { value: v }
      return Boolean(v)
    } catch (error) {
      last = { error }
      return false
    }
  }
  // Bounded in count as well as time (a clock jump cannot make it spin forever).
  for (let i = 0, rounds = Math.ceil(timeoutMs / every) + 1; i < rounds && Date.now() < deadline; i++) {
    if (await look()) return (last as { value: V }).value as Truthy<V>
    await sleep(every)
  }
  // One last look: under CPU load the sleep can overrun the deadline.
  if (await look()) return (last as { value: V }).value as Truthy<V>
  const desc = typeof what === 'function' ? what() : what
  const saw = 'error' in last ? `it threw ${last.error instanceof Error ? last.error.message : inspect(last.error)}` : `it returned ${inspect(last.value, { depth: 3, breakLength: Infinity })}`
  const state = opts.seen === undefined ? '' : `; state: ${inspect(opts.seen(), { depth: 3, breakLength: Infinity })}`
  throw new WaitTimeout(`timed out after ${timeoutMs} ms waiting for ${desc} (last look: ${saw}${state})`)
}

/** `p`, or a rejection after `ms` naming `what`. */
export async function within<V> (p: Promise<V>, ms: number, what: string): Promise<V> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new WaitTimeout(`timed out after ${ms} ms waiting for ${what}`)) }, ms) })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}
