// The I/O behind the doctor's checks, each bounded in time and leaving no
// socket open: can a port be bound, who holds it, does an address finish a
// TLS handshake, does a node's health endpoint answer.

import { createServer } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { readdir, readFile, readlink } from 'node:fs/promises'
import { dialDirect } from '../dataplane/dialer.js'
import { probe } from '../dataplane/health.js'
import { probeReachable, type ProbeOutcome } from '../dataplane/probe.js'
import type { Endpoint, HealthCheckSpec } from '../routing/types.js'

export type BindOutcome = 'free' | 'taken' | 'denied' | 'no-address' | 'error'

/** Try to bind host:port and let go at once. */
export function tryBind (host: string, port: number): Promise<{ outcome: BindOutcome, code?: string }> {
  return new Promise((resolve) => {
    const s = createServer()
    s.once('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? 'UNKNOWN'
      const outcome: BindOutcome = code === 'EADDRINUSE' ? 'taken' : code === 'EACCES' || code === 'EPERM' ? 'denied' : code === 'EADDRNOTAVAIL' ? 'no-address' : 'error'
      resolve({ outcome, code })
    })
    s.listen({ host, port, exclusive: true }, () => { s.close(() => resolve({ outcome: 'free' })) })
  })
}

function hexPort (port: number): string {
  return port.toString(16).toUpperCase().padStart(4, '0')
}

/**
 * The process listening on `port` (Linux, from /proc): the socket inode in
 * /proc/net/tcp{,6}, then the /proc/<pid>/fd link that points at it. Best
 * effort: undefined when /proc says nothing or the process is someone else's.
 */
export async function portOwner (port: number, proc = '/proc'): Promise<{ pid: number, command: string } | undefined> {
  const inodes = new Set<string>()
  for (const f of ['tcp', 'tcp6']) {
    let text: string
    try { text = await readFile(`${proc}/net/${f}`, 'utf8') } catch { continue }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/)
      // sl local_address rem_address st ... inode (column 9); st 0A = LISTEN
      if (cols.length < 10 || cols[3] !== '0A') continue
      if ((cols[1] ?? '').split(':')[1] !== hexPort(port)) continue
      inodes.add(cols[9] as string)
    }
  }
  if (inodes.size === 0) return undefined
  let pids: string[]
  try { pids = (await readdir(proc)).filter((p) => /^\d+$/.test(p)) } catch { return undefined }
  // Bounded: one pass over the processes, at most 4096 fds each.
  for (const pid of pids) {
    let fds: string[]
    try { fds = (await readdir(`${proc}/${pid}/fd`)).slice(0, 4096) } catch { continue }
    for (const fd of fds) {
      let link: string
      try { link = await readlink(`${proc}/${pid}/fd/${fd}`) } catch { continue }
      const m = /^socket:\[(\d+)\]$/.exec(link)
      if (m === null || !inodes.has(m[1] as string)) continue
      return { pid: Number(pid), command: await commandName(proc, pid) }
    }
  }
  return undefined
}

/**
 * What to call a process: its argv[0]'s last path part ("node" for
 * /usr/bin/node), or, when argv[0] was rewritten into a title ("nginx: master
 * process ...") or is empty, its comm. Not comm first: that is the main
 * thread's name, which programs may set (Node 24 names it "MainThread").
 */
export async function commandName (proc: string, pid: string): Promise<string> {
  const argv0 = (await readFile(`${proc}/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0')[0] ?? ''
  if (/^[^\s:]+$/.test(argv0)) {
    const base = argv0.slice(argv0.lastIndexOf('/') + 1)
    if (base !== '') return base.slice(0, 64)
  }
  return (await readFile(`${proc}/${pid}/comm`, 'utf8').catch(() => '?')).trim() || '?'
}

export type TlsOutcome = 'ok' | 'reset' | 'refused' | 'timeout' | 'closed' | 'error'

/**
 * Connect and do a TLS handshake (certificate not verified: only whether
 * TLS is spoken). `reset` is the symptom users see as curl's
 * SSL_ERROR_SYSCALL: the TCP handshake succeeded, then the peer reset or
 * closed before a ServerHello.
 */
export function tlsHandshake (host: string, port: number, servername: string | undefined, timeoutMs: number): Promise<{ outcome: TlsOutcome, code?: string, tcp: boolean }> {
  return new Promise((resolve) => {
    let tcp = false
    let done = false
    const s = tlsConnect({ host, port, ...(servername !== undefined ? { servername } : {}), rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] })
    const finish = (outcome: TlsOutcome, code?: string): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      s.on('error', () => {})
      s.destroy()
      resolve({ outcome, tcp, ...(code !== undefined ? { code } : {}) })
    }
    const timer = setTimeout(() => finish('timeout'), timeoutMs)
    s.once('connect', () => { tcp = true })
    s.once('secureConnect', () => finish('ok'))
    s.once('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? 'UNKNOWN'
      if (code === 'ECONNREFUSED') finish('refused', code)
      else if (code === 'ECONNRESET' || code === 'EPIPE') finish('reset', code)
      // Node reports a close before the ServerHello as ECONNRESET "socket hang up"
      // on some versions, and as a plain error on others.
      else if (/socket hang up|disconnected before secure/i.test(err.message)) finish(tcp ? 'reset' : 'closed', code)
      else finish('error', code)
    })
    s.once('close', () => finish(tcp ? 'reset' : 'closed'))
  })
}

export function tcpConnect (host: string, port: number, timeoutMs: number): Promise<{ outcome: ProbeOutcome, code?: string }> {
  return probeReachable(host, [port], timeoutMs).then((r) => {
    const p = r.results[0]
    return { outcome: p?.outcome ?? 'error', ...(p?.code !== undefined ? { code: p.code } : {}) }
  })
}

/** The data plane's own active check (HTTP 2xx on the health port, or a TCP connect). */
export function healthCheck (endpoint: Endpoint, check: HealthCheckSpec, timeoutMs: number): Promise<{ ok: boolean, cause: string }> {
  return new Promise((resolve) => {
    probe((e, t, cb) => { dialDirect(e.host, e.port, t, cb) }, endpoint, check, timeoutMs, (ok, cause) => resolve({ ok, cause }))
  })
}
