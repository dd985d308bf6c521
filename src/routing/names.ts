// Hostname normalisation for routes built from Kubernetes objects
// (annotations, Ingress rules). Pure. Invalid names give null, never throw:
// one bad annotation must not take down the routes of every other Service.

import { isIP } from 'node:net'

// RFC 1123 §2.1 labels, 1-63 characters, at most 253 in all.
const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?'
const HOSTNAME_RE = new RegExp(`^(?=.{1,253}$)${LABEL}(?:\\.${LABEL})*$`)

/**
 * Lowercase, drop one trailing dot, allow a leading `*.` wildcard (nowhere
 * else). IP literals are refused: TLS SNI never carries one (RFC 6066 §3),
 * so such a route could never match.
 */
export function normalizeHostname (raw: string): string | null {
  if (typeof raw !== 'string') return null
  let n = raw.trim().toLowerCase()
  if (n.endsWith('.')) n = n.slice(0, -1)
  const wildcard = n.startsWith('*.')
  const body = wildcard ? n.slice(2) : n
  if (!HOSTNAME_RE.test(body) || isIP(body) !== 0) return null
  if (wildcard && n.length > 253) return null
  return n
}

/** `a,b, c` → normalised names and the entries that were refused. */
export function parseHostnameList (raw: string | undefined): { names: string[], invalid: string[] } {
  const names: string[] = []
  const invalid: string[] = []
  if (raw === undefined) return { names, invalid }
  for (const part of raw.split(',')) {
    const p = part.trim()
    if (p === '') continue
    const n = normalizeHostname(p)
    if (n === null) invalid.push(p)
    else if (!names.includes(n)) names.push(n)
  }
  return { names, invalid }
}
