// The relay's listener on the addon's lane (kt_relay.c): when the relay's
// addon loads, its workers accept the host's connections, take the AUTH and
// the BIND of the common case (a CONNECT to an allowlisted node, flags at
// most SOURCE), dial and splice, with no JS per connection. Whatever they do
// not take comes back here as a descriptor and a verdict (RELAY_VERDICTS),
// and server.ts serves it from where the addon left it: every refusal,
// status and log line stays in server.ts. Summaries of the addon's
// connections arrive in batches for the log and the metrics (only with
// either on, and always for a failed dial).
//
// The relay image carries this module and the vocabulary; it imports no
// data-plane code beyond the addon's loader (native/index.ts).

import { Socket, type Server } from 'node:net'
import { constants as osConstants } from 'node:os'
import { laneBindingOf, type LaneBinding, type NativeSplicer } from '../dataplane/native/index.js'
import { CONN_OUTCOMES, F, LANE_ERRORS, REC, REC_LEN, RELAY_STATS, RELAY_VERDICTS, S, S_COUNT, type ConnOutcome, type RelayStat, type RelayVerdict } from '../dataplane/vocab.js'
import { bytesToIp } from './protocol.js'

export interface RelayLaneConfig {
  readonly token: Buffer
  readonly authWindowMs: number
  readonly headerTimeoutMs: number
  readonly idleTimeoutMs: number
  readonly connectTimeoutMs: number
  readonly maxConnections: number
  /** The reply's info byte. */
  readonly info: number
  readonly allow: readonly string[]
  readonly ports: { readonly min: number, readonly max: number, readonly extra: readonly number[] }
  /** Send a summary of every connection (the log at info, or metrics); failed dials always come. */
  readonly summaries: boolean
  /** Serve multiplexed carriers on the lane (kt_mux.c); false hands them back. Default true. */
  readonly mux?: boolean
}

/** A connection the addon served, at its end. */
export interface RelaySummary {
  readonly outcome: ConnOutcome
  /** An errno name or KT_ERR_* code, when it ended on one. */
  readonly err: string | undefined
  /** Host → node bytes, and back. */
  readonly up: number
  readonly down: number
  readonly ms: number
  readonly client: string
  /** Set once its BIND was taken (the connection dialled). */
  readonly dst?: string
  readonly src?: string
  /** A multiplexed carrier: its streams opened, and their bytes (the carrier's own up/down are 0). */
  readonly mux?: { readonly streams: number, readonly up: number, readonly down: number }
}

/** A stream of a carrier on the lane, refused or failed (kt_mux.c; logged as mux-server.ts logs its own). */
export interface RelayStreamEvent {
  readonly client: string
  readonly stream: number
  /** protocol.ts Status. */
  readonly status: number
  readonly why: 'open' | 'data_after_fin' | 'data_over_window' | 'window_over_window' | 'busy' | 'denied' | 'dial'
  /** A failed dial's errno name or KT_ERR_* code. */
  readonly err: string | undefined
  /** The OPEN's payload (its first 64 bytes), and its length, when it was malformed. */
  readonly open?: Buffer
  readonly openLength?: number
  readonly dst?: { readonly address: string, readonly port: number }
}

/** A carrier the host broke (kt_mux.c): a header that cannot be the protocol's, or an OPEN for an open stream. */
export interface RelayBrokenEvent {
  readonly client: string
  readonly why: 'header' | 'open_for_open_stream'
  readonly id: number
  readonly type: number
  readonly length: number
}

const STREAM_WHY = ['open', 'data_after_fin', 'data_over_window', 'window_over_window', 'busy', 'denied', 'dial'] as const
/** A carrier's phase in its summary (kt_relay.c RP_MUX). */
const PHASE_MUX = 4

export interface RelayLaneEvents {
  /** A connection for server.ts, from the verdict's state on. Called on the JS thread. */
  handBack (sock: Socket, verdict: RelayVerdict): void
  summary (s: RelaySummary): void
  stream (s: RelayStreamEvent): void
  broken (b: RelayBrokenEvent): void
}

export interface RelayLaneStats {
  readonly accepted: number
  readonly active: number
  readonly bytesUp: number
  readonly bytesDown: number
  /** Turned away at the connection cap. */
  readonly busy: number
  readonly relay: Readonly<Record<RelayStat, number>>
}

/** An address from a record: the family at `fam`, four big-endian words from `words` (IPv4 in the first), the port at `port`. */
function hostPortAt (r: Float64Array, fam: number, words: number, port: number): { address: string, port: number } {
  const b = Buffer.alloc(16)
  for (let i = 0; i < 4; i++) b.writeUInt32BE((r[words + i] as number) >>> 0, i * 4)
  return { address: bytesToIp(r[fam] === 4 ? b.subarray(0, 4) : b), port: r[port] as number }
}

/** The same as `ip:port`. */
function addressAt (r: Float64Array, fam: number, words: number, port: number): string {
  const a = hostPortAt(r, fam, words, port)
  return `${a.address}:${a.port}`
}

/** A relay_addr record's destination or source: family, 4 words, port, from `at`. */
function addressOf (r: Float64Array, at: number): string {
  return addressAt(r, at, at + 1, at + 5)
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v, k]))

function errName (n: number): string | undefined {
  if (n === 0) return undefined
  if (n < 0) return LANE_ERRORS[-n - 1] ?? 'EUNKNOWN'
  return ERRNO_NAMES.get(n) ?? `errno ${n}`
}

export class NativeRelayLane {
  private readonly stats = new Float64Array(S_COUNT)
  private readonly rstats = new Float64Array(RELAY_STATS.length)
  private refd = false
  private closed = false

  private constructor (
    private readonly binding: LaneBinding,
    private readonly lane: object,
    private readonly listener: object,
  ) {}

  /**
   * Take over `server`'s listening socket (call from its listen callback, so
   * libuv never polls it): the addon's workers accept from here on and the JS
   * server closes. A string says why not (the relay then stays in JS).
   */
  static open (splicer: NativeSplicer, server: Server, cfg: RelayLaneConfig, events: RelayLaneEvents): NativeRelayLane | string {
    const lb = laneBindingOf(splicer)
    if (lb === undefined) return 'the splicer has no lane'
    const b = lb.binding
    if (typeof b.laneRelay !== 'function') return 'the addon has no relay listener'
    const fd = (server as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd
    if (typeof fd !== 'number' || fd < 0) return 'the listening socket has no descriptor'
    let self: NativeRelayLane | undefined
    let lane: object
    try {
      lane = b.createLane(lb.engines, (recs) => self?.onEvents(recs, events))
    } catch (err) {
      return `no lane: ${(err as Error).message}`
    }
    let l: object
    try {
      l = b.laneListen(lane, 1, fd, false)
      // The relay bounds nothing by time once spliced (the host's data plane does); one attempt per dial.
      b.laneConfigure(l, cfg.maxConnections, cfg.connectTimeoutMs, 0, 0, 1, 0, cfg.summaries ? 1 : 0)
      b.laneRelay(l, cfg.token, cfg.authWindowMs, cfg.headerTimeoutMs, cfg.idleTimeoutMs, cfg.info, cfg.allow, cfg.ports.min, cfg.ports.max, cfg.ports.extra, cfg.mux !== false)
      b.laneSetCap(lane, cfg.maxConnections)
    } catch (err) {
      b.laneClose(lane)
      return (err as Error).message
    }
    self = new NativeRelayLane(b, lane, l)
    b.laneStart(l)
    server.close()
    self.ref(true)
    return self
  }

  private ref (on: boolean): void {
    if (on === this.refd) return
    this.refd = on
    this.binding.laneRef(this.lane, on)
  }

  private onEvents (r: Float64Array, events: RelayLaneEvents): void {
    for (let i = 0; i + REC_LEN <= r.length; i += REC_LEN) {
      if (r[i + F.type] !== REC.relay) continue
      const client = addressAt(r, i + F.clientFamily, i + F.clientW0, i + F.clientPort)
      if (r[i + F.backend] === 0) {
        const fd = r[i + F.attempts] as number
        const verdict = RELAY_VERDICTS[r[i + F.outcome] as number] ?? 'raw'
        let sock: Socket
        try {
          sock = new Socket({ fd, allowHalfOpen: true, readable: true, writable: true })
        } catch {
          continue // not a socket any more: nothing to serve
        }
        events.handBack(sock, verdict)
        continue
      }
      const a = i + REC_LEN
      const kind = r[i + F.backend]
      if (kind === 3) {
        events.broken({ client, why: r[i + F.route] === 2 ? 'open_for_open_stream' : 'header', id: r[i + F.attempts] as number, type: r[i + F.err] as number, length: r[i + F.bytesIn] as number })
        continue
      }
      if (kind === 2) {
        // Always followed by its second record (emitted together).
        const s: { -readonly [K in keyof RelayStreamEvent]: RelayStreamEvent[K] } = {
          client,
          stream: r[i + F.attempts] as number,
          status: r[i + F.outcome] as number,
          why: STREAM_WHY[r[i + F.route] as number] ?? 'open',
          err: errName(r[i + F.err] as number),
        }
        if (a + REC_LEN <= r.length && r[a + F.type] === REC.name) {
          const n = r[a + F.backend] as number
          s.open = Buffer.from(new Uint8Array(r.buffer, r.byteOffset + (a + F.nameBytes) * 8, n))
          s.openLength = r[i + F.bytesIn] as number
          i += REC_LEN
        } else if (a + REC_LEN <= r.length && r[a + F.type] === REC.relayAddr) {
          if (r[a + F.dstFamily] !== 0) s.dst = hostPortAt(r, a + F.dstFamily, a + F.dstFamily + 1, a + F.dstFamily + 5)
          i += REC_LEN
        }
        events.stream(s)
        continue
      }
      const hasAddr = a + REC_LEN <= r.length && r[a + F.type] === REC.relayAddr
      const s: { -readonly [K in keyof RelaySummary]: RelaySummary[K] } = {
        outcome: CONN_OUTCOMES[r[i + F.outcome] as number] ?? 'error',
        err: errName(r[i + F.err] as number),
        up: r[i + F.bytesIn] as number,
        down: r[i + F.bytesOut] as number,
        ms: r[i + F.ms] as number,
        client,
      }
      if (hasAddr) {
        if (r[a + F.dstFamily] !== 0) s.dst = addressOf(r, a + F.dstFamily)
        if (r[a + F.srcFamily] !== 0) s.src = addressOf(r, a + F.srcFamily)
        if (r[i + F.attempts] === PHASE_MUX) s.mux = { streams: r[a + F.srcFamily + 6] as number, up: r[a + F.srcFamily + 7] as number, down: r[a + F.srcFamily + 8] as number }
        i += REC_LEN
      }
      events.summary(s)
    }
  }

  read (): RelayLaneStats {
    const o = this.stats
    this.binding.laneStats(this.listener, o)
    this.binding.laneRelayStats(this.listener, this.rstats)
    const relay = {} as Record<RelayStat, number>
    RELAY_STATS.forEach((k, i) => { relay[k] = this.rstats[i] as number })
    return {
      accepted: o[S.accepted] as number,
      active: o[S.active] as number,
      bytesUp: o[S.bytesIn] as number,
      bytesDown: o[S.bytesOut] as number,
      busy: o[S.outcomes + CONN_OUTCOMES.indexOf('max_connections')] as number,
      relay,
    }
  }

  /** How many connections the lane may hold now (the cap less JS's connections). */
  setCap (n: number): void {
    if (!this.closed) this.binding.laneSetCap(this.lane, Math.max(0, n))
  }

  /** Stop accepting and end the connections still in their header phase; spliced ones go on. */
  quiet (): void {
    if (this.closed) return
    this.binding.laneStop(this.listener)
    this.binding.laneRelayQuiet(this.listener)
  }

  /** Reset every connection now. */
  abort (): void {
    if (this.closed) return
    this.binding.laneStop(this.listener)
    this.binding.laneAbort(this.listener)
  }

  /** No more events; the process may exit. */
  close (): void {
    if (this.closed) return
    this.closed = true
    this.ref(false)
    this.binding.laneClose(this.lane)
  }
}
