// computeRoutes' listener phases (issue #15): every served port claims a
// listener (its own IP's, the shared listen host's per port class, the
// Gateway ports), then each listener settles who owns which hostname. Also
// the listener order and the source-range narrowing that mergeTables shares.

import { parseIp } from './cidr.js'
import { claimantOf, nameClaimOrder, olderFirst } from './kube.js'
import type { KubeServicePort } from './kube.js'
import { type HostRoute, type ListenerSpec, type UpstreamSpec, listenerKey } from './types.js'
import { type Claim, type ListenerDraft, PORT_ERROR_SHADOWED, type Work, type WorkPort } from './work.js'

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

export interface DraftOptions {
  readonly useIp: boolean
  readonly useNames: boolean
  readonly listenHost: string
  readonly httpPort: number
  readonly httpsPort: number
}

type PortClass = 'https' | 'http' | 'other'

/** appProtocol first, then the port name (`https`, `https-admin`, Istio style), then 443/80. */
function classifyPort (p: KubeServicePort): PortClass {
  const ap = p.appProtocol?.toLowerCase()
  if (ap === 'https' || ap === 'tls') return 'https'
  if (ap === 'http') return 'http'
  const name = p.name?.toLowerCase() ?? ''
  const named = (x: string): boolean => name === x || name.startsWith(`${x}-`)
  if (named('https') || named('tls')) return 'https'
  if (named('http')) return 'http'
  if (p.port === 443) return 'https'
  if (p.port === 80) return 'http'
  return 'other'
}

/** Phase 1: every served port of every Service claims the listeners it is reached on. */
export function draftListeners (work: readonly Work[], o: DraftOptions): Map<string, ListenerDraft> {
  const drafts = new Map<string, ListenerDraft>()
  const draft = (host: string, port: number): ListenerDraft => {
    const k = listenerKey({ host, port })
    let d = drafts.get(k)
    if (d === undefined) { d = { host, port, claims: [] }; drafts.set(k, d) }
    return d
  }
  for (const w of work) {
    if (w.failed !== undefined) continue
    claimUdpPorts(w, drafts, o.useIp, o.useNames, o.listenHost)
    const served = w.ports.filter((p) => p.upstream !== undefined && p.protocol !== 'UDP')
    if (o.useIp && w.ip !== undefined) {
      for (const p of served) {
        const d = draft(w.ip, p.port)
        d.claims.push({ work: w, upstream: p.upstream as UpstreamSpec, servicePort: p.port, names: w.names, won: new Set() })
        p.listeners.push(listenerKey(d))
      }
    }
    if (o.useNames) {
      // The canonical port of a class (443, 80) goes first, so it is the one
      // that gets the shared listener when a Service has two of a kind.
      const order = [...served].sort((a, b) => rank(a) - rank(b))
      const mine = new Set<number>()
      for (const p of order) {
        const cls = classifyPort(p.spec)
        const shared = cls === 'https' ? o.httpsPort : cls === 'http' ? o.httpPort : p.port
        const port = !mine.has(shared) ? shared : !mine.has(p.port) ? p.port : undefined
        if (port === undefined) {
          if (!o.useIp || w.ip === undefined) {
            p.error = PORT_ERROR_SHADOWED
            p.message = `port ${p.port}: another port of this Service already uses listener ${o.listenHost}:${shared}`
          }
          continue
        }
        mine.add(port)
        const d = draft(o.listenHost, port)
        d.claims.push({ work: w, upstream: p.upstream as UpstreamSpec, servicePort: p.port, names: [...w.names], won: new Set() })
        p.listeners.push(listenerKey(d))
      }
      // Gateway names: HTTP listeners on the shared HTTP port, HTTPS/TLS on
      // the shared HTTPS port, to the Service port numbered like the listener.
      for (const g of w.gatewayPorts) {
        const p = served.find((x) => x.port === g.port)
        if (p === undefined) continue
        const d = draft(o.listenHost, g.scheme === 'http' ? o.httpPort : o.httpsPort)
        let c = d.claims.find((x) => x.work === w && x.upstream === p.upstream)
        if (c === undefined) {
          c = { work: w, upstream: p.upstream as UpstreamSpec, servicePort: p.port, names: [], won: new Set() }
          d.claims.push(c)
          if (!p.listeners.includes(listenerKey(d))) p.listeners.push(listenerKey(d))
        }
        for (const n of g.names) if (!c.names.includes(n)) c.names.push(n)
      }
    }
  }

  return drafts
}

/**
 * Phase 2, per listener: hostname conflicts (a Service's own generated name
 * wins, then the older Service, then namespace/name), then the ListenerSpec.
 */
export function resolveListeners (drafts: ReadonlyMap<string, ListenerDraft>, listenHost: string): ListenerSpec[] {
  const conflictSeen = new Set<string>()
  const listeners: ListenerSpec[] = []
  for (const d of drafts.values()) {
    if (d.udp !== undefined) { listeners.push(udpListenerOf(d)); continue }
    const claims = d.claims.sort((a, b) => olderFirst(a.work.svc, b.work.svc))
    if (claims.length === 1) {
      const c = claims[0] as Claim
      // Alone on its port: plain L4, no peek, so server-speaks-first
      // protocols (SMTP, MySQL) do not wait for a client hello.
      for (const n of c.names) {
        c.won.add(n)
        if (d.host === listenHost) c.work.wonNames.add(n)
      }
      listeners.push({
        host: d.host,
        port: d.port,
        routes: [],
        default: c.upstream,
        ...(c.work.sourceRanges !== undefined ? { sourceRanges: c.work.sourceRanges } : {}),
        owner: c.work.key,
      })
      continue
    }
    const owner = new Map<string, Claim>()
    for (const c of claims) {
      for (const n of c.names) {
        const cur = owner.get(n)
        if (cur === undefined) { owner.set(n, c); continue }
        if (cur.work === c.work) continue // two ports of one Service: the first keeps it
        if (nameClaimOrder(claimantOf(c.work.svc, c.work.hostname === n), claimantOf(cur.work.svc, cur.work.hostname === n)) < 0) {
          owner.set(n, c)
          noteConflict(cur.work, n, c.work.key, conflictSeen)
        } else {
          noteConflict(c.work, n, cur.work.key, conflictSeen)
        }
      }
    }
    const routes: HostRoute[] = []
    for (const c of claims) {
      const names = c.names.filter((n) => owner.get(n) === c).sort(cmp)
      if (names.length === 0) continue
      for (const n of names) {
        c.won.add(n)
        c.work.wonNames.add(n)
      }
      routes.push({
        names,
        upstream: c.upstream,
        ...(c.work.sourceRanges !== undefined ? { sourceRanges: c.work.sourceRanges } : {}),
      })
    }
    routes.sort((a, b) => cmp(a.upstream.id, b.upstream.id))
    // The listener-level filter may only narrow what every route allows.
    const union = narrowRanges(claims.map((c) => c.work.sourceRanges))
    listeners.push({
      host: d.host,
      port: d.port,
      routes,
      ...(union.length > 0 ? { sourceRanges: union } : {}),
      owner: [...new Set(claims.map((c) => c.work.key))].sort(cmp).join(','),
    })
  }
  return listeners
}

/** The listener-level filter may only narrow what every part allows: the union when every part has ranges, else none. */
export function narrowRanges (parts: ReadonlyArray<readonly string[] | undefined>): string[] {
  const allRanged = parts.every((r) => r !== undefined && r.length > 0)
  return allRanged ? [...new Set(parts.flatMap((r) => r ?? []))].sort(cmp) : []
}

/** By address (numerically, IPv4 before IPv6), then port; each host is parsed once. Sorts in place. */
export function sortListeners (listeners: ListenerSpec[]): ListenerSpec[] {
  const hostRank = new Map<string, bigint>()
  for (const l of listeners) {
    if (hostRank.has(l.host)) continue
    const p = parseIp(l.host)
    hostRank.set(l.host, p === null ? 0n : (BigInt(p.family) << 128n) | p.value)
  }
  listeners.sort((a, b) => {
    const ra = hostRank.get(a.host) ?? 0n
    const rb = hostRank.get(b.host) ?? 0n
    return ra !== rb ? (ra < rb ? -1 : 1) : a.port - b.port
  })
  return listeners
}

function udpDraftKey (host: string, port: number): string {
  return `${listenerKey({ host, port })}/udp`
}

function claimUdpPorts (w: Work, drafts: Map<string, ListenerDraft>, useIp: boolean, useNames: boolean, listenHost: string): void {
  const claim = (host: string, p: WorkPort): void => {
    const k = udpDraftKey(host, p.port)
    let d = drafts.get(k)
    if (d === undefined) { d = { host, port: p.port, claims: [], udp: [] }; drafts.set(k, d) }
    d.claims.push({ work: w, upstream: p.upstream as UpstreamSpec, servicePort: p.port, names: [], won: new Set() })
    ;(d.udp as WorkPort[]).push(p)
  }
  for (const p of w.ports) {
    if (p.protocol !== 'UDP' || p.upstream === undefined) continue
    if (useIp && w.ip !== undefined) claim(w.ip, p)
    if (useNames) claim(listenHost, p)
  }
}

/** A UDP draft's listener: the oldest claim serves it; a later Service's same port on the shared host gets an error instead. */
function udpListenerOf (d: ListenerDraft): ListenerSpec {
  const order = d.claims.map((c, i) => ({ c, p: (d.udp as WorkPort[])[i] as WorkPort })).sort((a, b) => olderFirst(a.c.work.svc, b.c.work.svc))
  const win = order[0] as { c: Claim, p: WorkPort }
  win.p.listeners.push(udpDraftKey(d.host, d.port))
  for (const lose of order.slice(1)) {
    // Only reachable on the shared listen host; the Service's own IP still serves it in ip+hostname mode.
    if (lose.c.work.ip !== undefined) continue
    lose.p.error = PORT_ERROR_SHADOWED
    lose.p.message = `port ${d.port}/UDP: ${win.c.work.key} already serves UDP ${d.port} on ${d.host}, and datagrams cannot be routed by name`
  }
  return {
    host: d.host,
    port: d.port,
    protocol: 'udp',
    routes: [],
    default: win.c.upstream,
    ...(win.c.work.sourceRanges !== undefined ? { sourceRanges: win.c.work.sourceRanges } : {}),
    owner: win.c.work.key,
  }
}

function rank (p: WorkPort): number {
  return p.port === 443 || p.port === 80 ? 0 : 1
}

function noteConflict (loser: Work, name: string, winner: string, seen: Set<string>): void {
  const k = `${loser.key} ${name}`
  if (seen.has(k)) return
  seen.add(k)
  loser.findings.push({
    kind: 'warning',
    reason: 'HostnameConflict',
    message: `hostname ${name} is already served by ${winner}; not routed to this Service`,
  })
}

