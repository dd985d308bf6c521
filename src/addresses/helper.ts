// The privileged helper: `sudo kind-tunnel helper --ip-pool CIDR` runs this
// with its own stdin/stdout, and an unprivileged agent talks to it.
//
// Protocol: one JSON object per line in, one per line out, in order.
//   → {"id":1,"verb":"add","ip":"127.240.0.5"}
//   ← {"id":1,"ok":true,"verb":"add","ip":"127.240.0.5","changed":true}
//   → {"id":2,"verb":"list"}
//   ← {"id":2,"ok":true,"verb":"list","addresses":[{"ip":"127.240.0.5","prefix":32,"family":4}]}
//   ← {"id":3,"ok":false,"code":"KT_ERR_ADDRESS_REFUSED","message":"..."}
// Requests are served one at a time; a malformed or refused one gets an
// error answer and the helper carries on. It returns when stdin ends.

import type { Readable, Writable } from 'node:stream'
import { errorCode, isKtError } from '../errors.js'
import type { Cidr } from '../routing/cidr.js'
import type { AddressBackend } from './backends.js'
import { AddressManager } from './manager.js'
import type { CommandRunner } from './runner.js'
import { MAX_REQUEST_BYTES, parseRequest, refused, validatePool } from './validate.js'

export interface HelperOptions {
  readonly stdin: Readable
  readonly stdout: Writable
  readonly pool: string | Cidr
  readonly backend?: AddressBackend
  readonly runner?: CommandRunner
}

export interface HelperStats {
  readonly requests: number
  readonly refused: number
  readonly failed: number
}

/** The id of a request line, when it has a usable one, so even refusals can be matched. */
function idOf (line: string): string | number | undefined {
  try {
    const m: unknown = JSON.parse(line)
    if (m !== null && typeof m === 'object' && Object.hasOwn(m, 'id')) {
      const id = (m as { id: unknown }).id
      if ((typeof id === 'string' && id.length <= 64) || (typeof id === 'number' && Number.isSafeInteger(id))) return id
    }
  } catch {}
  return undefined
}

export async function runHelper (opts: HelperOptions): Promise<HelperStats> {
  // A bad pool is a startup error for the caller (exit 2), not an answer.
  const pool = validatePool(opts.pool)
  const manager = new AddressManager({
    pool,
    ...(opts.backend !== undefined ? { backend: opts.backend } : {}),
    ...(opts.runner !== undefined ? { runner: opts.runner } : {}),
  })
  const stats = { requests: 0, refused: 0, failed: 0 }
  const out = opts.stdout
  const answer = (a: Record<string, unknown>): void => {
    if (!out.writableEnded && !out.destroyed) out.write(`${JSON.stringify(a)}\n`)
  }

  const serve = async (line: string): Promise<void> => {
    stats.requests++
    const id = idOf(line)
    const withId = id !== undefined ? { id } : {}
    try {
      const req = parseRequest(line, pool)
      if (req.verb === 'list') {
        answer({ ...withId, ok: true, verb: 'list', addresses: await manager.list() })
      } else {
        const r = req.verb === 'add' ? await manager.ensure(req.ip as string) : await manager.release(req.ip as string)
        answer({ ...withId, ok: true, verb: req.verb, ip: r.ip, changed: r.changed })
      }
    } catch (err) {
      const code = errorCode(err)
      if (code === 'KT_ERR_ADDRESS_REFUSED') stats.refused++
      else stats.failed++
      const message = isKtError(err) ? err.message : 'internal error'
      answer({ ...withId, ok: false, code: isKtError(err) ? code : 'KT_ERR_ADDRESS_COMMAND', message })
    }
  }

  // Lines are split by hand so one can be capped: an endless line is refused
  // once and skipped up to its newline, instead of growing a buffer forever.
  let buf = ''
  let skipping = false
  const input = opts.stdin
  input.setEncoding('utf8')
  for await (const chunk of input as AsyncIterable<string>) {
    let rest = chunk
    while (rest.length > 0) {
      const nl = rest.indexOf('\n')
      if (nl < 0) {
        if (!skipping) {
          buf += rest
          if (Buffer.byteLength(buf) > MAX_REQUEST_BYTES) {
            stats.requests++
            stats.refused++
            answer({ ok: false, code: 'KT_ERR_ADDRESS_REFUSED', message: refused(`request longer than ${MAX_REQUEST_BYTES} bytes`).message })
            buf = ''
            skipping = true
          }
        }
        break
      }
      const piece = rest.slice(0, nl)
      rest = rest.slice(nl + 1)
      if (skipping) { skipping = false; buf = ''; continue }
      const line = (buf + piece).replace(/\r$/, '')
      buf = ''
      if (line.trim() === '') continue
      await serve(line)
    }
  }
  if (!skipping && buf.trim() !== '') await serve(buf)
  return stats
}
