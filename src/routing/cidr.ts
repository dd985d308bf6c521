// IP and CIDR arithmetic on bigints, for IPv4 and IPv6 alike. Pure: no I/O.
// Shared by the IP allocator, the route computation (loadBalancerSourceRanges)
// and the address helper (pool checks), so all three agree on what an address
// and a pool are.

import { isIP } from 'node:net'
import { InvalidArgumentError } from '../errors.js'

export type IpFamily = 4 | 6

export interface Cidr {
  readonly family: IpFamily
  /** The network address (host bits cleared). */
  readonly base: bigint
  readonly prefix: number
  /** Canonical text: `10.0.0.0/8`, `fd00::/64`. */
  readonly text: string
}

const V4_CHARS = /^[0-9.]+$/
const V6_CHARS = /^[0-9a-fA-F:.]+$/

function bitsOf (family: IpFamily): number {
  return family === 4 ? 32 : 128
}

/**
 * Parse an IP literal to its family and value; null when it is not one.
 * Strict on purpose: no zone ids (`fe80::1%eth0`), no brackets, no spaces, no
 * leading zeros in IPv4 octets (net.isIP already refuses `010.1.1.1`).
 */
export function parseIp (raw: string): { family: IpFamily, value: bigint } | null {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 45) return null
  const kind = isIP(raw)
  if (kind === 4) {
    if (!V4_CHARS.test(raw)) return null
    let v = 0n
    for (const o of raw.split('.')) v = (v << 8n) | BigInt(Number(o))
    return { family: 4, value: v }
  }
  if (kind === 6) {
    // net.isIP accepts a zone id (`%eth0`); the character class refuses it.
    if (!V6_CHARS.test(raw)) return null
    return { family: 6, value: parseV6(raw) }
  }
  return null
}

function parseV6 (raw: string): bigint {
  let s = raw
  // An embedded dotted IPv4 tail (`::ffff:1.2.3.4`) is rewritten as two hex
  // groups first; net.isIP has already vouched for its shape.
  const lastColon = s.lastIndexOf(':')
  const tail = s.slice(lastColon + 1)
  if (tail.includes('.')) {
    const o = tail.split('.').map(Number)
    const hi = (((o[0] ?? 0) << 8) | (o[1] ?? 0)).toString(16)
    const lo = (((o[2] ?? 0) << 8) | (o[3] ?? 0)).toString(16)
    s = `${s.slice(0, lastColon + 1)}${hi}:${lo}`
  }
  const groupsOf = (p: string): bigint[] => p === '' ? [] : p.split(':').map((g) => BigInt(parseInt(g, 16)))
  const dbl = s.indexOf('::')
  let groups: bigint[]
  if (dbl >= 0) {
    const head = groupsOf(s.slice(0, dbl))
    const rest = groupsOf(s.slice(dbl + 2))
    groups = [...head, ...new Array<bigint>(8 - head.length - rest.length).fill(0n), ...rest]
  } else {
    groups = groupsOf(s)
  }
  let v = 0n
  for (const g of groups) v = (v << 16n) | g
  return v
}

/** Canonical text of an address: dotted quad, or RFC 5952 §4 compressed lowercase IPv6. */
export function formatIp (family: IpFamily, value: bigint): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((sh) => String((value >> sh) & 0xffn)).join('.')
  }
  const groups: number[] = []
  for (let i = 7; i >= 0; i--) groups.push(Number((value >> BigInt(i * 16)) & 0xffffn))
  // RFC 5952 §4.2.2-4.2.3: compress the longest run of two or more zero
  // groups, the first one on a tie.
  let bestAt = -1
  let bestLen = 1
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen) { bestAt = i; bestLen = j - i }
    i = j
  }
  const hex = groups.map((g) => g.toString(16))
  if (bestAt < 0) return hex.join(':')
  return `${hex.slice(0, bestAt).join(':')}::${hex.slice(bestAt + bestLen).join(':')}`
}

/** Canonical form of an IP literal, or null when it is not one. */
export function canonicalIp (raw: string): string | null {
  const p = parseIp(raw)
  return p === null ? null : formatIp(p.family, p.value)
}

/**
 * Parse `ADDR/PREFIX`. With `strict`, host bits must be zero (pools); without,
 * they are cleared (loadBalancerSourceRanges, which Kubernetes accepts with
 * host bits set). With `bare`, an address alone is the one-address prefix
 * (source ranges). Throws InvalidArgumentError KT_ERR_INVALID_CIDR. This is
 * the one CIDR parser of the TS side; the native lane's (kt_lane_napi.c
 * parse_cidr) is differential-tested against it (test/native/cidr-differential.test.ts).
 */
export function parseCidr (raw: string, opts: { strict?: boolean, what?: string, bare?: boolean } = {}): Cidr {
  const what = opts.what ?? 'CIDR'
  const bad = (why: string): InvalidArgumentError =>
    new InvalidArgumentError('KT_ERR_INVALID_CIDR', `${what}: ${JSON.stringify(raw)} ${why}`)
  if (typeof raw !== 'string') throw bad('is not a string')
  const s = raw.trim()
  const slash = s.indexOf('/')
  if (slash < 0 && opts.bare !== true) throw bad('is not ADDRESS/PREFIX')
  const ip = parseIp(slash < 0 ? s : s.slice(0, slash))
  if (ip === null) throw bad(slash < 0 ? 'is not an IP address' : 'does not start with an IP address')
  const prefixRaw = slash < 0 ? String(bitsOf(ip.family)) : s.slice(slash + 1)
  if (!/^\d{1,3}$/.test(prefixRaw)) throw bad('has no numeric prefix length')
  const prefix = Number(prefixRaw)
  const bits = bitsOf(ip.family)
  if (prefix > bits) throw bad(`has a prefix longer than ${bits}`)
  const hostMask = (1n << BigInt(bits - prefix)) - 1n
  if (opts.strict === true && (ip.value & hostMask) !== 0n) {
    throw bad(`has host bits set; did you mean ${formatIp(ip.family, ip.value & ~hostMask)}/${prefix}?`)
  }
  const base = ip.value & ~hostMask & ((1n << BigInt(bits)) - 1n)
  return { family: ip.family, base, prefix, text: `${formatIp(ip.family, base)}/${prefix}` }
}

/** Number of addresses in the block. */
export function cidrSize (c: Cidr): bigint {
  return 1n << BigInt(bitsOf(c.family) - c.prefix)
}

export function cidrContains (c: Cidr, family: IpFamily, value: bigint): boolean {
  if (family !== c.family) return false
  const shift = BigInt(bitsOf(c.family) - c.prefix)
  return (value >> shift) === (c.base >> shift)
}

/** Whether the IP literal `ip` lies inside `c`. */
export function cidrContainsIp (c: Cidr, ip: string): boolean {
  const p = parseIp(ip)
  return p !== null && cidrContains(c, p.family, p.value)
}

/**
 * The range of addresses that may be handed out from a pool. IPv4 blocks
 * larger than /31 lose their network and broadcast addresses; /31 and /32 use
 * every address (RFC 3021). IPv6 has no broadcast, but the all-zeros address
 * of a prefix is the Subnet-Router anycast address (RFC 4291 §2.6.1), so it is
 * skipped for blocks larger than /127 (RFC 6164 uses both of a /127).
 */
export function usableRange (c: Cidr): { first: bigint, last: bigint } {
  const size = cidrSize(c)
  const first = c.base
  const last = c.base + size - 1n
  if (c.family === 4) {
    return c.prefix < 31 ? { first: first + 1n, last: last - 1n } : { first, last }
  }
  return c.prefix < 127 ? { first: first + 1n, last } : { first, last }
}

/** Whether `ip` is inside the pool and not one of its reserved edge addresses. */
export function isAllocatable (pool: Cidr, ip: string): boolean {
  const p = parseIp(ip)
  if (p === null || !cidrContains(pool, p.family, p.value)) return false
  const { first, last } = usableRange(pool)
  return p.value >= first && p.value <= last
}
