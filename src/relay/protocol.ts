// The relay wire format, version 2 (docs/relay-protocol.md). Pure: encoders
// and incremental decoders over Buffers, no sockets, no timers, no clocks.
//
// Two client messages; the relay answers only when asked, or on refusal:
//   AUTH = magic "KTRL" | version 2 | flags | timestamp (ms, 8) | nonce (16) | MAC (16)
//          MAC = HMAC-SHA256(token, magic..nonce), first 16 bytes. The token
//          never crosses the wire; the relay refuses a stale timestamp and a
//          nonce it has seen (replay). With ACK the relay answers OK (and its
//          data path); without it, nothing.
//   BIND = command | flags | family | address | port [| family | address | port]
//          followed at once by the client's bytes. With ANSWER the relay
//          answers OK once connected; without it, success is silent and a
//          refusal is a TCP reset, so nothing of the relay's ever reaches a
//          client as data.
// A dial costs no round trip: the host writes AUTH + BIND + the client's
// first bytes in one go (or BIND + bytes on a pooled, already ACKed AUTH).

import { createHmac, randomFillSync } from 'node:crypto'
import { isIP } from 'node:net'
import type { ErrorCode } from '../errors.js'

export const MAGIC = Buffer.from('KTRL', 'latin1')
export const VERSION = 2
export const TOKEN_MIN = 16 // 128 bits: the floor the design asks for
export const TOKEN_MAX = 64
export const NONCE_LEN = 16
export const MAC_LEN = 16
/** AUTH flag: answer OK (with the data path) once authenticated. */
export const AUTH_ACK = 0x01
const KNOWN_AUTH_FLAGS = AUTH_ACK
const SIGNED_LEN = MAGIC.length + 2 + 8 + NONCE_LEN
export const AUTH_LEN = SIGNED_LEN + MAC_LEN
export const CMD_CONNECT = 0x01
/** BIND command: a UDP flow, its datagrams framed over this connection (src/relay/udp-frame.ts). */
export const CMD_UDP = 0x02
export const FLAG_SOURCE = 0x01
export const FLAG_PROXY_V2 = 0x02
/** BIND flag: answer OK once the destination is connected, or the refusal's status (a v1-style round trip). */
export const FLAG_ANSWER = 0x04
const KNOWN_FLAGS = FLAG_SOURCE | FLAG_PROXY_V2 | FLAG_ANSWER
export const HELLO_MAX = AUTH_LEN
export const CONNECT_MAX = 3 + 16 + 2 + 1 + 16 + 2
/** version | status | info */
export const REPLY_LEN = 3
/** Reply info bit: the relay splices natively (else in JS). */
export const INFO_NATIVE = 0x01
/** Reply info bit: the relay carries UDP flows (BIND command CMD_UDP). Relays without it refuse that command. */
export const INFO_UDP = 0x02
/** BIND command: this connection carries many streams as frames (src/relay/mux-frame.ts); no address follows, only flags 0. */
export const CMD_MUX = 0x03
/** Reply info bit: the relay takes CMD_MUX. Relays without it refuse that command. */
export const INFO_MUX = 0x04
/**
 * Reply info bit: the relay's addon accepts connections and takes their AUTH
 * and a CONNECT BIND itself (kt_relay.c), so a pooled connection costs the
 * relay no JS. The host's `auto` transport weighs the pool against streams by it.
 */
export const INFO_LANE = 0x08
/**
 * Reply info bit: the relay's addon also serves multiplexed carriers
 * (kt_mux.c): a stream's frames cost the relay no JS. Against such a relay
 * streams beat pooled connections on everything but bulk, and `auto` moves to
 * them at a low rate of new connections (mux-client.ts AUTO_MUX_RATE_MUX_LANE).
 */
export const INFO_MUX_LANE = 0x10

export const Status = {
  OK: 0x00,
  AUTH: 0x01,
  HEADER: 0x02,
  DENIED: 0x03,
  UNREACHABLE: 0x04,
  TIMEOUT: 0x05,
  BUSY: 0x06,
  VERSION: 0x07,
  STALE: 0x08,
} as const
export type StatusCode = typeof Status[keyof typeof Status]

const STATUS_NAMES: Record<number, string> = {
  0: 'ok', 1: 'auth', 2: 'header', 3: 'denied', 4: 'unreachable', 5: 'timeout', 6: 'busy', 7: 'version', 8: 'stale',
}

export function statusName (s: number): string {
  return STATUS_NAMES[s] ?? `unknown(${s})`
}

/** The error code the client raises for a non-OK status. */
export function statusErrorCode (s: number): ErrorCode {
  switch (s) {
    case Status.AUTH: return 'KT_ERR_RELAY_AUTH'
    case Status.STALE: return 'KT_ERR_RELAY_AUTH'
    case Status.HEADER: return 'KT_ERR_RELAY_HEADER'
    case Status.DENIED: return 'KT_ERR_RELAY_DENIED'
    case Status.UNREACHABLE: return 'KT_ERR_RELAY_UNREACHABLE'
    case Status.TIMEOUT: return 'KT_ERR_CONNECT_TIMEOUT'
    case Status.BUSY: return 'KT_ERR_MAX_CONNECTIONS'
    default: return 'KT_ERR_RELAY_PROTOCOL'
  }
}

export function reply (status: StatusCode, info = 0): Buffer {
  return Buffer.from([VERSION, status, info])
}

export interface Address {
  readonly address: string
  readonly port: number
}

function mac (token: Buffer, signed: Buffer): Buffer {
  return createHmac('sha256', token).update(signed).digest().subarray(0, MAC_LEN)
}

export interface AuthOptions {
  readonly ack?: boolean
  /** ms since the epoch (default now). */
  readonly now?: number
  readonly nonce?: Buffer
}

// Nonces come from the CSPRNG in batches (one call per 256 AUTHs instead of
// one each); every 16 bytes are used once, then the batch is refilled.
const NONCE_BATCH = Buffer.alloc(NONCE_LEN * 256)
let nonceAt = NONCE_BATCH.length

function freshNonceInto (out: Buffer, at: number): void {
  if (nonceAt + NONCE_LEN > NONCE_BATCH.length) { randomFillSync(NONCE_BATCH); nonceAt = 0 }
  NONCE_BATCH.copy(out, at, nonceAt, nonceAt + NONCE_LEN)
  NONCE_BATCH.fill(0, nonceAt, nonceAt + NONCE_LEN)
  nonceAt += NONCE_LEN
}

export function encodeAuth (token: Buffer, o: AuthOptions = {}): Buffer {
  if (token.length < TOKEN_MIN || token.length > TOKEN_MAX) throw new RangeError(`relay token must be ${TOKEN_MIN}-${TOKEN_MAX} bytes`)
  if (o.nonce !== undefined && o.nonce.length !== NONCE_LEN) throw new RangeError(`nonce must be ${NONCE_LEN} bytes`)
  const out = Buffer.alloc(AUTH_LEN)
  MAGIC.copy(out, 0)
  out[4] = VERSION
  out[5] = o.ack === true ? AUTH_ACK : 0
  out.writeBigUInt64BE(BigInt(Math.floor(o.now ?? Date.now())), 6)
  if (o.nonce !== undefined) o.nonce.copy(out, 14)
  else freshNonceInto(out, 14)
  mac(token, out.subarray(0, SIGNED_LEN)).copy(out, SIGNED_LEN)
  return out
}

export interface Auth {
  readonly ack: boolean
  readonly timestamp: number
  readonly nonce: Buffer
  /** The signed part and the MAC the client sent, for verifyAuthMac. */
  readonly signed: Buffer
  readonly mac: Buffer
}

/** The MAC check alone, in constant time; the timestamp and nonce are the caller's (it owns the clock and the cache). */
export function verifyAuthMac (token: Buffer, a: Auth): boolean {
  const want = mac(token, a.signed)
  let diff = 0
  for (let i = 0; i < MAC_LEN; i++) diff |= (want[i] as number) ^ (a.mac[i] as number)
  return diff === 0
}

/** IP literal → 4 or 16 bytes; null when it is not an IP literal. */
export function ipToBytes (ip: string): Buffer | null {
  const fam = isIP(ip)
  if (fam === 4) {
    // Every dial encodes its destination: no array, no Buffer.from(array) (whose map checks deoptimized here).
    const out = Buffer.allocUnsafe(4)
    let at = 0
    let v = 0
    for (let i = 0; i < ip.length; i++) {
      const ch = ip.charCodeAt(i)
      if (ch === 46) { out[at++] = v; v = 0 } else v = v * 10 + ch - 48
    }
    out[at] = v
    return out
  }
  if (fam !== 6 || ip.includes('%')) return null
  let s = ip
  const tail = s.slice(s.lastIndexOf(':') + 1)
  if (tail.includes('.')) {
    const o = tail.split('.').map(Number)
    s = s.slice(0, s.length - tail.length) + (((o[0] ?? 0) << 8) | (o[1] ?? 0)).toString(16) + ':' + (((o[2] ?? 0) << 8) | (o[3] ?? 0)).toString(16)
  }
  const dbl = s.indexOf('::')
  const parts = (p: string): string[] => p === '' ? [] : p.split(':')
  let groups: string[]
  if (dbl >= 0) {
    const head = parts(s.slice(0, dbl))
    const rest = parts(s.slice(dbl + 2))
    groups = [...head, ...new Array<string>(8 - head.length - rest.length).fill('0'), ...rest]
  } else {
    groups = parts(s)
  }
  const out = Buffer.alloc(16)
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2))
  return out
}

/** 4 or 16 bytes → canonical text (dotted quad, or lowercase RFC 5952 §4 form). */
export function bytesToIp (b: Buffer): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`
  const g: number[] = []
  for (let i = 0; i < 16; i += 2) g.push(b.readUInt16BE(i))
  // RFC 5952 §4.2.3: compress the longest run of two or more zero groups, the first on a tie.
  let bestAt = -1
  let bestLen = 1
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && g[j] === 0) j++
    if (j - i > bestLen) { bestAt = i; bestLen = j - i }
    i = j
  }
  const hex = g.map((x) => x.toString(16))
  if (bestAt < 0) return hex.join(':')
  return hex.slice(0, bestAt).join(':') + '::' + hex.slice(bestAt + bestLen).join(':')
}

function encodeAddr (a: Address, what: string): Buffer {
  const b = ipToBytes(a.address)
  if (b === null) throw new RangeError(`${what} ${JSON.stringify(a.address)} is not an IP literal`)
  if (!Number.isInteger(a.port) || a.port < 0 || a.port > 65535) throw new RangeError(`${what} port ${a.port} is out of range`)
  const out = Buffer.alloc(1 + b.length + 2)
  out[0] = b.length === 4 ? 4 : 6
  b.copy(out, 1)
  out.writeUInt16BE(a.port, 1 + b.length)
  return out
}

export function encodeConnect (dst: Address, source?: Address, proxyV2 = false, answer = false, udp = false): Buffer {
  if (udp && proxyV2) throw new RangeError('a UDP flow carries no PROXY header')
  let flags = answer ? FLAG_ANSWER : 0
  const d = encodeAddr(dst, 'destination')
  const s = source !== undefined ? encodeAddr(source, 'source') : undefined
  if (s !== undefined) {
    flags |= FLAG_SOURCE
    if (proxyV2) flags |= FLAG_PROXY_V2
  }
  const out = Buffer.allocUnsafe(2 + d.length + (s?.length ?? 0))
  out[0] = udp ? CMD_UDP : CMD_CONNECT
  out[1] = flags
  d.copy(out, 2)
  s?.copy(out, 2 + d.length)
  return out
}

/** `need`: wait for more bytes. `bad`: refuse with this status. */
export type Parse<T> =
  | { readonly kind: 'need' }
  | { readonly kind: 'bad', readonly status: StatusCode, readonly why: string }
  | { readonly kind: 'ok', readonly value: T, readonly used: number }

const NEED = { kind: 'need' } as const

function bad (status: StatusCode, why: string): { kind: 'bad', status: StatusCode, why: string } {
  return { kind: 'bad', status, why }
}

/**
 * Decode an AUTH from the bytes received so far. Each byte is checked as soon
 * as it arrives, so garbage (a stray HTTP request, a TLS hello) is refused on
 * its first bytes instead of waiting for the deadline, and a version-1 HELLO
 * (an older host) gets VERSION.
 */
export function parseAuth (buf: Buffer): Parse<Auth> {
  const n = Math.min(buf.length, MAGIC.length)
  for (let i = 0; i < n; i++) if (buf[i] !== MAGIC[i]) return bad(Status.HEADER, 'bad magic')
  if (buf.length <= MAGIC.length) return NEED
  if (buf[MAGIC.length] !== VERSION) return bad(Status.VERSION, `unsupported version ${buf[MAGIC.length]}`)
  if (buf.length <= MAGIC.length + 1) return NEED
  const flags = buf[MAGIC.length + 1] as number
  if ((flags & ~KNOWN_AUTH_FLAGS) !== 0) return bad(Status.HEADER, `unknown AUTH flags 0x${flags.toString(16)}`)
  if (buf.length < AUTH_LEN) return NEED
  const ts = buf.readBigUInt64BE(6)
  return {
    kind: 'ok',
    value: {
      ack: (flags & AUTH_ACK) !== 0,
      timestamp: ts > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(ts),
      nonce: buf.subarray(14, 14 + NONCE_LEN),
      signed: buf.subarray(0, SIGNED_LEN),
      mac: buf.subarray(SIGNED_LEN, AUTH_LEN),
    },
    used: AUTH_LEN,
  }
}

export interface ConnectRequest {
  readonly destination: Address
  readonly source?: Address
  readonly proxyV2: boolean
  /** The client waits for an answer (FLAG_ANSWER); otherwise success is silent and a refusal resets. */
  readonly answer: boolean
  /** CMD_UDP: the bytes after the BIND are framed datagrams for one UDP flow. */
  readonly udp: boolean
}

function parseAddr (buf: Buffer, at: number): Parse<Address> {
  if (buf.length <= at) return NEED
  const fam = buf[at]
  if (fam !== 4 && fam !== 6) return bad(Status.HEADER, `unknown address family ${fam}`)
  const alen = fam === 4 ? 4 : 16
  const end = at + 1 + alen + 2
  if (buf.length < end) return NEED
  const address = bytesToIp(buf.subarray(at + 1, at + 1 + alen))
  const port = buf.readUInt16BE(at + 1 + alen)
  return { kind: 'ok', value: { address, port }, used: end - at }
}

export function parseConnect (buf: Buffer): Parse<ConnectRequest> {
  if (buf.length === 0) return NEED
  if (buf[0] !== CMD_CONNECT && buf[0] !== CMD_UDP) return bad(Status.HEADER, `unknown command ${buf[0]}`)
  const udp = buf[0] === CMD_UDP
  if (buf.length < 2) return NEED
  const flags = buf[1] as number
  if ((flags & ~KNOWN_FLAGS) !== 0) return bad(Status.HEADER, `unknown flags 0x${flags.toString(16)}`)
  if ((flags & FLAG_PROXY_V2) !== 0 && (flags & FLAG_SOURCE) === 0) return bad(Status.HEADER, 'PROXY v2 asked without a source')
  if ((flags & FLAG_PROXY_V2) !== 0 && udp) return bad(Status.HEADER, 'PROXY v2 asked for a UDP flow')
  const dst = parseAddr(buf, 2)
  if (dst.kind !== 'ok') return dst
  let used = 2 + dst.used
  if (dst.value.port === 0) return bad(Status.HEADER, 'destination port 0')
  const answer = (flags & FLAG_ANSWER) !== 0
  if ((flags & FLAG_SOURCE) === 0) return { kind: 'ok', value: { destination: dst.value, proxyV2: false, answer, udp }, used }
  const src = parseAddr(buf, used)
  if (src.kind !== 'ok') return src
  used += src.used
  return { kind: 'ok', value: { destination: dst.value, source: src.value, proxyV2: (flags & FLAG_PROXY_V2) !== 0, answer, udp }, used }
}

const PROXY_V2_SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])

/** The mapped form `::ffff:a.b.c.d` of an IPv4 address, as 16 bytes. */
function mapped (b: Buffer): Buffer {
  if (b.length === 16) return b
  const out = Buffer.alloc(16)
  out[10] = 0xff
  out[11] = 0xff
  b.copy(out, 12)
  return out
}

/**
 * A PROXY protocol v2 header (haproxy proxy-protocol.txt §2.2): PROXY command,
 * STREAM transport; mixed families are sent as IPv6 with the IPv4 one mapped.
 */
export function proxyV2Header (src: Address, dst: Address): Buffer {
  let s = ipToBytes(src.address) as Buffer
  let d = ipToBytes(dst.address) as Buffer
  if (s.length !== d.length) { s = mapped(s); d = mapped(d) }
  const v6 = s.length === 16
  const body = Buffer.alloc(v6 ? 36 : 12)
  s.copy(body, 0)
  d.copy(body, s.length)
  body.writeUInt16BE(src.port, s.length * 2)
  body.writeUInt16BE(dst.port, s.length * 2 + 2)
  const head = Buffer.alloc(16)
  PROXY_V2_SIG.copy(head, 0)
  head[12] = 0x21 // version 2, PROXY
  head[13] = v6 ? 0x21 : 0x11 // AF_INET6 or AF_INET, STREAM
  head.writeUInt16BE(body.length, 14)
  return Buffer.concat([head, body])
}
