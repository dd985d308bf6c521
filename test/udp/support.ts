// UDP test helpers: real dgram servers and clients on loopback, the CLI with
// `/udp` listeners, and a bounded wait for datagrams.

import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import { once } from 'node:events'
import { spawn, type ChildProcess } from 'node:child_process'
import { CLI } from '../support/cli.js'

export interface UdpServer {
  sock: Socket
  port: number
  /** Every datagram received, with its source. */
  received: Array<{ msg: Buffer, from: RemoteInfo }>
  close (): Promise<void>
}

/** A UDP server on host:0; `reply` decides what goes back for each datagram (any number of datagrams). */
export async function udpServer (reply: (msg: Buffer, from: RemoteInfo) => Buffer[], host = '127.0.0.1', port = 0): Promise<UdpServer> {
  const sock = createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 })
  const s: UdpServer = {
    sock,
    port: 0,
    received: [],
    close: async () => { await new Promise<void>((resolve) => { try { sock.close(() => { resolve() }) } catch { resolve() } }) },
  }
  sock.on('message', (msg, from) => {
    s.received.push({ msg, from })
    for (const r of reply(msg, from)) sock.send(r, from.port, from.address)
  })
  sock.bind(port, host)
  await once(sock, 'listening')
  s.port = sock.address().port
  return s
}

export const echo = (msg: Buffer): Buffer[] => [msg]
export const echoTwice = (msg: Buffer): Buffer[] => [msg, msg]

export interface UdpClient {
  sock: Socket
  port: number
  inbox: Buffer[]
  send (msg: Buffer | string, port: number, host?: string): void
  /** Wait until the inbox holds n datagrams (throws with what it saw). */
  waitCount (n: number, ms?: number): Promise<Buffer[]>
  close (): void
}

export async function udpClient (host = '127.0.0.1'): Promise<UdpClient> {
  const sock = createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 })
  const inbox: Buffer[] = []
  const waiters = new Set<() => void>()
  sock.on('message', (m) => { inbox.push(m); for (const w of waiters) w() })
  sock.on('error', () => {})
  sock.bind(0, host)
  await once(sock, 'listening')
  return {
    sock,
    port: sock.address().port,
    inbox,
    send (msg, port, to = host) { sock.send(typeof msg === 'string' ? Buffer.from(msg) : msg, port, to) },
    async waitCount (n, ms = 5000) {
      if (inbox.length >= n) return inbox
      await new Promise<void>((resolve, reject) => {
        const w = (): void => { if (inbox.length >= n) { clearTimeout(t); waiters.delete(w); resolve() } }
        const t = setTimeout(() => { waiters.delete(w); reject(new Error(`waited ${ms} ms for ${n} datagrams, have ${inbox.length}`)) }, ms)
        waiters.add(w)
      })
      return inbox
    },
    close () { try { sock.close() } catch { /* closed */ } },
  }
}

export interface UdpCli {
  child: ChildProcess
  stdout: string[]
  stderr: string[]
  /** `listening HOST:PORT[/udp]` lines. */
  listening: Array<{ host: string, port: number, udp: boolean }>
  udpPort (): number
  tcpPort (): number
  /** Parsed JSON log lines (stderr). */
  logs (): Array<Record<string, unknown>>
  waitLog (pred: (l: Record<string, unknown>) => boolean, ms?: number, what?: string): Promise<Record<string, unknown>>
  metricsUrl (): string | undefined
  stop (): Promise<void>
}

/** Start `kind-tunnel proxy ...`; resolves once `want` listening lines are out. */
export async function startUdpCli (args: string[], want = 1): Promise<UdpCli> {
  const child = spawn(process.execPath, [CLI, 'proxy', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  const r: UdpCli = {
    child,
    stdout: [],
    stderr: [],
    listening: [],
    udpPort () { return (r.listening.find((l) => l.udp) as { port: number }).port },
    tcpPort () { return (r.listening.find((l) => !l.udp) as { port: number }).port },
    logs () {
      return r.stderr.flatMap((l) => { try { return [JSON.parse(l) as Record<string, unknown>] } catch { return [] } })
    },
    async waitLog (pred, ms = 5000, what = 'log line') {
      const end = Date.now() + ms
      for (;;) {
        const hit = r.logs().find(pred)
        if (hit !== undefined) return hit
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}; stderr:\n${r.stderr.slice(-20).join('\n')}`)
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    },
    metricsUrl () {
      const m = r.stdout.map((l) => /^metrics (.+)$/.exec(l)).find((x) => x !== null)
      return m === undefined || m === null ? undefined : `http://${m[1] as string}/metrics`
    },
    async stop () {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        await once(child, 'exit')
      }
    },
  }
  const lines = (into: string[], onLine?: (l: string) => void) => {
    let buf = ''
    return (d: string): void => {
      buf += d
      let i
      while ((i = buf.indexOf('\n')) >= 0) { const l = buf.slice(0, i); buf = buf.slice(i + 1); into.push(l); onLine?.(l) }
    }
  }
  child.stdout?.setEncoding('utf8').on('data', lines(r.stdout, (l) => {
    const m = /^listening (\[?[^\]]*\]?):(\d+)(\/udp)?$/.exec(l)
    if (m !== null) r.listening.push({ host: (m[1] as string).replace(/^\[|\]$/g, ''), port: Number(m[2]), udp: m[3] !== undefined })
  }))
  child.stderr?.setEncoding('utf8').on('data', lines(r.stderr))
  const deadline = Date.now() + 15_000
  while (r.listening.length < want) {
    if (child.exitCode !== null) throw new Error(`kind-tunnel exited ${child.exitCode}: ${r.stderr.join('\n')}`)
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`kind-tunnel did not listen in time: ${r.stderr.join('\n')}`) }
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return r
}

/** Scrape a metrics URL and return the value of one sample (0 when absent). */
export async function scrape (url: string, sample: RegExp): Promise<number> {
  const text = await (await fetch(url)).text()
  let total = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    const sp = line.lastIndexOf(' ')
    if (sample.test(line.slice(0, sp))) total += Number(line.slice(sp + 1))
  }
  return total
}

/** A port free for both TCP and UDP on 127.0.0.1 right now. */
export async function freeTcpUdpPort (): Promise<number> {
  const { createServer } = await import('node:net')
  for (let i = 0; i < 50; i++) {
    const s = createServer()
    s.listen(0, '127.0.0.1')
    await once(s, 'listening')
    const port = (s.address() as { port: number }).port
    const u = createSocket('udp4')
    const ok = await new Promise<boolean>((resolve) => {
      u.once('error', () => { resolve(false) })
      u.bind(port, '127.0.0.1', () => { resolve(true) })
    })
    try { u.close() } catch { /* never bound */ }
    await new Promise<void>((resolve) => s.close(() => { resolve() }))
    if (ok) return port
  }
  throw new Error('no port free for both TCP and UDP')
}
