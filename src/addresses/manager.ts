// In-process address management: ensure/release/list, idempotent, with the
// helper's validation in front of every command. The privileged helper is a
// thin JSON-lines shell around this same class, so both paths refuse the same
// inputs.

import { KtError } from '../errors.js'
import type { Cidr } from '../routing/cidr.js'
import { type AddressBackend, type Command, type LoopbackAddress, backendFor, isSystemLoopback } from './backends.js'
import { type CommandRunner, systemRunner } from './runner.js'
import { validateIp, validatePool } from './validate.js'

export interface AddressChange {
  readonly ip: string
  /** False when the address was already as asked (or needs no alias on this OS). */
  readonly changed: boolean
}

/** What the controller needs; AddressManager and AddressHelperClient both provide it. */
export interface Addresses {
  ensure (ip: string): Promise<AddressChange>
  release (ip: string): Promise<AddressChange>
  /** Non-system loopback addresses (aliases). */
  list (): Promise<LoopbackAddress[]>
}

export interface AddressManagerOptions {
  readonly pool: string | Cidr
  readonly backend?: AddressBackend
  readonly runner?: CommandRunner
}

function commandFailed (cmd: Command, code: number, stderr: string): KtError {
  const first = stderr.split('\n').map((l) => l.trim()).find((l) => l !== '') ?? ''
  return new KtError('KT_ERR_ADDRESS_COMMAND', `${[cmd.file, ...cmd.args].join(' ')} exited ${code}${first !== '' ? `: ${first.slice(0, 200)}` : ''}`)
}

/** Every loopback alias (system addresses left out): for doctor, and for ensure/release. */
export async function listAliases (backend: AddressBackend = backendFor(), runner: CommandRunner = systemRunner()): Promise<LoopbackAddress[]> {
  const seen = new Map<string, LoopbackAddress>()
  for (const cmd of backend.list) {
    const r = await runner(cmd)
    if (r.code !== 0) throw commandFailed(cmd, r.code, r.stderr)
    for (const a of backend.parseList(r.stdout)) {
      if (!isSystemLoopback(a) && !seen.has(a.ip)) seen.set(a.ip, a)
    }
  }
  return [...seen.values()]
}

export class AddressManager implements Addresses {
  readonly pool: Cidr
  readonly backend: AddressBackend
  readonly #runner: CommandRunner
  // One operation at a time: list-then-add must not interleave with another
  // list-then-add of the same address.
  #queue: Promise<unknown> = Promise.resolve()

  constructor (opts: AddressManagerOptions) {
    this.pool = validatePool(opts.pool)
    this.backend = opts.backend ?? backendFor()
    this.#runner = opts.runner ?? systemRunner()
  }

  #serial<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn)
    this.#queue = run.catch(() => {})
    return run
  }

  async #present (ip: string): Promise<boolean> {
    return (await listAliases(this.backend, this.#runner)).some((a) => a.ip === ip)
  }

  /** Bind `ip` on loopback unless it already is. Throws KT_ERR_ADDRESS_REFUSED before running anything. */
  ensure (raw: string): Promise<AddressChange> {
    const ip = validateIp(raw, this.pool)
    const cmd = this.backend.add(ip)
    if (cmd === null) return Promise.resolve({ ip, changed: false })
    return this.#serial(async () => {
      if (await this.#present(ip)) return { ip, changed: false }
      const r = await this.#runner(cmd)
      if (r.code === 0) return { ip, changed: true }
      // Someone else (another run, a user) added it meanwhile: as good as ours.
      if (await this.#present(ip)) return { ip, changed: false }
      throw commandFailed(cmd, r.code, r.stderr)
    })
  }

  /** Remove `ip` from loopback if it is there. */
  release (raw: string): Promise<AddressChange> {
    const ip = validateIp(raw, this.pool)
    // An address that needs no alias here (127/8 on Linux and Windows) was
    // never added, so there is nothing to remove, and no list to run: the
    // controller releases one per deleted Service.
    if (this.backend.add(ip) === null) return Promise.resolve({ ip, changed: false })
    const cmd = this.backend.remove(ip)
    return this.#serial(async () => {
      if (!(await this.#present(ip))) return { ip, changed: false }
      const r = await this.#runner(cmd)
      if (r.code === 0) return { ip, changed: true }
      if (!(await this.#present(ip))) return { ip, changed: false }
      throw commandFailed(cmd, r.code, r.stderr)
    })
  }

  list (): Promise<LoopbackAddress[]> {
    return this.#serial(async () => await listAliases(this.backend, this.#runner))
  }
}
