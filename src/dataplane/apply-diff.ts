// The per-listener steps of a table apply that the TCP listener manager and
// the UDP plane share (issue #15: one helper, not two copies): refuse a key
// seen twice, build the listener's config, and bind a new listener,
// recording the outcome in the apply result.

import { errorCode } from '../errors.js'

/** What an apply did to listeners (ApplyResult without the version). */
export interface ListenerDiff {
  /** Listeners bound by this apply, with the real port. */
  bound: Array<{ key: string, host: string, port: number }>
  /** Listeners kept (config swapped in place, not rebound). */
  kept: string[]
  removed: string[]
  failed: Array<{ key: string, code: string, message: string }>
}

/** The config of the listener `key`, or undefined (recorded as failed) when the key is a duplicate or the spec is refused. */
export function configFor<C> (key: string, seen: Set<string>, result: ListenerDiff, build: () => C): C | undefined {
  if (seen.has(key)) {
    result.failed.push({ key, code: 'KT_ERR_INVALID_ARG', message: `listener ${key} appears twice in the table` })
    return undefined
  }
  seen.add(key)
  try {
    return build()
  } catch (err) {
    result.failed.push({ key, code: errorCode(err), message: (err as Error).message })
    return undefined
  }
}

/** Bind a new listener; once it listens it joins `listeners` and `result.bound`, else `result.failed`. */
export async function bindListener<L extends { listen (): Promise<void>, readonly port: number }> (l: L, key: string, host: string, listeners: Map<string, L>, result: ListenerDiff): Promise<void> {
  await l.listen().then(() => {
    listeners.set(key, l)
    result.bound.push({ key, host, port: l.port })
  }, (err: NodeJS.ErrnoException) => {
    result.failed.push({ key, code: err.code ?? errorCode(err), message: `cannot listen on ${key}: ${err.message}` })
  })
}
