// Capped exponential backoff with jitter, for informer restarts and retried
// API writes. Jitter spreads retries of many Services (and many kind-tunnel
// processes against one API server) so they do not arrive in lockstep.

export interface BackoffOptions {
  /** First delay; default 200 ms. */
  readonly initialMs?: number
  /** Cap; default 30 s. */
  readonly maxMs?: number
  /** Growth per failure; default 2. */
  readonly factor?: number
  /** Fraction of the delay drawn at random, 0..1; default 0.2 (delay × [0.8, 1.2]). */
  readonly jitter?: number
  /** For tests; default Math.random. */
  readonly random?: () => number
}

export class Backoff {
  readonly initialMs: number
  readonly maxMs: number
  readonly factor: number
  readonly jitter: number
  readonly #random: () => number
  /** Failures since the last reset. */
  attempts = 0

  constructor (o: BackoffOptions = {}) {
    this.initialMs = o.initialMs ?? 200
    this.maxMs = o.maxMs ?? 30_000
    this.factor = o.factor ?? 2
    this.jitter = Math.min(1, Math.max(0, o.jitter ?? 0.2))
    this.#random = o.random ?? Math.random
  }

  /** The delay before the next attempt; counts one more failure. */
  next (): number {
    const base = Math.min(this.maxMs, this.initialMs * this.factor ** Math.min(this.attempts, 64))
    this.attempts++
    const spread = base * this.jitter
    const ms = base - spread + this.#random() * 2 * spread
    return Math.max(1, Math.min(this.maxMs, Math.round(ms)))
  }

  reset (): void {
    this.attempts = 0
  }
}
