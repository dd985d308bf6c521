// Hostname normalisation and matching for shared listeners (SNI and Host).
// Pure: no I/O, no timers, no logging. The peekers hand names to
// normalizeHostname; the data plane builds one HostMatcher per listener from
// its HostRoutes and calls match() once per connection.

import { InvalidArgumentError } from '../errors.js'

// RFC 1035 §2.3.4: 63 octets per label, 255 octets on the wire, which is 253
// characters in dotted text without the trailing dot.
const MAX_LABEL = 63
const MAX_NAME = 253

/**
 * Lowercase an ASCII hostname and drop ONE trailing dot (the root label).
 * Returns undefined for anything that is not a plain DNS name: empty names,
 * empty labels, labels over 63 characters, names over 253 characters,
 * non-ASCII or punctuation (a client-sent `*` must never reach a wildcard
 * entry), and IP literals: a bracketed or colon-bearing IPv6 literal, and any
 * name whose last label is a number, which browsers and curl parse as IPv4
 * (WHATWG URL "ends in a number"; RFC 6066 §3 forbids IP literals in SNI).
 * Underscores are accepted because real clients send them.
 */
export function normalizeHostname (raw: string): string | undefined {
  let end = raw.length
  if (end > 0 && raw.charCodeAt(end - 1) === 0x2e) end-- // one trailing dot only
  if (end === 0 || end > MAX_NAME) return undefined
  let labelLen = 0
  let labelStart = 0
  let hasUpper = false
  for (let i = 0; i < end; i++) {
    const c = raw.charCodeAt(i)
    if (c === 0x2e) {
      if (labelLen === 0) return undefined
      labelLen = 0
      labelStart = i + 1
      continue
    }
    if (c >= 0x61 && c <= 0x7a) { /* a-z */ } else if (c >= 0x30 && c <= 0x39) { /* 0-9 */ } else if (c === 0x2d || c === 0x5f) { /* - _ */ } else if (c >= 0x41 && c <= 0x5a) {
      hasUpper = true
    } else {
      return undefined
    }
    if (++labelLen > MAX_LABEL) return undefined
  }
  if (labelLen === 0) return undefined
  if (isNumericLabel(raw, labelStart, end)) return undefined
  const name = end === raw.length ? raw : raw.slice(0, end)
  return hasUpper ? name.toLowerCase() : name
}

/** Decimal digits, or `0x` + hex digits: the shapes an IPv4 parser accepts as a last label. */
function isNumericLabel (s: string, start: number, end: number): boolean {
  let i = start
  let hex = false
  if (end - start >= 2 && s.charCodeAt(i) === 0x30 && (s.charCodeAt(i + 1) | 0x20) === 0x78) {
    hex = true
    i += 2
  }
  for (; i < end; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0x30 && c <= 0x39) continue
    const l = c | 0x20
    if (hex && l >= 0x61 && l <= 0x66) continue
    return false
  }
  return true
}

/**
 * Maps hostnames to values. Entry names are exact (`api.example.test`) or
 * wildcards (`*.example.test`). Rules, in order:
 *  1. an exact entry wins over any wildcard;
 *  2. among wildcards, the longest suffix wins (`*.a.b.test` before `*.b.test`);
 *  3. `*.x.test` matches one OR MORE labels in front of `x.test` (`a.x.test`,
 *     `a.b.x.test`) but never `x.test` itself. This is the Envoy/nginx
 *     `server_name` reading, not the single-label one of RFC 6125 §6.4.3:
 *     routing is not certificate validation.
 * When the same name is given twice, the first entry wins and the name is
 * listed in `duplicates` so that the caller can report the conflict.
 * Entry names that are not hostnames throw KT_ERR_INVALID_ROUTE.
 */
export class HostMatcher<T> {
  readonly duplicates: readonly string[]
  readonly size: number
  private readonly exact = new Map<string, T>()
  private readonly wild = new Map<string, T>()

  constructor (entries: Iterable<readonly [name: string, value: T]>) {
    const dups: string[] = []
    for (const [rawName, value] of entries) {
      const trimmed = typeof rawName === 'string' ? rawName.trim() : ''
      const isWild = trimmed.startsWith('*.')
      const name = normalizeHostname(isWild ? trimmed.slice(2) : trimmed)
      if (name === undefined) {
        throw new InvalidArgumentError('KT_ERR_INVALID_ROUTE', `route name ${JSON.stringify(rawName)} is not a hostname or *.suffix`)
      }
      const map = isWild ? this.wild : this.exact
      if (map.has(name)) {
        dups.push(isWild ? `*.${name}` : name)
        continue
      }
      map.set(name, value)
    }
    this.duplicates = dups
    this.size = this.exact.size + this.wild.size
  }

  /** The value for a client-supplied name, or undefined (default route). Never throws. */
  match (name: string): T | undefined {
    const n = normalizeHostname(name)
    if (n === undefined) return undefined
    const hit = this.exact.get(n)
    if (hit !== undefined) return hit
    if (this.wild.size === 0) return undefined
    // Walk suffixes left to right: the first one found is the longest. Start
    // after the first dot so at least one label stays in front of the suffix.
    for (let dot = n.indexOf('.'); dot >= 0; dot = n.indexOf('.', dot + 1)) {
      const w = this.wild.get(n.slice(dot + 1))
      if (w !== undefined) return w
    }
    return undefined
  }
}
