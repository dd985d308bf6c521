// Validation of raw user input. Pure: no I/O. Every failure is an
// InvalidArgumentError with a stable code, which the CLI prints on one line.

import { isIP } from 'node:net'
import { InvalidArgumentError } from '../errors.js'
import { normalizeHostname } from '../routing/hostmatch.js'
import { isUnspecifiedAddress, type Endpoint } from '../routing/types.js'

// Spellings that are not IP literals; every IP spelling of 0.0.0.0 or :: is isUnspecifiedAddress.
const WILDCARDS = new Set(['[::]', '*', ''])

export interface ParseHostPortOptions {
  /** Allow 0.0.0.0 or ::; only when the user asked for it explicitly. */
  allowWildcard?: boolean
  /** Allow a hostname (e.g. `localhost`) instead of an IP literal. */
  allowHostname?: boolean
  /** Allow port 0 (ephemeral). */
  allowPortZero?: boolean
  /** The option name, for the message. */
  what?: string
}

const HOSTNAME_RE = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i

export function parsePort (raw: string, what = 'port', allowZero = false): number {
  if (!/^\d{1,5}$/.test(raw)) throw new InvalidArgumentError('KT_ERR_INVALID_ADDRESS', `${what}: port ${JSON.stringify(raw)} is not a number in 1-65535`)
  const n = Number(raw)
  if (n > 65535 || (n === 0 && !allowZero)) throw new InvalidArgumentError('KT_ERR_INVALID_ADDRESS', `${what}: port ${n} is out of range 1-65535`)
  return n
}

/** Parse `HOST:PORT`, `[V6]:PORT`. The host must be an IP literal unless allowHostname. */
export function parseHostPort (raw: string, opts: ParseHostPortOptions = {}): Endpoint {
  const what = opts.what ?? 'address'
  const s = raw.trim()
  let host: string
  let portRaw: string
  if (s.startsWith('[')) {
    const end = s.indexOf(']')
    if (end < 0 || s[end + 1] !== ':') throw new InvalidArgumentError('KT_ERR_INVALID_ADDRESS', `${what}: ${JSON.stringify(raw)} is not [IPV6]:PORT`)
    host = s.slice(1, end)
    portRaw = s.slice(end + 2)
    if (isIP(host) !== 6) throw new InvalidArgumentError('KT_ERR_INVALID_ADDRESS', `${what}: ${JSON.stringify(host)} is not an IPv6 address`)
  } else {
    const i = s.lastIndexOf(':')
    if (i < 0) throw new InvalidArgumentError('KT_ERR_INVALID_ADDRESS', `${what}: ${JSON.stringify(raw)} is not HOST:PORT`)
    host = s.slice(0, i)
    portRaw = s.slice(i + 1)
    if (host.includes(':')) throw new InvalidArgumentError('KT_ERR_INVALID_ADDRESS', `${what}: write IPv6 addresses as [ADDR]:PORT, got ${JSON.stringify(raw)}`)
  }
  if (WILDCARDS.has(host) || /^0+(\.0+){3}$/.test(host) || isUnspecifiedAddress(host)) {
    if (opts.allowWildcard !== true) {
      throw new InvalidArgumentError('KT_ERR_WILDCARD_BIND', `${what}: refusing wildcard address ${JSON.stringify(host || '*')}; bind a specific address such as 127.0.0.1 (pass --allow-wildcard to override)`)
    }
    if (host === '' || host === '*') host = '0.0.0.0'
  } else if (isIP(host) === 0) {
    if (opts.allowHostname !== true || !HOSTNAME_RE.test(host)) {
      throw new InvalidArgumentError('KT_ERR_INVALID_ADDRESS', `${what}: ${JSON.stringify(host)} is not an IP address`)
    }
  }
  const port = parsePort(portRaw, what, opts.allowPortZero === true)
  return { host, port }
}

/**
 * Split a `--listen` value's protocol suffix, as in Docker's `-p 53:53/udp`:
 * `HOST:PORT/udp`, `HOST:PORT/tcp`, or `HOST:PORT` (tcp).
 */
export function splitProtocol (raw: string): { address: string, protocol: 'tcp' | 'udp' } {
  const s = raw.trim()
  const slash = s.lastIndexOf('/')
  if (slash < 0 || slash < s.lastIndexOf(']')) return { address: s, protocol: 'tcp' }
  const p = s.slice(slash + 1).toLowerCase()
  if (p !== 'tcp' && p !== 'udp') throw new InvalidArgumentError('KT_ERR_INVALID_PROTOCOL', `--listen: protocol ${JSON.stringify(s.slice(slash + 1))} in ${JSON.stringify(raw)} is not supported (tcp or udp)`)
  return { address: s.slice(0, slash), protocol: p }
}

/** Parse `HOST:PORT[,HOST:PORT...]`. */
export function parseEndpointList (raw: string, what = '--backend'): Endpoint[] {
  const parts = raw.split(',').map((p) => p.trim()).filter((p) => p !== '')
  if (parts.length === 0) throw new InvalidArgumentError('KT_ERR_INVALID_ADDRESS', `${what}: empty backend list`)
  return parts.map((p) => parseHostPort(p, { what, allowHostname: true, allowWildcard: false }))
}

/** Parse a positive integer option (milliseconds, counts). */
export function parseIntOption (raw: unknown, what: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const s = typeof raw === 'number' ? String(raw) : typeof raw === 'string' ? raw.trim() : ''
  if (!/^\d+$/.test(s)) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `${what}: ${JSON.stringify(raw)} is not a whole number`)
  const n = Number(s)
  if (n < min || n > max) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `${what}: ${n} is out of range ${min}-${max}`)
  return n
}

/** `--pool-size`: `auto` or a whole number 0..max. */
export function parsePoolSize (raw: unknown, max: number): number | 'auto' {
  if (typeof raw === 'string' && raw.trim().toLowerCase() === 'auto') return 'auto'
  const s = typeof raw === 'number' ? String(raw) : typeof raw === 'string' ? raw.trim() : ''
  if (!/^\d+$/.test(s)) throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `--pool-size: ${JSON.stringify(raw)} is not \`auto\` or a whole number`)
  return parseIntOption(s, '--pool-size', 0, max)
}

/** A route hostname: exact DNS name or `*.suffix`. Lowercased, one trailing dot dropped. */
export function parseRouteName (raw: string): string {
  const t = raw.trim()
  const wild = t.startsWith('*.')
  // The same normalisation the data plane applies to SNI and Host, so a
  // name accepted here always matches (an all-numeric last label is an IP).
  const body = normalizeHostname(wild ? t.slice(2) : t)
  if (body === undefined || body.includes('*')) {
    throw new InvalidArgumentError('KT_ERR_INVALID_ROUTE', `--route: ${JSON.stringify(raw)} is not a hostname or *.suffix`)
  }
  return wild ? `*.${body}` : body
}

/** Parse `NAME=HOST:PORT[,HOST:PORT]` (NAME may be `a|b` for several names). */
export function parseRouteArg (raw: string): { names: string[], endpoints: Endpoint[] } {
  const eq = raw.indexOf('=')
  if (eq <= 0) throw new InvalidArgumentError('KT_ERR_INVALID_ROUTE', `--route: ${JSON.stringify(raw)} is not NAME=HOST:PORT[,HOST:PORT...]`)
  const names = raw.slice(0, eq).split('|').map(parseRouteName)
  const endpoints = parseEndpointList(raw.slice(eq + 1), '--route')
  return { names, endpoints }
}
