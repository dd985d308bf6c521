// Reachability probe: short TCP connects to decide whether the host can route
// to the kind network (direct mode) or needs the relay. Connects only, no
// payload; every attempt is bounded by the timeout and the sockets are
// destroyed as soon as an outcome is known.

import { connect } from 'node:net'

/**
 * open: the handshake completed. refused: an RST came back, so packets reach
 * the host but nothing listens. timeout: no answer (typical of a VM network
 * such as Docker Desktop's). unreachable: the kernel has no route (EHOSTUNREACH,
 * ENETUNREACH). error: anything else.
 */
export type ProbeOutcome = 'open' | 'refused' | 'timeout' | 'unreachable' | 'error'

export interface PortProbe {
  readonly port: number
  readonly outcome: ProbeOutcome
  readonly ms: number
  readonly code?: string
}

export interface ProbeResult {
  readonly host: string
  /** True when some port completed a TCP handshake. */
  readonly reachable: boolean
  /** The first open port, when reachable. */
  readonly port?: number
  readonly results: readonly PortProbe[]
}

function probeOne (host: string, port: number, timeoutMs: number): Promise<PortProbe> {
  return new Promise((resolve) => {
    const started = performance.now()
    const sock = connect({ host, port })
    let done = false
    const finish = (outcome: ProbeOutcome, code?: string): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.removeAllListeners('connect')
      sock.on('error', () => {})
      sock.destroy()
      const r: { port: number, outcome: ProbeOutcome, ms: number, code?: string } = { port, outcome, ms: Math.round(performance.now() - started) }
      if (code !== undefined) r.code = code
      resolve(r)
    }
    const timer = setTimeout(() => finish('timeout'), timeoutMs)
    sock.once('connect', () => finish('open'))
    sock.once('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? 'UNKNOWN'
      if (code === 'ECONNREFUSED') finish('refused', code)
      else if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EADDRNOTAVAIL') finish('unreachable', code)
      else finish('error', code)
    })
  })
}

/** Probe the ports in parallel, each with its own `timeoutMs` deadline. */
export async function probeReachable (host: string, ports: readonly number[], timeoutMs: number): Promise<ProbeResult> {
  const results = await Promise.all(ports.map((p) => probeOne(host, p, timeoutMs)))
  const open = results.find((r) => r.outcome === 'open')
  const out: { host: string, reachable: boolean, port?: number, results: PortProbe[] } = { host, reachable: open !== undefined, results }
  if (open !== undefined) out.port = open.port
  return out
}
