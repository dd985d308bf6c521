// Balancing policies: which backend of an upstream a new client goes to.
//
// A balancer holds the backend list and picks from it. Every policy skips
// backends that are out of rotation (`available === false`: failed active
// checks or passively ejected) and those in the caller's `exclude` set (the
// ones a retry already tried). With `includeUnavailable` the health filter is
// lifted; the upstream uses that for `allUnhealthy: 'try-all'`.
//
// Picks run once per client connection, so none of them allocates: the
// round-robin and least-connections paths are an index walk, random counts
// then walks, and the client-IP hash hashes the address string in place.

import { InvalidArgumentError } from '../errors.js'
import type { BalancePolicy } from '../routing/types.js'

/** What a balancer needs to know about a backend. The upstream's Backend implements it. */
export interface Balanceable {
  /** Stable identity (`host:port`): the client-IP hash is keyed on it, so it must not change. */
  readonly key: string
  /** Client connections currently using this backend. */
  readonly active: number
  /** In rotation: healthy and not ejected. */
  readonly available: boolean
}

export interface Balancer<B extends Balanceable> {
  readonly policy: BalancePolicy
  /** Replace the backend list (endpoint diff on a table update). */
  setBackends (backends: readonly B[]): void
  /**
   * A backend for this client, or undefined when every candidate is excluded
   * (or, without `includeUnavailable`, out of rotation).
   */
  pick (clientAddress: string, exclude: ReadonlySet<B>, includeUnavailable?: boolean): B | undefined
}

export const BALANCE_POLICIES: readonly BalancePolicy[] = ['round-robin', 'least-connections', 'random', 'client-ip-hash']

export function createBalancer<B extends Balanceable> (policy: BalancePolicy, random: () => number = Math.random): Balancer<B> {
  switch (policy) {
    case 'round-robin': return new RoundRobin<B>()
    case 'least-connections': return new LeastConnections<B>()
    case 'random': return new RandomPick<B>(random)
    case 'client-ip-hash': return new ClientIpHash<B>()
    default: throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `unknown balance policy ${String(policy)} (expected ${BALANCE_POLICIES.join(', ')})`)
  }
}

function eligible<B extends Balanceable> (b: B, exclude: ReadonlySet<B>, includeUnavailable: boolean): boolean {
  return (includeUnavailable || b.available) && !exclude.has(b)
}

class RoundRobin<B extends Balanceable> implements Balancer<B> {
  readonly policy = 'round-robin'
  private list: readonly B[] = []
  private next = 0

  setBackends (backends: readonly B[]): void {
    this.list = backends
    if (this.next >= backends.length) this.next = 0
  }

  pick (_client: string, exclude: ReadonlySet<B>, includeUnavailable = false): B | undefined {
    const list = this.list
    const n = list.length
    for (let i = 0; i < n; i++) {
      const idx = this.next
      this.next = idx + 1 === n ? 0 : idx + 1
      const b = list[idx] as B
      if (eligible(b, exclude, includeUnavailable)) return b
    }
    return undefined
  }
}

class LeastConnections<B extends Balanceable> implements Balancer<B> {
  readonly policy = 'least-connections'
  private list: readonly B[] = []
  private start = 0

  setBackends (backends: readonly B[]): void {
    this.list = backends
    if (this.start >= backends.length) this.start = 0
  }

  pick (_client: string, exclude: ReadonlySet<B>, includeUnavailable = false): B | undefined {
    const list = this.list
    const n = list.length
    if (n === 0) return undefined
    // Scan from a rotating offset so ties (the common case at low load) spread
    // over the backends instead of piling onto the first one.
    const start = this.start
    this.start = start + 1 >= n ? 0 : start + 1
    let best: B | undefined
    for (let i = 0; i < n; i++) {
      let idx = start + i
      if (idx >= n) idx -= n
      const b = list[idx] as B
      if (!eligible(b, exclude, includeUnavailable)) continue
      if (best === undefined || b.active < best.active) best = b
    }
    return best
  }
}

class RandomPick<B extends Balanceable> implements Balancer<B> {
  readonly policy = 'random'
  private list: readonly B[] = []
  private readonly random: () => number
  constructor (random: () => number) { this.random = random }

  setBackends (backends: readonly B[]): void {
    this.list = backends
  }

  pick (_client: string, exclude: ReadonlySet<B>, includeUnavailable = false): B | undefined {
    // Count, then walk to the r-th eligible one: uniform over the eligible
    // backends (probing forward from a random index would favour the backend
    // after an unhealthy one).
    const list = this.list
    let count = 0
    for (const b of list) if (eligible(b, exclude, includeUnavailable)) count++
    if (count === 0) return undefined
    let r = Math.floor(this.random() * count)
    if (r >= count) r = count - 1
    for (const b of list) {
      if (!eligible(b, exclude, includeUnavailable)) continue
      if (r-- === 0) return b
    }
    return undefined
  }
}

/**
 * sessionAffinity: ClientIP as rendezvous (highest-random-weight) hashing:
 * every backend scores hash(client, backend) and the highest eligible score
 * wins. Chosen over a ring (CPK's Envoy ring_hash) and Maglev because:
 * - removing a backend moves exactly the clients that were on it (≈1/N), and
 *   a backend that is out of rotation only for a while gets its own clients
 *   back when it returns; a ring gets there only with many virtual nodes,
 *   Maglev only approximately;
 * - skipping unhealthy or excluded backends is "take the next-highest score",
 *   which is the same fallback order for a client on every retry;
 * - no table to rebuild on a change. The cost, O(N) per pick, is nothing for
 *   the handful of kind nodes behind an upstream.
 */
class ClientIpHash<B extends Balanceable> implements Balancer<B> {
  readonly policy = 'client-ip-hash'
  private list: readonly B[] = []
  private seeds: Uint32Array = new Uint32Array(0)

  setBackends (backends: readonly B[]): void {
    this.list = backends
    const seeds = new Uint32Array(backends.length)
    for (let i = 0; i < backends.length; i++) seeds[i] = hashString((backends[i] as B).key, 0x9747b28c)
    this.seeds = seeds
  }

  pick (clientAddress: string, exclude: ReadonlySet<B>, includeUnavailable = false): B | undefined {
    const list = this.list
    const seeds = this.seeds
    const c = hashString(clientAddress, 0x2545f491, mappedPrefixLength(clientAddress))
    let best: B | undefined
    let bestScore = -1
    for (let i = 0; i < list.length; i++) {
      const b = list[i] as B
      if (!eligible(b, exclude, includeUnavailable)) continue
      const score = fmix32(c ^ (seeds[i] as number))
      if (score > bestScore) { best = b; bestScore = score }
    }
    return best
  }
}

/** Length of a `::ffff:` prefix to skip, so a client is the same over IPv4 and as an IPv4-mapped IPv6 address. */
function mappedPrefixLength (a: string): number {
  if (a.length < 9 || a.charCodeAt(0) !== 58 || a.charCodeAt(1) !== 58 || a.charCodeAt(6) !== 58) return 0
  for (let i = 2; i < 6; i++) if ((a.charCodeAt(i) | 0x20) !== 102) return 0 // 'f' or 'F'
  return a.indexOf('.', 7) === -1 ? 0 : 7
}

/** FNV-1a over UTF-16 code units, finished with fmix32: 32 well-mixed bits, no allocation. */
export function hashString (s: string, seed: number, from = 0): number {
  let h = (0x811c9dc5 ^ seed) >>> 0
  for (let i = from; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return fmix32(h)
}

/** MurmurHash3's finaliser: every input bit affects every output bit. */
function fmix32 (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}
