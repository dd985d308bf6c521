// The agent's side of the helper protocol (helper.ts): the same Addresses
// interface as AddressManager, spoken over the helper's stdin/stdout, e.g. a
// `sudo kind-tunnel helper` child process. Requests go one at a time, each
// bounded in time.

import type { Readable, Writable } from 'node:stream'
import { type ErrorCode, ErrorCodes, KtError } from '../errors.js'
import type { LoopbackAddress } from './backends.js'
import type { AddressChange, Addresses } from './manager.js'

export interface HelperClientOptions {
  /** The helper's stdin. */
  readonly input: Writable
  /** The helper's stdout. */
  readonly output: Readable
  /** Per request; default 15 s (the helper's own command timeout is 10 s). */
  readonly timeoutMs?: number
}

interface Pending {
  id: number
  resolve: (v: Record<string, unknown>) => void
  reject: (e: Error) => void
  clear: () => void
}

export class AddressHelperClient implements Addresses {
  readonly #input: Writable
  readonly #output: Readable
  readonly #timeoutMs: number
  #nextId = 1
  #pending: Pending | undefined
  #queue: Promise<unknown> = Promise.resolve()
  #buf = ''
  #closed: Error | undefined

  constructor (opts: HelperClientOptions) {
    this.#input = opts.input
    this.#output = opts.output
    this.#timeoutMs = opts.timeoutMs ?? 15_000
    this.#output.setEncoding('utf8')
    this.#output.on('data', (chunk: string) => this.#onData(chunk))
    const gone = (): void => this.#fail(new KtError('KT_ERR_ADDRESS_COMMAND', 'the address helper exited'))
    this.#output.on('end', gone)
    this.#output.on('close', gone)
    this.#output.on('error', gone)
    this.#input.on('error', gone)
  }

  #fail (err: Error): void {
    this.#closed ??= err
    const p = this.#pending
    this.#pending = undefined
    if (p !== undefined) { p.clear(); p.reject(err) }
  }

  #onData (chunk: string): void {
    this.#buf += chunk
    let nl: number
    while ((nl = this.#buf.indexOf('\n')) >= 0) {
      const line = this.#buf.slice(0, nl)
      this.#buf = this.#buf.slice(nl + 1)
      let msg: unknown
      try { msg = JSON.parse(line) } catch { continue }
      const p = this.#pending
      if (p === undefined || msg === null || typeof msg !== 'object') continue
      const m = msg as Record<string, unknown>
      // An answer to a line the helper could not even read carries no id.
      if (m.id !== undefined && m.id !== p.id) continue
      this.#pending = undefined
      p.clear()
      p.resolve(m)
    }
    if (this.#buf.length > 1024 * 1024) this.#fail(new KtError('KT_ERR_ADDRESS_COMMAND', 'the address helper sent an over-long line'))
  }

  #request (req: Record<string, unknown>): Promise<Record<string, unknown>> {
    const run = async (): Promise<Record<string, unknown>> => {
      if (this.#closed !== undefined) throw this.#closed
      const id = this.#nextId++
      const answer = await new Promise<Record<string, unknown>>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.#pending = undefined
          reject(new KtError('KT_ERR_ADDRESS_COMMAND', `the address helper did not answer within ${this.#timeoutMs} ms`))
        }, this.#timeoutMs)
        this.#pending = { id, resolve, reject, clear: () => clearTimeout(timer) }
        this.#input.write(`${JSON.stringify({ id, ...req })}\n`)
      })
      if (answer.ok === true) return answer
      const code = typeof answer.code === 'string' && Object.hasOwn(ErrorCodes, answer.code) ? answer.code as ErrorCode : 'KT_ERR_ADDRESS_COMMAND'
      throw new KtError(code, typeof answer.message === 'string' ? answer.message : ErrorCodes[code])
    }
    const p = this.#queue.then(run, run)
    this.#queue = p.catch(() => {})
    return p
  }

  async ensure (ip: string): Promise<AddressChange> {
    const a = await this.#request({ verb: 'add', ip })
    return { ip: String(a.ip), changed: a.changed === true }
  }

  async release (ip: string): Promise<AddressChange> {
    const a = await this.#request({ verb: 'remove', ip })
    return { ip: String(a.ip), changed: a.changed === true }
  }

  async list (): Promise<LoopbackAddress[]> {
    const a = await this.#request({ verb: 'list' })
    return Array.isArray(a.addresses) ? a.addresses as LoopbackAddress[] : []
  }

  /** End the helper's input; it exits once its last answer is written. */
  close (): void {
    this.#input.end()
  }
}
