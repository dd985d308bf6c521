// A tiny JSON-lines request/response channel between the soak runner and its
// worker processes (load generators, backends, the reload harness). One JSON
// object per line each way; replies carry the request's `id`. Worker stdout
// carries only these lines (plus `listening HOST:PORT` announcements).

import type { ChildProcess } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'

export interface RpcMessage { id?: number, op?: string, [k: string]: unknown }

/** Split a text stream into lines, calling `onLine` for each complete one. */
export function onLines (stream: Readable, onLine: (line: string) => void): void {
  let buf = ''
  stream.setEncoding('utf8')
  stream.on('data', (d: string) => {
    buf += d
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      if (line.length > 0) onLine(line)
    }
  })
}

/** The parent side: `call(op, args)` resolves with the worker's reply (bounded by `timeoutMs`). */
export class RpcClient {
  private next = 1
  private readonly waiting = new Map<number, { resolve: (m: RpcMessage) => void, reject: (e: Error) => void, timer: NodeJS.Timeout }>()
  private exited = false
  readonly events: RpcMessage[] = []

  constructor (readonly child: ChildProcess, readonly name: string) {
    onLines(child.stdout as Readable, (line) => {
      let m: RpcMessage
      try { m = JSON.parse(line) as RpcMessage } catch { return }
      const w = m.id === undefined ? undefined : this.waiting.get(m.id)
      if (w === undefined) { if (this.events.length < 1000) this.events.push(m); return }
      this.waiting.delete(m.id as number)
      clearTimeout(w.timer)
      if (typeof m.error === 'string') w.reject(new Error(`${this.name}: ${m.error}`))
      else w.resolve(m)
    })
    child.once('exit', (code, signal) => {
      this.exited = true
      for (const [, w] of this.waiting) { clearTimeout(w.timer); w.reject(new Error(`${this.name} exited (${code ?? signal})`)) }
      this.waiting.clear()
    })
  }

  call (op: string, args: Record<string, unknown> = {}, timeoutMs = 60_000): Promise<RpcMessage> {
    if (this.exited) return Promise.reject(new Error(`${this.name} has exited`))
    const id = this.next++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id)
        reject(new Error(`${this.name}: ${op} did not answer within ${timeoutMs} ms`))
      }, timeoutMs)
      this.waiting.set(id, { resolve, reject, timer })
      ;(this.child.stdin as Writable).write(JSON.stringify({ ...args, id, op }) + '\n')
    })
  }
}

/** The worker side: serve requests from stdin with `handlers`; one reply per request. */
export function serveRpc (handlers: Record<string, (msg: RpcMessage) => Promise<Record<string, unknown>> | Record<string, unknown>>): void {
  const reply = (m: Record<string, unknown>): void => { process.stdout.write(JSON.stringify(m) + '\n') }
  onLines(process.stdin, (line) => {
    let msg: RpcMessage
    try { msg = JSON.parse(line) as RpcMessage } catch { return }
    const h = handlers[msg.op ?? '']
    if (h === undefined) { reply({ id: msg.id, error: `unknown op ${String(msg.op)}` }); return }
    Promise.resolve().then(() => h(msg)).then(
      (r) => reply({ ...r, id: msg.id }),
      (err: unknown) => reply({ id: msg.id, error: err instanceof Error ? `${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}`.trim() : String(err) }),
    )
  })
  // The parent going away ends the worker: no orphans.
  process.stdin.on('end', () => process.exit(0))
}
