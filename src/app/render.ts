// What people see: the Services table (TTY and `status`), the live TTY view
// of `up` (progress lines above a table redrawn in place), and the plain
// lines a script reads when stdout is not a terminal.

import { Writable } from 'node:stream'
import { formatGateways } from './gateways.js'
import type { RelayPoolStatus, ServiceStatus, UpStatus } from './status.js'
import type { UpEvent } from './up.js'

function fmtBytes (n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = n / 1024
  let i = 0
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i] as string}`
}

function serviceName (s: ServiceStatus, multiCluster: boolean): string {
  return multiCluster ? `${s.cluster}/${s.namespace}/${s.name}` : `${s.namespace}/${s.name}`
}

function clip (text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, Math.max(0, width - 1))}…`
}

/** Rows of the Services table; each cell may hold several lines (one per address/name). */
export function formatTable (st: UpStatus, width = 120): string[] {
  const multi = new Set(st.services.map((s) => s.cluster)).size > 1
  const header = ['SERVICE', 'ADDRESS', 'HOSTNAME', 'BACKENDS', 'HEALTH', 'CONNS']
  // One block per Service, one group of lines per Service port: each address
  // and name stands beside the backends of its own port, never another's.
  const rows: string[][][] = st.services.map((s) => {
    const conns = s.backends.reduce((a, b) => a + b.active, 0)
    const health = new Map(s.backends.map((b) => [b.address, b.cause !== undefined ? `${b.health} (${b.cause})` : b.health]))
    const cells: string[][] = [[serviceName(s, multi)], [], [], [], [], [String(conns)]]
    const groups = s.byPort ?? []
    for (const g of groups) {
      const addr = [...g.addresses, ...g.unbound.map((u) => `${u} (not bound)`)]
      const names = [...g.hostnames]
      const backs = g.backends.length > 0 ? [...g.backends] : ['(no Ready node)']
      const height = Math.max(addr.length, names.length, backs.length, 1)
      const pad = (c: string[], at: number): void => { while (c.length < at) c.push('') }
      const top = Math.max(...cells.slice(1, 5).map((c) => c.length))
      for (const c of cells.slice(1, 5)) pad(c, top)
      cells[1]?.push(...(addr.length > 0 ? addr : ['-']))
      cells[2]?.push(...(names.length > 0 ? names : ['-']))
      cells[3]?.push(...backs)
      cells[4]?.push(...backs.map((b) => health.get(b) ?? '-'))
      for (const c of cells.slice(1, 5)) pad(c, top + height)
    }
    if (groups.length === 0) {
      cells[1] = ['-']; cells[2] = ['-']; cells[3] = ['(no Ready node)']; cells[4] = ['-']
    }
    return cells
  })
  const widths = header.map((h, i) => Math.max(h.length, ...rows.flatMap((r) => (r[i] ?? []).map((c) => c.length))))
  // Shrink the widest columns first when the terminal is narrow.
  const total = (): number => widths.reduce((a, b) => a + b + 2, 0)
  while (total() > width) {
    const i = widths.indexOf(Math.max(...widths))
    if ((widths[i] as number) <= 12) break
    widths[i] = (widths[i] as number) - 1
  }
  const line = (cells: string[]): string => cells.map((c, i) => clip(c, widths[i] as number).padEnd(widths[i] as number)).join('  ').trimEnd()
  const out = [line(header)]
  for (const r of rows) {
    const height = Math.max(...r.map((c) => c.length))
    for (let k = 0; k < height; k++) out.push(line(r.map((c) => c[k] ?? '')))
  }
  if (st.services.length === 0) out.push('(no LoadBalancer Service yet: `kubectl expose deployment NAME --type=LoadBalancer --port=80`)')
  return out
}

/** The relay's data path and its warm pool: `data path native (native accept), pool 4 idle (target 4), hit rate 87% (1234 of 1418)`. */
export function relayDetail (p: RelayPoolStatus | undefined): string {
  if (p === undefined) return ''
  const dials = p.hits + p.misses
  const rate = dials === 0 ? 'no dials yet' : `hit rate ${Math.round((p.hitRate ?? p.hits / dials) * 100)}% (${p.hits} of ${dials})`
  const target = p.target !== undefined ? ` (target ${p.target})` : ''
  const err = p.lastError !== undefined ? `; last pool error ${p.lastError}` : ''
  const accept = p.acceptPath !== undefined ? ` (${p.acceptPath} accept)` : ''
  return `, data path ${p.dataPath ?? 'unknown'}${accept}${transportDetail(p)}, pool ${p.idle} idle${target}, ${rate}${err}`
}

/** `, transport mux (2 connections, …)`, `, transport auto: pool (…)`; nothing for the pool alone. */
function transportDetail (p: RelayPoolStatus): string {
  const m = p.mux
  let carriers = ''
  if (m !== undefined) carriers = m.state === 'live' ? `${m.carriers} connections, ${m.streams} streams open, ${m.opened} opened` : `mux ${m.state}${m.lastError !== undefined ? `: ${m.lastError}` : ''}`
  if (p.auto === true) {
    const n = p.destinationsOnMux ?? 0
    const now = n > 0 ? `mux for ${n} destination${n === 1 ? '' : 's'}, pool for the rest` : 'pool'
    return `, transport auto: ${now} (mux from ${p.autoMuxRate ?? 20} new connections/s to a destination${carriers !== '' ? `; ${carriers}` : ''})`
  }
  if (m === undefined) return ''
  return `, transport ${m.state === 'live' ? 'mux' : 'pool'} (${carriers})`
}

/** `status` without --json. */
export function formatStatus (st: UpStatus, width = 120): string[] {
  const out: string[] = []
  out.push(`kind-tunnel up, pid ${st.pid}, since ${st.startedAt}, --address ${st.address}${st.ready ? '' : ' (starting)'}`)
  for (const c of st.clusters) {
    const relay = c.relay !== undefined ? `, relay ${c.relay.name} on 127.0.0.1:${c.relay.port}${relayDetail(c.relay.pool)}` : ''
    out.push(`cluster ${c.name}: ${c.mode}${relay}${c.synced ? '' : ' (not synced)'}${c.error !== undefined ? `; error ${c.error}` : ''}`)
  }
  out.push('')
  out.push(...formatTable(st, width))
  out.push('')
  const t = st.totals
  out.push(`connections: ${t.active} active, ${t.accepted} accepted; bytes: ${fmtBytes(t.bytesIn)} in, ${fmtBytes(t.bytesOut)} out; pool: ${t.poolHits} hits, ${t.poolMisses} misses`)
  out.push(...formatListeners(st))
  out.push(...formatGateways(st))
  for (const c of st.conflicts) out.push(`conflict: ${c.message}`)
  return out
}

/**
 * One line per listener: which path carries it (`native`: the addon's accept
 * lane; `js`: JS accepts and connects) and, for `js`, why, so a slow
 * listener can be explained without reading the source.
 */
export function formatListeners (st: Pick<UpStatus, 'listeners'>): string[] {
  const ls = [...st.listeners].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  if (ls.length === 0) return []
  const w = Math.max(...ls.map((l) => l.name.length))
  return ['listeners:', ...ls.map((l) => {
    if (l.name.endsWith('/udp')) return `  ${l.name.padEnd(w)}  ${l.active} flows, ${l.accepted} started, udp (node:dgram)`
    const path = l.path === 'native' ? 'native lane' : `js (${l.pathReason ?? 'unknown'})`
    return `  ${l.name.padEnd(w)}  ${l.active} active, ${l.accepted} accepted, ${path}`
  })]
}

/** Plain lines for scripts (stdout not a TTY): one per Service, after `ready`. */
export function formatPlain (st: UpStatus): string[] {
  return st.services.map((s) => ['service', `${s.cluster}/${s.namespace}/${s.name}`, ...s.addresses, ...s.hostnames].join(' '))
}

/**
 * A terminal view: progress lines scroll above a block (the table) that is
 * redrawn in place. Lines are never cut (a curl command must stay whole);
 * the rows a long line wraps to are counted so the cursor arithmetic holds.
 */
export class TtyView {
  readonly #out: NodeJS.WriteStream
  #block: string[] = []
  #drawn = 0

  constructor (out: NodeJS.WriteStream) {
    this.#out = out
  }

  /** Columns to lay tables out in (one less than the terminal, so nothing wraps). */
  get width (): number {
    return Math.max(40, (this.#out.columns ?? 100) - 1)
  }

  #rows (text: string): number {
    const cols = Math.max(1, this.#out.columns ?? 100)
    return Math.max(1, Math.ceil([...text].length / cols))
  }

  #clear (): string {
    return this.#drawn > 0 ? `\x1b[${this.#drawn}A\x1b[0J` : ''
  }

  #draw (): string {
    this.#drawn = this.#block.reduce((n, l) => n + this.#rows(l), 0)
    return this.#block.map((l) => `${l}\n`).join('')
  }

  line (text: string): void {
    this.#out.write(this.#clear() + `${text}\n` + this.#draw())
  }

  block (lines: string[]): void {
    if (lines.length === this.#block.length && lines.every((l, i) => l === this.#block[i])) return
    const clear = this.#clear()
    this.#block = lines
    this.#out.write(clear + this.#draw())
  }

  /** Leave the block on screen and stop managing it. */
  release (): void {
    this.#drawn = 0
    this.#block = []
  }
}

/** A pino destination that prints log lines through the view (level, message, fields). */
export function viewLogStream (view: TtyView): Writable {
  const names: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' }
  return new Writable({
    write (chunk: Buffer, _enc, cb) {
      for (const raw of chunk.toString('utf8').split('\n')) {
        if (raw.trim() === '') continue
        try {
          const o = JSON.parse(raw) as Record<string, unknown>
          const { level, msg, time: _t, pid: _p, hostname: _h, module: _m, ...rest } = o
          const extra = Object.entries(rest).filter(([, v]) => typeof v !== 'object').map(([k, v]) => `${k}=${String(v)}`).join(' ')
          view.line(`${(names[Number(level)] ?? 'log').padEnd(5)} ${String(msg ?? '')}${extra !== '' ? `  ${extra}` : ''}`)
        } catch {
          view.line(raw)
        }
      }
      cb()
    },
  })
}

/** Progress lines for `up`'s events on a terminal; undefined when the event shows nothing. */
export function eventLine (e: UpEvent): string | undefined {
  switch (e.type) {
    case 'recovering': return `↻ undoing what a previous kind-tunnel up (pid ${e.pid}) left behind`
    case 'recovered': return `✓ cleaned up after the previous run (${e.reports.map((r) => r.cluster).join(', ') || 'nothing to do'})`
    case 'cluster': return `● cluster ${e.name}: ${e.mode} mode (${e.reason})`
    case 'relay': return `  relay ${e.cluster}: ${e.line}`
    case 'helper': return `  loopback aliases need root: ${e.argv.join(' ')}`
    case 'listening': return `✓ listening ${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}${e.udp === true ? '/udp' : ''}`
    case 'metrics': return `✓ metrics on http://${e.host}:${e.port}/metrics`
    case 'synced': return `✓ cluster ${e.cluster} synced`
    case 'stopping': return `… stopping (${e.reason}): removing statuses, draining connections`
    case 'cleaned': return `✓ cluster ${e.cluster} cleaned up`
    case 'stopped': return e.clean ? '✓ stopped; everything undone' : '✗ stopped; some changes are left: run `kind-tunnel down`'
    default: return undefined
  }
}
