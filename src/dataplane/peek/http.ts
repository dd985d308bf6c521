// HTTP/1.x peeking: validate the request line byte by byte as it arrives (so
// that non-HTTP bytes are refused at once, not after 16 KiB), find the end of
// the header block, then read the authority from the complete head.

import { normalizeHostname } from '../../routing/hostmatch.js'
import type { ChunkReader } from './reader.js'
import type { NameResult } from './types.js'

const CR = 0x0d
const LF = 0x0a
const SP = 0x20

// RFC 9110 §5.6.2 tchar: the bytes a method (a token) may hold.
const TCHAR = new Uint8Array(256)
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1

export function isTchar (byte: number): boolean {
  return TCHAR[byte] === 1
}

/** The longest registered method is 17 bytes (UPDATEREDIRECTREF); leave room for extensions. */
const MAX_METHOD = 32
/** RFC 9112 §2.2: ignore at least one empty line before the request line; we allow two. */
const MAX_LEADING_EOL = 4
const VERSION_PREFIX = [0x48, 0x54, 0x54, 0x50, 0x2f] // "HTTP/"

const S_LEAD = 0
const S_METHOD = 1
const S_TARGET = 2
const S_VERSION = 3
const S_VERSION_LF = 4
const S_HEADERS = 5

/**
 * NeedMore; Complete (the head is bytes [0, headEnd)); NotHttp (not an
 * HTTP/1 request line); H2Preface (`PRI * HTTP/2.0`, RFC 9113 §3.4); TooLarge.
 */
export const HttpStep = { NeedMore: 0, Complete: 1, NotHttp: 2, H2Preface: 3, TooLarge: 4 } as const
export type HttpStep = typeof HttpStep[keyof typeof HttpStep]

/**
 * Scans each pushed byte once: the request line byte by byte (so that
 * garbage is refused at once), the fields with indexOf per line. Keeps only
 * counters and a few flags, so a client sending one byte per write costs O(1)
 * per byte; the scan resumes where it stopped.
 */
export class HttpHeadScanner {
  /** End of the header block (just past the empty line) once Complete. */
  headEnd = -1
  private state = S_LEAD
  private count = 0
  private isPri = true
  private isStar = true
  private major = 0
  private minor = 0
  /** Bytes since the last LF (across chunks). */
  private lineBytes = 0

  /** True once a valid HTTP/1.x request line has been read. */
  get requestLineDone (): boolean { return this.state === S_HEADERS }

  step (r: ChunkReader, length: number, cap: number): HttpStep {
    const stop = Math.min(length, cap)
    while (r.pos < stop) {
      const c = r.chunk()
      const off = r.offset
      const end = Math.min(c.length, off + (stop - r.pos))
      const next = this.state === S_HEADERS ? this.scanFields(c, off, end) : this.scanRequestLine(c, off, end)
      r.skip(next - off)
      if (this.result !== HttpStep.NeedMore) {
        if (this.result === HttpStep.Complete) this.headEnd = r.pos
        return this.result
      }
    }
    return r.pos >= cap ? HttpStep.TooLarge : HttpStep.NeedMore
  }

  private result: HttpStep = HttpStep.NeedMore
  /** The last byte seen, for a line whose LF starts the next chunk. */
  private lastByte = 0

  /**
   * Find the empty line that ends the head (CRLF or bare LF, RFC 9112 §2.2)
   * with indexOf, one call per line. Returns the index after the consumed bytes.
   */
  private scanFields (c: Buffer, i: number, end: number): number {
    while (i < end) {
      const lf = c.indexOf(LF, i)
      if (lf < 0 || lf >= end) {
        this.lineBytes += end - i
        this.lastByte = c[end - 1] as number
        return end
      }
      const n = this.lineBytes + (lf - i)
      const prev = lf > i ? c[lf - 1] as number : this.lastByte
      i = lf + 1
      this.lineBytes = 0
      this.lastByte = LF
      if (n === 0 || (n === 1 && prev === CR)) {
        this.result = HttpStep.Complete
        return i
      }
    }
    return i
  }

  /** Check the request line byte by byte; stops after its LF or at a decision. */
  private scanRequestLine (c: Buffer, i: number, end: number): number {
    for (; i < end; i++) {
      const b = c[i] as number
      switch (this.state) {
        case S_LEAD:
          if (b === CR || b === LF) {
            if (++this.count > MAX_LEADING_EOL) return this.fail(i)
            break
          }
          if (TCHAR[b] !== 1) return this.fail(i)
          this.state = S_METHOD
          this.count = 1
          this.isPri = b === 0x50 // 'P'
          break
        case S_METHOD:
          if (b === SP) {
            this.isPri = this.isPri && this.count === 3
            this.state = S_TARGET
            this.count = 0
            break
          }
          if (TCHAR[b] !== 1 || ++this.count > MAX_METHOD) return this.fail(i)
          if (this.count === 2) this.isPri = this.isPri && b === 0x52 // 'R'
          else if (this.count === 3) this.isPri = this.isPri && b === 0x49 // 'I'
          break
        case S_TARGET:
          if (b === SP) {
            if (this.count === 0) return this.fail(i)
            this.isStar = this.isStar && this.count === 1
            this.state = S_VERSION
            this.count = 0
            break
          }
          // Any visible byte (obs-text included); controls and DEL end it.
          // A CR/LF here is HTTP/0.9 (`GET /`), which has no Host.
          if (b < 0x21 || b === 0x7f) return this.fail(i)
          if (this.count++ === 0) this.isStar = b === 0x2a // '*'
          break
        case S_VERSION: {
          // RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive.
          const k = this.count++
          if (k < 5) {
            if (b !== VERSION_PREFIX[k]) return this.fail(i)
          } else if (k === 5) {
            if (b < 0x30 || b > 0x39) return this.fail(i)
            this.major = b - 0x30
          } else if (k === 6) {
            if (b !== 0x2e) return this.fail(i)
          } else if (k === 7) {
            if (b < 0x30 || b > 0x39) return this.fail(i)
            this.minor = b - 0x30
          } else if (b === CR) {
            this.state = S_VERSION_LF
          } else if (b === LF) {
            this.result = this.endRequestLine()
            return i + 1
          } else {
            return this.fail(i)
          }
          break
        }
        case S_VERSION_LF:
          if (b !== LF) return this.fail(i)
          this.result = this.endRequestLine()
          return i + 1
      }
    }
    return i
  }

  private fail (i: number): number {
    this.result = HttpStep.NotHttp
    return i + 1
  }

  private endRequestLine (): HttpStep {
    if (this.major === 1) {
      this.state = S_HEADERS
      this.lineBytes = 0
      this.lastByte = LF
      return HttpStep.NeedMore
    }
    // RFC 9113 §3.4: the prior-knowledge preface starts `PRI * HTTP/2.0\r\n`.
    if (this.major === 2 && this.minor === 0 && this.isPri && this.isStar) return HttpStep.H2Preface
    return HttpStep.NotHttp
  }
}

const MALFORMED: NameResult = Object.freeze({ ok: false, reason: 'malformed' })
const ABSENT: NameResult = Object.freeze({ ok: false, reason: 'absent' })
const BAD_NAME: NameResult = Object.freeze({ ok: false, reason: 'bad-name' })

// RFC 3986 §3.1 scheme, then "//" authority up to the path, query or fragment.
const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/

/**
 * Read the routing name of a complete HTTP/1.x request head (request line,
 * header fields, empty line; anything after the empty line is ignored).
 * - The absolute-form target's authority wins over Host (RFC 9112 §3.2.2);
 *   when it is unusable the Host field is not consulted, so that the proxy
 *   and the backend cannot disagree on which name was meant.
 * - CONNECT's authority-form target names the destination (RFC 9112 §3.2.3).
 * - Otherwise exactly one Host field is needed; two, or a Host with
 *   whitespace before the colon or folded onto a second line, is a request
 *   that the backend must refuse with 400 (RFC 9112 §3.2, §5.1, §5.2), so
 *   it gets no name.
 * Never throws.
 */
export function parseHttpHead (head: Buffer): NameResult {
  const s = head.toString('latin1')
  const end = s.length
  let p = 0
  while (p < end && (s.charCodeAt(p) === CR || s.charCodeAt(p) === LF)) p++
  let eol = s.indexOf('\n', p)
  if (eol < 0) eol = end
  const lineEnd = eol > p && s.charCodeAt(eol - 1) === CR ? eol - 1 : eol
  const sp1 = s.indexOf(' ', p)
  const sp2 = sp1 < 0 ? -1 : s.indexOf(' ', sp1 + 1)
  if (sp1 <= p || sp2 <= sp1 + 1 || sp2 >= lineEnd) return MALFORMED
  const method = s.slice(p, sp1)
  const target = s.slice(sp1 + 1, sp2)

  let host: string | undefined
  let hostCount = 0
  let hostBad = false
  let prevWasHost = false
  p = eol + 1
  while (p < end) {
    let e = s.indexOf('\n', p)
    if (e < 0) e = end
    const le = e > p && s.charCodeAt(e - 1) === CR ? e - 1 : e
    if (le === p) break // the empty line
    const c0 = s.charCodeAt(p)
    if (c0 === SP || c0 === 0x09) {
      // obs-fold: a continuation of the previous field (RFC 9112 §5.2).
      if (prevWasHost) hostBad = true
      p = e + 1
      continue
    }
    prevWasHost = false
    // The colon is looked for within this line only: a search to the end of
    // the head would make colon-less lines cost O(lines x head), quadratic
    // in a hostile 16 KiB head (the same fix as kt_peek.c http_head).
    let colon = -1
    for (let i = p; i < le; i++) if (s.charCodeAt(i) === 0x3a) { colon = i; break }
    if (colon > p) {
      const nameLen = colon - p
      if (nameLen >= 4 && (s.charCodeAt(p) | 0x20) === 0x68 && s.slice(p, p + 4).toLowerCase() === 'host') {
        if (nameLen === 4) {
          hostCount++
          host = trimOws(s.slice(colon + 1, le))
          prevWasHost = true
        } else if (/^[ \t]+$/.test(s.slice(p + 4, colon))) {
          hostBad = true // `Host :` (RFC 9112 §5.1)
        }
      }
    }
    p = e + 1
  }

  if (method === 'CONNECT') return authorityName(target)
  if (target.charCodeAt(0) !== 0x2f && target !== '*') {
    const m = ABSOLUTE_FORM.exec(target)
    if (m === null) return BAD_NAME
    const authority = m[1] as string
    // RFC 9110 §4.2.4: userinfo in an http(s) URI is to be treated as an error.
    if (authority.includes('@')) return BAD_NAME
    return authorityName(authority)
  }
  if (hostBad || hostCount > 1) return MALFORMED
  if (host === undefined) return ABSENT // e.g. HTTP/1.0 without Host
  return authorityName(host)
}

function trimOws (v: string): string {
  let a = 0
  let b = v.length
  while (a < b && (v.charCodeAt(a) === SP || v.charCodeAt(a) === 0x09)) a++
  while (b > a && (v.charCodeAt(b - 1) === SP || v.charCodeAt(b - 1) === 0x09)) b--
  return a === 0 && b === v.length ? v : v.slice(a, b)
}

/** uri-host [":" port] (RFC 9110 §7.2). IP literals give no name: routes are names. */
export function authorityName (a: string): NameResult {
  if (a === '') return ABSENT // RFC 9110 §7.2: empty Host when the URI has no authority
  if (a.charCodeAt(0) === 0x5b) return BAD_NAME // `[v6]` or `[v6]:port`
  const colon = a.indexOf(':')
  let hostPart = a
  if (colon >= 0) {
    const port = a.slice(colon + 1)
    if (!/^\d{0,5}$/.test(port)) return BAD_NAME
    hostPart = a.slice(0, colon)
  }
  const name = normalizeHostname(hostPart)
  return name === undefined ? BAD_NAME : { ok: true, name }
}
