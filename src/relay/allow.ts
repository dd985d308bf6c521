// The relay's destination allowlist. Exact and anchored: an address is allowed
// only when it lies inside one of the configured CIDRs (the cluster's node IPs)
// AND the port is in the NodePort range or the extra list (kube-proxy's 10256).
// Loopback, link-local (cloud metadata at 169.254.169.254), unspecified and
// multicast addresses are refused even when a CIDR covers them: chisel's
// unanchored allowlist is the cautionary tale (design anchors §2, Security).
// It ships in the relay image, which carries no node_modules: it imports only
// relative modules (the one TS CIDR parser, routing/cidr.ts, is dependency-free;
// the image builder follows the imports, docker/relay-image.ts).

import { InvalidArgumentError } from '../errors.js'
import { type Cidr, cidrContains, parseCidr as parseAnyCidr } from '../routing/cidr.js'
import { ipToBytes } from './protocol.js'

export interface PortPolicy {
  readonly min: number
  readonly max: number
  readonly extra: readonly number[]
}

export const DEFAULT_PORTS: PortPolicy = Object.freeze({ min: 30000, max: 32767, extra: Object.freeze([10256]) })

export type DenyReason = 'loopback' | 'link-local' | 'unspecified' | 'multicast' | 'address' | 'port'

function inPrefix (ip: Buffer, net: Buffer, prefix: number): boolean {
  if (ip.length !== net.length) return false
  const full = prefix >> 3
  for (let i = 0; i < full; i++) if (ip[i] !== net[i]) return false
  const rem = prefix & 7
  if (rem === 0) return true
  const mask = (0xff << (8 - rem)) & 0xff
  return ((ip[full] as number) & mask) === ((net[full] as number) & mask)
}

/** Parse `IP/PREFIX` (or a bare IP as a host route) with the one TS CIDR parser. Host bits must be zero; /0 is refused. */
export function parseCidr (raw: string): Cidr {
  const c = parseAnyCidr(raw, { strict: true, bare: true, what: '--allow' })
  if (c.prefix === 0) throw new InvalidArgumentError('KT_ERR_INVALID_CIDR', `--allow: ${JSON.stringify(raw)} allows every address; list the cluster's node IPs instead`)
  return c
}

function validPort (p: number): boolean {
  return Number.isInteger(p) && p >= 1 && p <= 65535
}

/** `::ffff:a.b.c.d` is IPv4 for every purpose here, so `::ffff:127.0.0.1` is loopback. */
function unmap (b: Buffer): Buffer {
  if (b.length !== 16) return b
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return b
  if (b[10] !== 0xff || b[11] !== 0xff) return b
  return b.subarray(12)
}

const V4_FORBIDDEN: ReadonlyArray<[number[], number, DenyReason]> = [
  [[0, 0, 0, 0], 8, 'unspecified'],
  [[127, 0, 0, 0], 8, 'loopback'],
  [[169, 254, 0, 0], 16, 'link-local'],
  [[224, 0, 0, 0], 4, 'multicast'], // also covers 240/4 and 255.255.255.255 below
  [[240, 0, 0, 0], 4, 'multicast'],
]
const V6_FORBIDDEN: ReadonlyArray<[number[], number, DenyReason]> = [
  [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 128, 'unspecified'],
  [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 128, 'loopback'],
  [[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 10, 'link-local'],
  [[0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8, 'multicast'],
]
const FORBIDDEN = [...V4_FORBIDDEN, ...V6_FORBIDDEN].map(([b, p, r]) => ({ bytes: Buffer.from(b), prefix: p, reason: r }))

/** Why an address is never relayed whatever the allowlist (loopback, link-local, ...), or null. */
export function forbiddenReason (address: string): DenyReason | null {
  const raw = ipToBytes(address)
  if (raw === null) return 'address'
  const ip = unmap(raw)
  for (const f of FORBIDDEN) if (inPrefix(ip, f.bytes, f.prefix)) return f.reason
  return null
}

export class Allowlist {
  readonly cidrs: readonly Cidr[]
  readonly ports: PortPolicy
  private readonly extra: ReadonlySet<number>

  constructor (cidrs: readonly string[], ports: PortPolicy = DEFAULT_PORTS) {
    if (cidrs.length === 0) throw new InvalidArgumentError('KT_ERR_INVALID_CIDR', '--allow: at least one CIDR (the cluster node IPs) is required')
    this.cidrs = Object.freeze(cidrs.map(parseCidr))
    if (!validPort(ports.min) || !validPort(ports.max) || ports.min > ports.max) {
      throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `--ports: ${ports.min}-${ports.max} is not a port range`)
    }
    for (const p of ports.extra) if (!validPort(p)) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `--extra-port: ${p} is not a port`)
    this.ports = Object.freeze({ min: ports.min, max: ports.max, extra: Object.freeze([...ports.extra]) })
    this.extra = new Set(ports.extra)
  }

  /** null when allowed; otherwise why not. Address checks come before the port check. */
  check (address: string, port: number): DenyReason | null {
    const forbidden = forbiddenReason(address)
    if (forbidden !== null) return forbidden
    const ip = unmap(ipToBytes(address) as Buffer)
    const family = ip.length === 4 ? 4 : 6
    const value = BigInt(`0x${ip.toString('hex')}`)
    let inside = false
    for (const c of this.cidrs) if (cidrContains(c, family, value)) { inside = true; break }
    if (!inside) return 'address'
    if ((port >= this.ports.min && port <= this.ports.max) || this.extra.has(port)) return null
    return 'port'
  }
}

/** A refusal's detail in the relay's log (server.ts, mux-server.ts, the addon's streams). */
export function denyText (r: DenyReason): string {
  switch (r) {
    case 'port': return 'port outside the NodePort range and extra ports'
    case 'address': return 'address outside the cluster allowlist'
    default: return `${r} address`
  }
}
