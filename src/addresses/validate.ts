// What the privileged helper accepts, checked before anything runs. The
// helper runs as root, so every request is assumed hostile: fixed verbs,
// addresses that are exactly one IP literal inside the configured pool, and
// nothing else. What reaches a command is our own canonical re-spelling of
// the address, never the caller's text.

import { KtError, InvalidArgumentError } from '../errors.js'
import { type Cidr, canonicalIp, isAllocatable, parseCidr, parseIp } from '../routing/cidr.js'

export type HelperVerb = 'add' | 'remove' | 'list'

export interface HelperRequest {
  readonly verb: HelperVerb
  /** Canonical IP text (add, remove). */
  readonly ip?: string
  /** Echoed in the answer so a client can match answers to requests. */
  readonly id?: string | number
}

/** One request line may not be longer than this (bytes, without the newline). */
export const MAX_REQUEST_BYTES = 1024

const VERBS: ReadonlySet<string> = new Set(['add', 'remove', 'list'])
const KEYS: ReadonlySet<string> = new Set(['verb', 'ip', 'id'])

export function refused (message: string): KtError {
  return new KtError('KT_ERR_ADDRESS_REFUSED', message)
}

/**
 * Check the pool the helper is started with. Besides being a CIDR, it must be
 * small enough that a typo (`0.0.0.0/0`) cannot let an agent put arbitrary
 * addresses, say a public DNS server's, on the loopback interface, and it
 * must stay clear of the unspecified and multicast ranges.
 */
export function validatePool (raw: string | Cidr): Cidr {
  const pool = typeof raw === 'string' ? parseCidr(raw, { strict: true, what: '--ip-pool' }) : raw
  const bad = (why: string): InvalidArgumentError => new InvalidArgumentError('KT_ERR_INVALID_CIDR', `--ip-pool: ${pool.text} ${why}`)
  if (pool.family === 4) {
    if (pool.prefix < 8) throw bad('is larger than a /8')
    const top = Number(pool.base >> 24n)
    if (top === 0) throw bad('overlaps 0.0.0.0/8')
    if (top >= 224) throw bad('overlaps the multicast and reserved ranges (224.0.0.0/3)')
  } else {
    if (pool.prefix < 48) throw bad('is larger than a /48')
    const top = Number(pool.base >> 120n)
    if (top === 0) throw bad('overlaps ::/8 (unspecified, loopback, IPv4-mapped)')
    if (top === 0xff) throw bad('overlaps the multicast range ff00::/8')
  }
  return pool
}

/**
 * An address the helper may bind or remove: a string that is exactly one IP
 * literal (no zone id, no spaces, no options), inside the pool, not the
 * pool's network/broadcast address, and never 127.0.0.1 or ::1.
 * Returns the canonical spelling; throws KT_ERR_ADDRESS_REFUSED.
 */
export function validateIp (raw: unknown, pool: Cidr): string {
  if (typeof raw !== 'string') throw refused('ip must be a string')
  const shown = JSON.stringify(raw.length > 64 ? `${raw.slice(0, 64)}...` : raw)
  if (raw.length === 0) throw refused('ip is empty')
  const canonical = canonicalIp(raw)
  if (canonical === null) throw refused(`${shown} is not a single IP address`)
  if (canonical === '127.0.0.1' || canonical === '::1') throw refused(`${canonical} is the system loopback address`)
  const p = parseIp(canonical)
  if (p === null || p.value === 0n) throw refused(`${shown} is the unspecified address`)
  if (!isAllocatable(pool, canonical)) throw refused(`${canonical} is outside the pool ${pool.text}`)
  return canonical
}

/** Parse and check one request line. Throws KT_ERR_ADDRESS_REFUSED. */
export function parseRequest (line: string, pool: Cidr): HelperRequest {
  if (Buffer.byteLength(line) > MAX_REQUEST_BYTES) throw refused(`request longer than ${MAX_REQUEST_BYTES} bytes`)
  let msg: unknown
  try {
    msg = JSON.parse(line)
  } catch {
    throw refused('request is not JSON')
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) throw refused('request is not a JSON object')
  // JSON.parse makes `__proto__` an own key, so it is caught here too.
  for (const k of Object.keys(msg)) {
    if (!KEYS.has(k)) throw refused(`unknown field ${JSON.stringify(k.slice(0, 32))}`)
  }
  const rec = msg as Record<string, unknown>
  const id = rec.id
  if (id !== undefined && !(typeof id === 'string' && id.length <= 64) && !(typeof id === 'number' && Number.isSafeInteger(id))) {
    throw refused('id must be a short string or an integer')
  }
  const verb = rec.verb
  if (typeof verb !== 'string' || !VERBS.has(verb)) {
    throw refused(`verb must be one of add, remove, list; got ${JSON.stringify(typeof verb === 'string' ? verb.slice(0, 32) : typeof verb)}`)
  }
  const withId = id !== undefined ? { id: id as string | number } : {}
  if (verb === 'list') {
    if (rec.ip !== undefined) throw refused('list takes no ip')
    return { verb, ...withId }
  }
  return { verb: verb as HelperVerb, ip: validateIp(rec.ip, pool), ...withId }
}
