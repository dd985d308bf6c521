// PROXY protocol headers, written first on an upstream connection so the
// backend learns the real client. Encoders only: kind-tunnel sends PROXY, it
// never accepts it. Reference: HAProxy, "The PROXY protocol, Versions 1 & 2"
// (doc/proxy-protocol.txt); section numbers below are from that text.
//
// Addresses come from sockets, so they are trusted in shape but may be
// missing (a socket that already closed has no remoteAddress). Nothing here
// throws: what cannot be encoded goes out as UNKNOWN (v1) / AF_UNSPEC (v2),
// which §2.1 and §2.2 oblige the receiver to accept, using the real
// connection's addresses instead.

import { isIPv4, isIPv6 } from 'node:net'
import type { ProxyProtocolVersion } from '../routing/types.js'

export interface ProxyAddresses {
  /** The client: the accepted socket's remoteAddress / remotePort. */
  readonly sourceAddress: string | undefined
  readonly sourcePort: number | undefined
  /** Where the client connected to: the accepted socket's localAddress / localPort. */
  readonly destAddress: string | undefined
  readonly destPort: number | undefined
}

/** §2.2: the 12-byte v2 signature. */
export const PROXY_V2_SIGNATURE: Buffer = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])

const V1_UNKNOWN = 'PROXY UNKNOWN\r\n'

interface Resolved { family: 4 | 6, src: string, dst: string, sport: number, dport: number }

export function encodeProxyHeader (version: ProxyProtocolVersion, a: ProxyAddresses): Buffer {
  return version === 'v2' ? encodeProxyV2(a) : encodeProxyV1(a)
}

/** §2.1: `PROXY TCP4|TCP6 src dst sport dport\r\n`, at most 107 bytes. */
export function encodeProxyV1 (a: ProxyAddresses): Buffer {
  const r = resolve(a)
  if (r === undefined) return Buffer.from(V1_UNKNOWN, 'latin1')
  return Buffer.from(`PROXY TCP${r.family} ${r.src} ${r.dst} ${r.sport} ${r.dport}\r\n`, 'latin1')
}

/**
 * §2.2: signature, version 2 + PROXY command (0x21), family + STREAM
 * (0x11 TCP over IPv4, 0x21 TCP over IPv6), then the address block length
 * (12 or 36, big-endian) and the block: src addr, dst addr, src port, dst port.
 */
export function encodeProxyV2 (a: ProxyAddresses): Buffer {
  const r = resolve(a)
  const addrLen = r === undefined ? 0 : r.family === 4 ? 12 : 36
  const buf = Buffer.allocUnsafe(16 + addrLen)
  PROXY_V2_SIGNATURE.copy(buf, 0)
  buf[12] = 0x21
  if (r === undefined) {
    buf[13] = 0x00 // AF_UNSPEC, UNSPEC: the receiver uses the connection's own addresses
    buf.writeUInt16BE(0, 14)
    return buf
  }
  buf[13] = r.family === 4 ? 0x11 : 0x21
  buf.writeUInt16BE(addrLen, 14)
  if (r.family === 4) {
    writeIPv4(buf, 16, r.src)
    writeIPv4(buf, 20, r.dst)
    buf.writeUInt16BE(r.sport, 24)
    buf.writeUInt16BE(r.dport, 26)
  } else {
    writeIPv6(buf, 16, r.src)
    writeIPv6(buf, 32, r.dst)
    buf.writeUInt16BE(r.sport, 48)
    buf.writeUInt16BE(r.dport, 50)
  }
  return buf
}

/**
 * Pick the family both addresses can share. A header carries one family, so:
 * both IPv4 (or IPv4-mapped IPv6, `::ffff:1.2.3.4`, as a dual-stack socket
 * reports an IPv4 peer) → TCP4 with plain IPv4; otherwise TCP6, an IPv4
 * address going out as its mapped form.
 */
function resolve (a: ProxyAddresses): Resolved | undefined {
  if (!validPort(a.sourcePort) || !validPort(a.destPort)) return undefined
  const src = normalise(a.sourceAddress)
  const dst = normalise(a.destAddress)
  if (src === undefined || dst === undefined) return undefined
  const src4 = isIPv4(src) ? src : unmapIPv4(src)
  const dst4 = isIPv4(dst) ? dst : unmapIPv4(dst)
  if (src4 !== undefined && dst4 !== undefined) return { family: 4, src: src4, dst: dst4, sport: a.sourcePort, dport: a.destPort }
  return {
    family: 6,
    src: isIPv4(src) ? '::ffff:' + src : src,
    dst: isIPv4(dst) ? '::ffff:' + dst : dst,
    sport: a.sourcePort,
    dport: a.destPort,
  }
}

function validPort (p: number | undefined): p is number {
  return p !== undefined && Number.isInteger(p) && p >= 0 && p <= 65535
}

/** Lowercase, drop an IPv6 zone (`fe80::1%eth0`: no zone in either format), and check it is an IP literal. */
function normalise (addr: string | undefined): string | undefined {
  if (addr === undefined || addr === '') return undefined
  const pct = addr.indexOf('%')
  const a = (pct === -1 ? addr : addr.slice(0, pct)).toLowerCase()
  return isIPv4(a) || isIPv6(a) ? a : undefined
}

/** `::ffff:a.b.c.d` or `::ffff:XXXX:XXXX` → `a.b.c.d`; anything else → undefined. */
export function unmapIPv4 (addr: string): string | undefined {
  if (!isIPv6(addr)) return undefined
  const b = Buffer.alloc(16)
  writeIPv6(b, 0, addr.toLowerCase())
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return undefined
  if (b[10] !== 0xff || b[11] !== 0xff) return undefined
  return `${b[12] as number}.${b[13] as number}.${b[14] as number}.${b[15] as number}`
}

function writeIPv4 (buf: Buffer, off: number, a: string): void {
  let octet = 0
  let i = off
  for (let k = 0; k < a.length; k++) {
    const c = a.charCodeAt(k)
    if (c === 46) { buf[i++] = octet; octet = 0 } else octet = octet * 10 + (c - 48)
  }
  buf[i] = octet
}

/** 16 network-order bytes of a valid IPv6 literal (checked by isIPv6), `::` and a dotted tail included. */
function writeIPv6 (buf: Buffer, off: number, a: string): void {
  let s = a
  const dot = s.indexOf('.')
  if (dot !== -1) {
    // An embedded IPv4 tail is the last 32 bits: rewrite it as two hex groups.
    const colon = s.lastIndexOf(':')
    const v4 = Buffer.alloc(4)
    writeIPv4(v4, 0, s.slice(colon + 1))
    s = s.slice(0, colon + 1) + v4.readUInt16BE(0).toString(16) + ':' + v4.readUInt16BE(2).toString(16)
  }
  const dbl = s.indexOf('::')
  const head = dbl === -1 ? s : s.slice(0, dbl)
  const tail = dbl === -1 ? '' : s.slice(dbl + 2)
  const hg = head === '' ? [] : head.split(':')
  const tg = tail === '' ? [] : tail.split(':')
  buf.fill(0, off, off + 16)
  for (let i = 0; i < hg.length; i++) buf.writeUInt16BE(parseInt(hg[i] as string, 16), off + 2 * i)
  const tailStart = 8 - tg.length
  for (let i = 0; i < tg.length; i++) buf.writeUInt16BE(parseInt(tg[i] as string, 16), off + 2 * (tailStart + i))
}
