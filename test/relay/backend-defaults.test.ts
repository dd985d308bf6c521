// Bug 1 of issue 12: with the defaults, nothing may hold idle connections to
// a user's backend. A warm pool of backend sockets takes the only session of
// a server that serves one at a time (iperf3 -s keeps a pooled socket as its
// control connection and waits for parameters that never come), and hands
// servers that speak first (SMTP, SSH, MySQL, Redis) a client that never
// speaks. Real iperf3 server and client, a real relay, the data plane with its
// default options, and the relay dialer as `up --mode relay` builds it.
import t from 'tap'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { connect, createServer, type Socket, type AddressInfo } from 'node:net'
import { spawn } from 'node:child_process'
import { startTestRelay } from '../support/relay-path.js'
import { RelayDialer } from '../../src/relay/client.js'
import { ListenerManager } from '../../src/dataplane/listener-manager.js'
import { effectivePoolSize } from '../../src/dataplane/pool.js'
import { Registry } from '../../src/observe/metrics.js'
import { silentLogger } from '../../src/observe/logger.js'
import type { Dialer } from '../../src/dataplane/dialer.js'
import type { UpstreamSpec } from '../../src/routing/types.js'
import { dockerAvailable, useScratch, createNetwork } from '../support/docker.js'

const token = randomBytes(32)

function iperfClient (host: string, port: number): Promise<{ code: number, out: string }> {
  return new Promise((resolve) => {
    execFile('iperf3', ['-c', host, '-p', String(port), '-t', '1', '--connect-timeout', '3000'], { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1, out: stdout + stderr })
    })
  })
}

/**
 * `iperf3 -s` on a free port. `ready(n)` waits until it has said it listens
 * n + 1 times: it finished n sessions and takes the next one (it serves one at
 * a time, and a session's end reaches it a moment after its client exits).
 */
async function iperfServer (t: Tap, host: string): Promise<{ port: number, ready: (sessions: number) => Promise<void> }> {
  const port = await freePortOn(host)
  const p = spawn('iperf3', ['-s', '-B', host, '-p', String(port), '--forceflush'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { p.kill('SIGKILL') })
  // Its own word that it listens (a connect would be taken as a session).
  let out = ''
  let wake: (() => void) | undefined
  const seen = (d: Buffer): void => { out += d.toString(); wake?.() }
  p.stdout.on('data', seen)
  p.stderr.on('data', seen)
  let exited: string | undefined
  p.once('exit', (code) => { exited = `iperf3 -s exited ${String(code)}: ${out}`; wake?.() })
  const ready = (sessions: number): Promise<void> => new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { wake = undefined; reject(new Error(`iperf3 -s on ${host}:${port} did not listen again after ${sessions} session(s) in 20 s: ${JSON.stringify(out)}`)) }, 20_000)
    const check = (): void => {
      if (exited !== undefined) { clearTimeout(timer); wake = undefined; reject(new Error(exited)); return }
      if ((out.match(/Server listening on/g) ?? []).length > sessions) { clearTimeout(timer); wake = undefined; resolve() }
    }
    wake = check
    check()
  })
  await ready(0)
  return { port, ready }
}

interface Tap { teardown (fn: () => unknown): void }

async function freePortOn (host: string): Promise<number> {
  const s = createServer()
  await new Promise<void>((resolve) => s.listen({ host, port: 0 }, resolve))
  const port = (s.address() as AddressInfo).port
  await new Promise((resolve) => s.close(resolve))
  return port
}

/** An SMTP-like server: greets every connection at once, answers QUIT; records whether each connection ever spoke. */
async function bannerServer (host: string): Promise<{ port: number, sessions: Array<{ spoke: boolean, closed: boolean }>, close: () => Promise<void> }> {
  const sessions: Array<{ spoke: boolean, closed: boolean }> = []
  const open = new Set<Socket>()
  const server = createServer((s) => {
    const rec = { spoke: false, closed: false }
    sessions.push(rec)
    open.add(s)
    s.on('error', () => {})
    s.once('close', () => { rec.closed = true; open.delete(s) })
    s.write('220 banner.test ESMTP ready\r\n')
    let buf = ''
    s.on('data', (c: Buffer) => {
      rec.spoke = true
      buf += c.toString('latin1')
      if (buf.includes('QUIT\r\n')) s.end('221 bye\r\n')
    })
  })
  await new Promise<void>((resolve) => server.listen({ host, port: 0 }, resolve))
  return {
    port: (server.address() as AddressInfo).port,
    sessions,
    close: () => new Promise((resolve) => { for (const s of open) s.destroy(); server.close(() => resolve()) }),
  }
}

/** Connect, read the greeting, QUIT, read the goodbye: what a mail client does. */
function smtpSession (host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port })
    let got = ''
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no complete SMTP exchange within 5 s; got ${JSON.stringify(got)}`)) }, 5000)
    s.on('data', (c: Buffer) => {
      const first = got === ''
      got += c.toString('latin1')
      if (first && got.startsWith('220 ')) s.write('QUIT\r\n')
    })
    s.once('end', () => { clearTimeout(timer); s.end(); resolve(got) })
    s.once('error', (err) => { clearTimeout(timer); reject(err) })
  })
}

// Docker first: tap ends a file once no test is pending and nothing keeps the
// loop busy (a wait for the Docker lock does not), so nothing may be awaited
// between tests.
const skip = await dockerAvailable()
const prefix = skip === null ? await useScratch(t) : ''
// The test network's gateway: an address on this host that the relay may dial (loopback it refuses).
const net = skip === null ? await createNetwork(prefix) : undefined

t.test('auto never pools backends, on any platform or dialer; an explicit size still does', async (t) => {
  for (const platform of ['linux', 'darwin', 'win32'] as const) {
    t.equal(effectivePoolSize(undefined, 'auto', undefined, platform), 0, `direct on ${platform}`)
    t.equal(effectivePoolSize(undefined, 'auto', 'relay:c', platform), 0, `relay on ${platform}`)
  }
  t.equal(effectivePoolSize(3, 'auto', 'relay:c'), 3, 'per Service (annotation)')
  t.equal(effectivePoolSize(undefined, 2, undefined), 2, '--pool-size 2')
})

if (skip !== null || net === undefined) t.test('through a relay on a Docker network', { skip: skip ?? 'no network' }, () => {})
else {
  const host = net.gateway

  const relayFor = async (t: Tap & { teardown (fn: () => unknown): void }, ports: number[]): Promise<ListenerManager> => {
    const relay = await startTestRelay({ host: '127.0.0.1', port: 0, token, allow: [`${host}/32`], ports: { min: Math.min(...ports), max: Math.max(...ports), extra: [] } })
    t.teardown(() => relay.destroy())
    // As `up --mode relay` makes it: only the endpoint, everything else default.
    const dialer = new RelayDialer({ host: '127.0.0.1', port: relay.address.port, token, name: 'test' })
    t.teardown(() => dialer.close())
    const manager = new ListenerManager({ logger: silentLogger(), metrics: new Registry(), options: { accessLog: false }, dialers: new Map<string, Dialer>([['relay:test', dialer]]) })
    t.teardown(() => manager.close(200))
    return manager
  }
  const listen = async (manager: ListenerManager, ups: UpstreamSpec[]): Promise<number[]> => {
    const res = await manager.apply({ version: 1, listeners: ups.map((u) => ({ host: '127.0.0.1', port: 0, routes: [], default: u })) })
    if (res.failed.length > 0) throw new Error(JSON.stringify(res.failed))
    return res.bound.map((b) => b.port)
  }

  t.test('iperf3 through a relay-dialed listener with the defaults, and straight to the server beside it', async (t) => {
    const { port, ready } = await iperfServer(t, host)
    const manager = await relayFor(t, [port])
    // The upstream as computeRoutes builds it for `up --mode relay`: no poolSize of its own.
    const [lp] = await listen(manager, [{ id: 'c/default/iperf:5201', endpoints: [{ host, port }], dialer: 'relay:test' }])
    for (let i = 0; i < 2; i++) {
      await ready(2 * i)
      const via = await iperfClient('127.0.0.1', lp as number)
      t.equal(via.code, 0, `iperf3 through the relay, run ${i + 1}: ${via.out.split('\n').filter((l) => /error|receiver/.test(l)).join(' | ')}`)
      await ready(2 * i + 1)
      const direct = await iperfClient(host, port)
      t.equal(direct.code, 0, `iperf3 straight to the server, run ${i + 1}: ${direct.out.split('\n').filter((l) => /error|receiver/.test(l)).join(' | ')}`)
    }
  })

  t.test('a server that speaks first, through a relay-dialed listener with the defaults', async (t) => {
    const smtp = await bannerServer(host)
    t.teardown(smtp.close)
    const manager = await relayFor(t, [smtp.port])
    const [lp] = await listen(manager, [{ id: 'c/default/mail:25', endpoints: [{ host, port: smtp.port }], dialer: 'relay:test' }])
    for (let i = 0; i < 3; i++) {
      const got = await smtpSession('127.0.0.1', lp as number)
      t.match(got, /^220 banner\.test ESMTP ready\r\n221 bye\r\n$/, `session ${i + 1}: greeting first, then the goodbye`)
    }
    await manager.close(200)
    t.equal(smtp.sessions.length, 3, 'the server saw the three clients and nothing else')
    t.same(smtp.sessions.filter((s) => !s.spoke).length, 0, 'no connection that never spoke (no warm socket to the backend)')
  })

  t.test('a server that speaks first, direct (no dialer) with the defaults', async (t) => {
    const smtp = await bannerServer(host)
    t.teardown(smtp.close)
    const manager = new ListenerManager({ logger: silentLogger(), metrics: new Registry(), options: { accessLog: false } })
    t.teardown(() => manager.close(200))
    const [lp] = await listen(manager, [{ id: 'c/default/mail:25', endpoints: [{ host, port: smtp.port }] }])
    for (let i = 0; i < 2; i++) t.match(await smtpSession('127.0.0.1', lp as number), /^220 .*\r\n221 bye\r\n$/)
    await manager.close(200)
    t.equal(smtp.sessions.length, 2)
    t.same(smtp.sessions.filter((s) => !s.spoke).length, 0)
  })

  t.test('iperf3 through `proxy` (direct) with the defaults', async (t) => {
    const { port } = await iperfServer(t, host)
    const manager = new ListenerManager({ logger: silentLogger(), metrics: new Registry(), options: { accessLog: false } })
    t.teardown(() => manager.close(200))
    const [lp] = await listen(manager, [{ id: 'default', endpoints: [{ host, port }] }])
    const via = await iperfClient('127.0.0.1', lp as number)
    t.equal(via.code, 0, via.out.split('\n').filter((l) => /error|receiver/.test(l)).join(' | '))
  })
}
