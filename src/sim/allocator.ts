// ClusterIP and NodePort allocation. Like kube-apiserver's allocators
// (KEP-3070, KEP-3668), the bottom of each range is a "static band" that
// dynamic allocation only uses when the rest is full, so Services that pick
// their own IP or nodePort rarely collide with allocated ones.

import { randomInt } from 'node:crypto'
import { InvalidArgumentError } from '../errors.js'
import { parseCidr } from '../routing/cidr.js'

export class RangeAllocator {
  private readonly used = new Set<number>()
  /** Values in [first, first + size); dynamic picks prefer [first + staticBand, ...). */
  constructor (readonly first: number, readonly size: number, readonly staticBand: number) {}

  inRange (v: number): boolean {
    return Number.isInteger(v) && v >= this.first && v < this.first + this.size
  }

  isUsed (v: number): boolean {
    return this.used.has(v)
  }

  /** Takes a specific value; false if it is out of range or taken. */
  reserve (v: number): boolean {
    if (!this.inRange(v) || this.used.has(v)) return false
    this.used.add(v)
    return true
  }

  release (v: number): void {
    this.used.delete(v)
  }

  /** A free value, preferring the dynamic band, or undefined when the range is full. */
  allocate (): number | undefined {
    const dynFirst = this.first + this.staticBand
    const dynSize = this.size - this.staticBand
    const found = this.pick(dynFirst, dynSize) ?? this.pick(this.first, this.staticBand)
    if (found !== undefined) this.used.add(found)
    return found
  }

  get count (): number {
    return this.used.size
  }

  private pick (first: number, size: number): number | undefined {
    if (size <= 0) return undefined
    // Random probes are O(1) while the range is sparse; the scan bounds the full case.
    for (let i = 0; i < 32; i++) {
      const v = first + randomInt(size)
      if (!this.used.has(v)) return v
    }
    const start = randomInt(size)
    for (let i = 0; i < size; i++) {
      const v = first + ((start + i) % size)
      if (!this.used.has(v)) return v
    }
    return undefined
  }
}

export function ipv4ToInt (ip: string): number {
  const p = ip.split('.').map(Number)
  return (((p[0] as number) << 24) >>> 0) + ((p[1] as number) << 16) + ((p[2] as number) << 8) + (p[3] as number)
}

export function intToIpv4 (n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')
}

export interface Cidr { base: number, bits: number, text: string }

/** An IPv4 serviceCIDR, read by the one TS CIDR parser (host bits cleared, as kube-apiserver does). */
export function parseCidr4 (text: string): Cidr {
  const bad = (): InvalidArgumentError => new InvalidArgumentError('KT_ERR_INVALID_CIDR', `serviceCIDR must be an IPv4 CIDR with a prefix of 1-30 bits, got ${JSON.stringify(text)}`)
  let c: ReturnType<typeof parseCidr>
  try {
    c = parseCidr(text, { what: 'serviceCIDR' })
  } catch {
    throw bad()
  }
  if (c.family !== 4 || c.prefix < 1 || c.prefix > 30) throw bad()
  return { base: Number(c.base), bits: c.prefix, text }
}

/** ClusterIPs: the network and broadcast addresses are never handed out. */
export function serviceIpAllocator (cidr: Cidr): RangeAllocator {
  const size = 2 ** (32 - cidr.bits) - 2
  // kube: static band = clamp(size/16, 16, 256).
  const band = Math.min(Math.max(Math.floor(size / 16), 16), 256)
  return new RangeAllocator(cidr.base + 1, size, Math.min(band, size))
}

export function nodePortAllocator (lo: number, hi: number): RangeAllocator {
  const size = hi - lo + 1
  // kube: static band = clamp(size/32, 16, 128); 86 for 30000-32767.
  const band = Math.min(Math.max(Math.floor(size / 32), 16), 128)
  return new RangeAllocator(lo, size, Math.min(band, size))
}
