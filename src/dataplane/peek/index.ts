// Peek at a client's first flight to route a shared listener by name: the
// TLS ClientHello's server_name, or the HTTP/1.x authority. The peeker only
// looks; every byte pushed is kept, in order, for the data plane to write
// upstream first. Limits in bytes live here; the time limit (--peek-timeout)
// is the data plane's.

import { InvalidArgumentError } from '../../errors.js'
import { HttpHeadScanner, HttpStep, isTchar, parseHttpHead } from './http.js'
import { ChunkReader, streamSlice } from './reader.js'
import { TLS_RECORD_HANDSHAKE, TlsHelloAssembler, TlsStep, looksLikeSslv2Hello, parseClientHelloBody } from './tls.js'
import type { NameResult, NoNameReason, PeekOutcome } from './types.js'

export type { NameResult, NoNameReason, PeekOutcome } from './types.js'
export { parseClientHelloBody } from './tls.js'
export { parseHttpHead } from './http.js'

/**
 * The largest ClientHello body (handshake length field) and the largest HTTP
 * head (request line + fields + empty line) that route. Envoy's tls_inspector
 * uses the same 16,384; post-quantum hellos are ~1.7 KB.
 */
export const PEEK_MAX_MESSAGE_BYTES = 16_384
/**
 * How many TLS records a hello may be cut into within the raw-byte cap. Each
 * record adds a 5-byte header (RFC 8446 §5.1). 256 records leave room for a
 * full 16 KiB hello in the smallest fragments RFC 6066 §4 lets a client ask
 * for (512 bytes, 33 records), many times over.
 */
export const PEEK_MAX_TLS_RECORDS = 256

/**
 * Raw bytes read before giving up on TLS: the largest handshake message
 * (4-byte header + maxBytes) plus PEEK_MAX_TLS_RECORDS record headers.
 * With the defaults: 16,384 + 4 + 256 × 5 = 17,668 bytes.
 */
export function tlsRawCap (maxBytes = PEEK_MAX_MESSAGE_BYTES): number {
  return maxBytes + 4 + PEEK_MAX_TLS_RECORDS * 5
}

const NEED_MORE: PeekOutcome = Object.freeze({ kind: 'need-more' })
const NOT_TLS_OR_HTTP: PeekOutcome = Object.freeze({ kind: 'not-tls-or-http' })
const TOO_LARGE: PeekOutcome = Object.freeze({ kind: 'too-large' })

const NO_NAME: Record<'tls' | 'http', Record<NoNameReason, PeekOutcome>> = {
  tls: noNames('tls'),
  http: noNames('http'),
}

function noNames (protocol: 'tls' | 'http'): Record<NoNameReason, PeekOutcome> {
  const o = (reason: NoNameReason): PeekOutcome => Object.freeze({ kind: 'no-name', protocol, reason })
  return { absent: o('absent'), 'bad-name': o('bad-name'), malformed: o('malformed'), sslv2: o('sslv2'), h2c: o('h2c') }
}

const M_SNIFF = 0
const M_TLS = 1
const M_HTTP = 2
const M_DONE = 3

export interface FirstFlightPeekerOptions {
  /** Largest ClientHello body / HTTP head that routes (default 16,384). */
  maxBytes?: number
}

export class FirstFlightPeeker {
  /** Every byte pushed so far, in order; the data plane writes these upstream first. */
  readonly chunks: Buffer[] = []
  private total = 0
  private mode = M_SNIFF
  private result: PeekOutcome = NEED_MORE
  private proto: 'tls' | 'http' | undefined
  private readonly maxBytes: number
  private readonly reader: ChunkReader
  private tls: TlsHelloAssembler | undefined
  private http: HttpHeadScanner | undefined
  private faults = 0

  constructor (opts: FirstFlightPeekerOptions = {}) {
    const max = opts.maxBytes ?? PEEK_MAX_MESSAGE_BYTES
    if (!Number.isInteger(max) || max < 64 || max > 1 << 20) {
      throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `peek maxBytes: ${String(max)} is not a whole number in 64-1048576`)
    }
    this.maxBytes = max
    this.reader = new ChunkReader(this.chunks)
  }

  /** Total bytes pushed. */
  get length (): number { return this.total }

  /** The outcome so far (the last value push returned). */
  get outcome (): PeekOutcome { return this.result }

  /** The protocol recognised so far, if any. */
  get protocol (): 'tls' | 'http' | undefined { return this.proto }

  /**
   * Internal parser errors that were contained (the outcome became the
   * default route). Always 0 unless there is a bug; the fuzzer checks it.
   */
  get parserFaults (): number { return this.faults }

  /** Every byte pushed so far as one Buffer (a view when there is one chunk). */
  bytes (): Buffer {
    return streamSlice(this.chunks, 0, this.total)
  }

  /**
   * Feed the next chunk as read from the socket and get the outcome so far.
   * Once the outcome is final, later chunks are only kept. Never throws.
   */
  push (chunk: Buffer): PeekOutcome {
    if (chunk.length === 0) return this.result
    this.chunks.push(chunk)
    this.total += chunk.length
    if (this.mode === M_DONE) return this.result
    try {
      return this.advance()
    } catch {
      // A bug must not take the connection down, let alone the process: fall
      // back to the default route and count it.
      this.faults++
      return this.finish(this.proto === undefined ? NOT_TLS_OR_HTTP : NO_NAME[this.proto].malformed)
    }
  }

  private finish (o: PeekOutcome): PeekOutcome {
    this.mode = M_DONE
    this.result = o
    this.tls = undefined
    this.http = undefined
    return o
  }

  private advance (): PeekOutcome {
    if (this.mode === M_SNIFF) {
      const s = this.sniff()
      if (s !== undefined) return s
    }
    if (this.mode === M_TLS) return this.advanceTls(this.tls as TlsHelloAssembler)
    if (this.mode === M_HTTP) return this.advanceHttp(this.http as HttpHeadScanner)
    return this.result
  }

  /** Decide TLS, SSLv2, HTTP or neither from the first bytes (at most five). */
  private sniff (): PeekOutcome | undefined {
    const c0 = this.chunks[0] as Buffer
    const b0 = c0[0] as number
    if (b0 === TLS_RECORD_HANDSHAKE) {
      if (this.total < 2) return NEED_MORE
      if (this.byteAt(1) !== 0x03) return this.finish(NOT_TLS_OR_HTTP)
      this.mode = M_TLS
      this.proto = 'tls'
      this.tls = new TlsHelloAssembler(this.maxBytes)
      return undefined
    }
    if ((b0 & 0x80) !== 0) {
      const v2 = looksLikeSslv2Hello(b0, this.byteAt(1), this.byteAt(2), this.byteAt(3), this.byteAt(4))
      if (v2 === undefined) return NEED_MORE
      if (!v2) return this.finish(NOT_TLS_OR_HTTP)
      this.proto = 'tls'
      return this.finish(NO_NAME.tls.sslv2)
    }
    if (isTchar(b0) || b0 === 0x0d || b0 === 0x0a) {
      this.mode = M_HTTP
      this.http = new HttpHeadScanner()
      return undefined
    }
    return this.finish(NOT_TLS_OR_HTTP)
  }

  private advanceTls (a: TlsHelloAssembler): PeekOutcome {
    const cap = tlsRawCap(this.maxBytes)
    const step = a.step(this.reader, Math.min(this.total, cap), this.chunks)
    switch (step) {
      case TlsStep.Complete: {
        const r = parseClientHelloBody(a.body as Buffer)
        return this.finish(r.ok ? { kind: 'sni', name: r.name } : NO_NAME.tls[r.reason])
      }
      case TlsStep.Malformed:
        return this.finish(NO_NAME.tls.malformed)
      case TlsStep.TooLarge:
        return this.finish(TOO_LARGE)
    }
    return this.total >= cap ? this.finish(TOO_LARGE) : NEED_MORE
  }

  private advanceHttp (h: HttpHeadScanner): PeekOutcome {
    const step = h.step(this.reader, this.total, this.maxBytes)
    if (h.requestLineDone) this.proto = 'http'
    switch (step) {
      case HttpStep.Complete: {
        this.proto = 'http'
        const r: NameResult = parseHttpHead(streamSlice(this.chunks, 0, h.headEnd))
        return this.finish(r.ok ? { kind: 'host', name: r.name } : NO_NAME.http[r.reason])
      }
      case HttpStep.H2Preface:
        this.proto = 'http'
        return this.finish(NO_NAME.http.h2c)
      case HttpStep.NotHttp:
        return this.finish(NOT_TLS_OR_HTTP)
      case HttpStep.TooLarge:
        return this.finish(TOO_LARGE)
    }
    return NEED_MORE
  }

  /** Byte i of the stream (only used for the first few bytes), or undefined. */
  private byteAt (i: number): number | undefined {
    if (i >= this.total) return undefined
    for (const c of this.chunks) {
      if (i < c.length) return c[i]
      i -= c.length
    }
    return undefined
  }
}
