// The load-balancer provider of one cluster (issue #15): it plans the
// addresses (computeRoutes with the allocations it remembers) and owns the
// LB IPs — it alone allocates, binds and releases them. The Service-sync
// layer (controller.ts) calls `plan`, `ensure` before applying a table,
// `releaseUnwanted` after, `ensureDeleted` per Service cleaned up, and
// `releaseAll` on undo: the shape of cloud-provider's EnsureLoadBalancer /
// EnsureLoadBalancerDeleted.

import type { Addresses } from '../addresses/manager.js'
import { KtError, errorCode } from '../errors.js'
import type { Logger } from '../observe/logger.js'
import { type ComputeResult, computeRoutes, type ObservedState, type RoutingOptions, type ServicePlan } from '../routing/compute.js'

export interface EnsureResult {
  /** IPs that Services being served hold. */
  readonly wantIps: ReadonlySet<string>
  /** IP → failure to bind it. */
  readonly addressErrors: ReadonlyMap<string, KtError>
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

function sameMap (a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  if (a.size !== b.size) return false
  for (const [k, v] of a) if (b.get(k) !== v) return false
  return true
}

/** What the provider remembers across runs: the allocations of an earlier run, and where to record changes. */
export interface ProviderMemory {
  readonly allocations?: ReadonlyMap<string, string> | undefined
  readonly onAllocations?: ((allocations: ReadonlyMap<string, string>) => Promise<void>) | undefined
}

function asKtError (err: unknown): KtError {
  return err instanceof KtError ? err : new KtError('KT_ERR_ADDRESS_COMMAND', String(err))
}

export class LoadBalancerProvider {
  readonly #routing: RoutingOptions
  /** Binds and unbinds LB IPs (ip mode); absent in hostname-only mode. */
  readonly #addresses: Addresses | undefined
  readonly #log: Logger
  /** `namespace/name` → IP: what computeRoutes gave out, fed back so each Service keeps its IP. */
  #allocations = new Map<string, string>()
  /** IPs bound on the host by this provider. */
  readonly #bound = new Set<string>()

  /** Told of every change of the allocations (`up` records them in the state file), before any address is bound or status written. */
  readonly #onAllocations: ((allocations: ReadonlyMap<string, string>) => Promise<void>) | undefined

  constructor (routing: RoutingOptions, addresses: Addresses | undefined, log: Logger, memory: ProviderMemory = {}) {
    this.#routing = routing
    this.#addresses = addresses
    this.#log = log
    // The first pass starts from what an earlier run gave out (the state file), so IPs never depend on a status the server may clear.
    this.#allocations = new Map(memory.allocations ?? [])
    this.#onAllocations = memory.onAllocations
  }

  /** Plan routes and addresses for what the caches hold; remembers the allocations for the next pass, and reports a change before returning. */
  async plan (observed: Omit<ObservedState, 'allocations'>, version: number): Promise<ComputeResult> {
    const before = this.#allocations
    const result = computeRoutes({ ...observed, allocations: before }, { ...this.#routing, version })
    this.#allocations = result.allocations
    if (this.#onAllocations !== undefined && !sameMap(before, result.allocations)) {
      await this.#onAllocations(result.allocations).catch((err: unknown) => {
        this.#log.warn({ code: errorCode(err) }, `cannot record the IP allocations: ${err instanceof Error ? err.message : String(err)}`)
      })
    }
    return result
  }

  /** Bind every IP a served Service holds, before its listeners. */
  async ensure (result: ComputeResult): Promise<EnsureResult> {
    const wantIps = new Set<string>()
    for (const p of result.services) {
      if (p.action === 'serve' && p.ip !== undefined && p.ports.some((x) => x.status === 'served')) wantIps.add(p.ip)
    }
    const addressErrors = new Map<string, KtError>()
    if (this.#addresses !== undefined) {
      for (const ip of wantIps) {
        if (this.#bound.has(ip)) continue
        try {
          await this.#addresses.ensure(ip)
          this.#bound.add(ip)
        } catch (err) {
          addressErrors.set(ip, asKtError(err))
        }
      }
    }
    return { wantIps, addressErrors }
  }

  /** After the table was applied: release the IPs no served Service holds any more (their listeners just closed). */
  async releaseUnwanted (wantIps: ReadonlySet<string>): Promise<void> {
    if (this.#addresses === undefined) return
    for (const ip of [...this.#bound]) {
      if (wantIps.has(ip)) continue
      try {
        await this.#addresses.release(ip)
        this.#bound.delete(ip)
      } catch (err) {
        this.#log.warn({ code: errorCode(err), ip }, `cannot release ${ip}: ${err instanceof Error ? err.message : String(err)}`)
      }
    }
  }

  /**
   * A Service being cleaned up: its IP goes, unless a served Service holds
   * it (also an IP bound by an earlier run, which this one never bound).
   * Throws, so the Service's cleanup is retried.
   */
  async ensureDeleted (plan: ServicePlan, wantIps: ReadonlySet<string>): Promise<void> {
    if (this.#addresses === undefined || plan.ip === undefined || wantIps.has(plan.ip)) return
    await this.#addresses.release(plan.ip)
    this.#bound.delete(plan.ip)
  }

  /** Undo: release every IP bound or allocated, and forget the allocations. Each failure goes to `note`. */
  async releaseAll (note: (err: unknown, what: string) => void): Promise<void> {
    if (this.#addresses !== undefined) {
      for (const ip of new Set([...this.#bound, ...this.#allocations.values()])) {
        try {
          await this.#addresses.release(ip)
          this.#bound.delete(ip)
        } catch (err) {
          note(err, `release ${ip}`)
        }
      }
    }
    this.#allocations = new Map()
  }

  /** IPs bound on the host, sorted. */
  bound (): string[] {
    return [...this.#bound].sort(cmp)
  }
}
