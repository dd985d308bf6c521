// The relay's listener on the addon's lane (kt_relay.c, src/relay/native-lane.ts).
// Differential: its nonce cache against server.ts NonceCache, its allowlist
// against allow.ts Allowlist, its MAC check against node:crypto. End to end,
// through a real relay and echo servers on a Docker network: the common case
// never reaches JS, everything else is handed back and served as before, and
// close() lets spliced connections finish. (test/relay/native/* run the
// relay's protocol suites over this path as well.)
import t, { type Test } from 'tap'
import { createHmac, randomBytes } from 'node:crypto'
import { connect } from 'node:net'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import { execFileSync } from 'node:child_process'
import { loadNativeSplicer, nativeUnavailableReason } from '../../src/dataplane/native/index.js'
import { locateAddon } from '../../src/dataplane/native/locate.js'
import { nativeSkip } from '../support/native.js'
import { NonceCache, startRelay, type RelayHandle } from '../../src/relay/server.js'
import { Allowlist } from '../../src/relay/allow.js'
import { encodeAuth, encodeConnect, ipToBytes, Status } from '../../src/relay/protocol.js'
import { RelayDialer } from '../../src/relay/client.js'
import { dockerAvailable, useScratch, createNetwork, listenOnGateway, readAll } from '../support/docker.js'
import { waitFor } from '../support/wait.js'
import type { RelayLogger } from '../../src/relay/log.js'

interface Hooks {
  relayNonceScript (windowMs: number, max: number, startMs: number, nonces: Buffer, nows: number[]): number[]
  relayAllowScript (allow: string[], min: number, max: number, extra: number[], addrs: Buffer[], ports: number[]): number[]
  relayMacCheck (token: Buffer, auth: Buffer): boolean
}

const splicer = loadNativeSplicer()
const skip = nativeSkip(splicer === undefined ? `the native addon is not available: ${nativeUnavailableReason() ?? '?'}` : false)
if (skip !== false || splicer === undefined) t.plan(0, skip === false ? 'no addon' : skip)
else {
  const native = splicer
  t.teardown(() => native.close())
  const addon = locateAddon(false).pick
  if (addon === undefined) throw new Error('the addon loaded but cannot be located')
  const hooks = createRequire(import.meta.url)(addon.file) as Hooks
  const token = randomBytes(32)
  // Docker first: tap ends the file once no test is pending, so nothing may be awaited between tests.
  const dskip = await dockerAvailable()
  let echo: Awaited<ReturnType<typeof listenOnGateway>> | undefined
  if (dskip === null) {
    const prefix = await useScratch(t)
    const net = await createNetwork(prefix)
    echo = await listenOnGateway(net, (s) => { s.pipe(s) })
    t.teardown(echo.close)
  }

  t.test('differential: the nonce cache answers as NonceCache, through rotations, replays and the bound', async (t) => {
    for (const [windowMs, max] of [[1000, 1_000_000], [50, 40], [7, 3]] as const) {
      const start = 1_700_000_000_000
      const js = new NonceCache(windowMs, max, start)
      const pool = Array.from({ length: 60 }, () => randomBytes(16))
      const nonces: Buffer[] = []
      const nows: number[] = []
      let now = start
      for (let i = 0; i < 3000; i++) {
        // A burst at the start (it fills the small caches), then time moves by
        // up to half a window, sometimes more than two at once.
        const r = Math.random()
        if (i >= 100) now += r < 0.6 ? 0 : r < 0.97 ? Math.floor(Math.random() * windowMs * 0.5) : windowMs * 2 + 1
        nonces.push(Math.random() < 0.5 ? pool[Math.floor(Math.random() * pool.length)] as Buffer : randomBytes(16))
        nows.push(now)
      }
      const want = nonces.map((n, i) => ({ new: 0, seen: 1, full: 2 })[js.add(n, nows[i] as number)])
      const got = hooks.relayNonceScript(windowMs, max, start, Buffer.concat(nonces), nows)
      const diff = got.findIndex((g, i) => g !== want[i])
      t.equal(diff, -1, `window ${windowMs} ms, max ${max}: the same 3000 answers${diff >= 0 ? ` (first difference at ${diff})` : ''}`)
      t.ok(want.includes(1), 'replays were among them')
      if (max < 100) t.ok(want.includes(2), 'and a full cache')
    }
  })

  t.test('differential: the allowlist answers as Allowlist, on edges and at random', async (t) => {
    const sets: Array<[string[], { min: number, max: number, extra: number[] }]> = [
      [['172.18.0.0/16', 'fc00:f853:ccd:e793::/64'], { min: 30000, max: 32767, extra: [10256] }],
      [['10.0.0.1/32', '127.0.0.0/8', '169.254.0.0/16', '224.0.0.0/3', 'fe80::/10', '::1/128', 'ff00::/8'], { min: 1, max: 65535, extra: [] }],
      [['0.0.0.0/1', '128.0.0.0/1', '::/1', '8000::/1'], { min: 80, max: 80, extra: [443, 10256] }],
      [['::ffff:0:0/96', '192.168.5.0/24'], { min: 30000, max: 30001, extra: [] }],
    ]
    const edges = ['172.18.0.0', '172.18.255.255', '172.19.0.0', '172.17.255.255', '127.0.0.1', '127.255.255.255', '0.0.0.0', '0.1.2.3',
      '169.254.169.254', '169.255.0.1', '224.0.0.1', '239.255.255.255', '240.0.0.1', '255.255.255.255', '10.0.0.1', '10.0.0.2', '192.168.5.7',
      '::', '::1', '::2', 'fe80::1', 'febf::1', 'fec0::1', 'ff02::1', 'fc00:f853:ccd:e793::5', 'fc00:f853:ccd:e794::5',
      '::ffff:127.0.0.1', '::ffff:172.18.0.2', '::ffff:10.0.0.1', '::ffff:192.168.5.9', '::ffff:0:1', '64:ff9b::1', '2001:db8::1']
    const ports = [0, 1, 79, 80, 443, 10256, 29999, 30000, 30001, 32767, 32768, 65535]
    for (const [cidrs, pol] of sets) {
      const js = new Allowlist(cidrs, pol)
      const addrs: Buffer[] = []
      const texts: string[] = []
      const ps: number[] = []
      const add = (text: string, port: number): void => {
        const b = ipToBytes(text) as Buffer
        addrs.push(b)
        texts.push(text)
        ps.push(port)
      }
      for (const a of edges) for (const p of ports) add(a, p)
      for (let i = 0; i < 3000; i++) {
        const v4 = Math.random() < 0.6
        const b = randomBytes(v4 ? 4 : 16)
        if (v4 && Math.random() < 0.5) { b[0] = 172; b[1] = 18 }
        if (!v4 && Math.random() < 0.3) b.fill(0, 0, 10).fill(0xff, 10, 12)
        add(b.length === 4 ? [...b].join('.') : (b.toString('hex').match(/.{4}/g) as string[]).join(':'), ports[i % ports.length] as number)
      }
      const got = hooks.relayAllowScript(cidrs, pol.min, pol.max, pol.extra, addrs, ps)
      // The lane's port check is the BIND's (port 0 never reaches it), so compare from port 1.
      const bad: string[] = []
      got.forEach((g, i) => { if ((ps[i] as number) > 0 && g !== (js.check(texts[i] as string, ps[i] as number) === null ? 1 : 0)) bad.push(`${texts[i] as string}:${ps[i] as number}`) })
      t.same(bad, [], `${cidrs.join(',')}: every answer equal (${got.length} checks)`)
    }
  })

  t.test('differential: the MAC check agrees with node:crypto and refuses any flipped bit', async (t) => {
    for (let i = 0; i < 200; i++) {
      const tok = randomBytes(16 + (i % 49))
      const a = encodeAuth(tok, { ack: i % 2 === 0 })
      t.equal(hooks.relayMacCheck(tok, a), true)
      const flip = Buffer.from(a)
      const at = i % 46
      flip[at] = (flip[at] as number) ^ (1 << (i % 8))
      // A flip in the signed part or the MAC breaks it; node:crypto says the same.
      const want = createHmac('sha256', tok).update(flip.subarray(0, 30)).digest().subarray(0, 16).equals(flip.subarray(30))
      t.equal(hooks.relayMacCheck(tok, flip), want)
    }
  })

  if (dskip !== null || echo === undefined) t.test('end to end (skipped)', { skip: dskip ?? 'no echo server' }, () => {})
  else {
    const gw = echo
    const ports = { min: gw.port, max: gw.port, extra: [] as number[] }

    async function relayWith (t: Test, extra: Partial<Parameters<typeof startRelay>[0]> = {}): Promise<RelayHandle> {
      const r = await startRelay({ host: '127.0.0.1', port: 0, token, allow: [`${gw.host}/32`], ports, native, ...extra })
      t.teardown(() => r.destroy())
      t.equal(r.acceptPath, 'native', 'the lane accepts')
      return r
    }

    /** One stream over a mux-only dialer, echoed: once a carrier is live (until then the pool serves). */
    async function echoOverMux (t: Test, r: RelayHandle, msg: string): Promise<void> {
      const m = new RelayDialer({ host: '127.0.0.1', port: r.address.port, token, poolSize: 0, transport: 'mux', name: 'm' })
      t.teardown(async () => { await m.close() })
      await waitFor(() => m.stats().mux?.state === 'live', 'a live carrier', 5000)
      const st = await m.dial({ host: gw.host, port: gw.port, timeoutMs: 3000 })
      t.equal((st as unknown as { ktMux?: boolean }).ktMux, true, 'a stream')
      st.end(msg)
      t.equal((await readAll(st)).toString(), msg)
    }

    async function roundTrip (port: number, payload: Buffer, auth = encodeAuth(token)): Promise<Buffer> {
      const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true })
      s.on('error', () => {})
      await once(s, 'connect')
      s.end(Buffer.concat([auth, encodeConnect({ address: gw.host, port: gw.port }, { address: '10.9.8.7', port: 4242 }), payload]))
      return await readAll(s)
    }

    t.test('the common case never reaches JS: AUTH, BIND and splice in the addon, counted there', async (t) => {
      const r = await relayWith(t)
      const payload = randomBytes(200_000)
      t.ok((await roundTrip(r.address.port, payload)).equals(payload), 'byte-exact with the FIN right behind the bytes')
      await waitFor(() => r.counters.active === 0, 'r.counters.active === 0', 3000)
      const c = r.counters
      t.equal(c.handedBack, 0, 'nothing handed back')
      t.equal(c.authenticated, 1)
      t.equal(c.dialed, 1)
      t.equal(c.spliced, 1)
      t.equal(c.bytesToUpstream, payload.length)
      t.equal(c.bytesFromUpstream, payload.length)
      t.equal(c.accepted, 1)
    })

    t.test('a pooled (ACKed) connection gets its OK from the addon, with the native bit', async (t) => {
      const r = await relayWith(t, { dataPath: 'native' })
      const d = new RelayDialer({ host: '127.0.0.1', port: r.address.port, token, poolSize: 4, transport: 'pool', name: 't' })
      t.teardown(async () => { await d.close() })
      await waitFor(() => d.stats().idle >= 2, 'd.stats().idle >= 2', 3000)
      t.equal(d.stats().dataPath, 'native')
      for (let i = 0; i < 20; i++) {
        const s = await d.dial({ host: gw.host, port: gw.port, timeoutMs: 3000 })
        s.end(`ping ${i}`)
        t.equal((await readAll(s)).toString(), `ping ${i}`)
      }
      t.equal(r.counters.handedBack, 0, 'every dial stayed in the addon')
    })

    t.test('250 connections, 25 at a time, each byte-exact, and the counts add up', async (t) => {
      const r = await relayWith(t)
      let next = 0
      let ok = 0
      const worker = async (): Promise<void> => {
        while (next < 250) {
          const p = randomBytes(1000 + (next++ % 5000))
          if ((await roundTrip(r.address.port, p)).equals(p)) ok++
        }
      }
      await Promise.all(Array.from({ length: 25 }, worker))
      t.equal(ok, 250)
      await waitFor(() => r.counters.active === 0, 'r.counters.active === 0', 5000)
      t.equal(r.counters.spliced, 250)
      t.equal(r.counters.handedBack, 0)
    })

    t.test('hand-backs: a replay and a denied port are served by server.ts from where the addon left them; a MUX carrier stays in the addon', async (t) => {
      const r = await relayWith(t)
      const a = encodeAuth(token)
      const payload = Buffer.from('once')
      t.ok((await roundTrip(r.address.port, payload, a)).equals(payload))
      // The same AUTH again: the addon's cache saw its nonce; JS refuses it as a replay (a reset: no ACK).
      const s = connect({ host: '127.0.0.1', port: r.address.port })
      let reset = false
      s.on('error', (e: NodeJS.ErrnoException) => { reset = e.code === 'ECONNRESET' })
      await once(s, 'connect')
      s.write(Buffer.concat([a, encodeConnect({ address: gw.host, port: gw.port }), payload]))
      await new Promise((resolve) => s.once('close', resolve))
      t.ok(reset, 'reset')
      t.equal(r.counters.refusedReplay, 1)
      // A denied port, with ANSWER: the status comes from server.ts.
      const d = connect({ host: '127.0.0.1', port: r.address.port })
      d.on('error', () => {})
      await once(d, 'connect')
      d.write(Buffer.concat([encodeAuth(token), encodeConnect({ address: gw.host, port: 31999 }, undefined, false, true)]))
      const got = await readAll(d)
      t.equal(got[1], Status.DENIED)
      t.equal(r.counters.refusedDenied, 1)
      t.equal(r.counters.handedBack, 2)
      // A carrier is served on the lane (kt_mux.c): its streams dial and splice there.
      await echoOverMux(t, r, 'over mux')
      t.equal(r.counters.handedBack, 2, 'the carrier stayed in the addon')
      t.equal(r.counters.spliced, 2, 'its stream dialled and spliced there')
    })

    t.test('nativeMux false (KT_RELAY_MUX=js): a MUX carrier comes back to JS, and its streams work there', async (t) => {
      const r = await relayWith(t, { nativeMux: false })
      await echoOverMux(t, r, 'over JS mux')
      t.ok(r.counters.handedBack >= 1, 'the carriers came back to JS')
    })

    t.test('logs: a summary line per connection at info, and a failed dial as a warning', async (t) => {
      const lines: Array<{ level: string, obj: Record<string, unknown> }> = []
      const logger: RelayLogger = {
        debug: (o) => lines.push({ level: 'debug', obj: o as Record<string, unknown> }),
        info: (o) => lines.push({ level: 'info', obj: o as Record<string, unknown> }),
        warn: (o) => lines.push({ level: 'warn', obj: o as Record<string, unknown> }),
        error: (o) => lines.push({ level: 'error', obj: o as Record<string, unknown> }),
      }
      const dead = { min: gw.port, max: 65535, extra: [] }
      const r = await relayWith(t, { logger, ports: dead, connectTimeoutMs: 1000 })
      await roundTrip(r.address.port, Buffer.from('x'))
      const s = connect({ host: '127.0.0.1', port: r.address.port })
      s.on('error', () => {})
      await once(s, 'connect')
      s.write(Buffer.concat([encodeAuth(token), encodeConnect({ address: gw.host, port: 65000 })]))
      await new Promise((resolve) => s.once('close', resolve))
      await waitFor(() => lines.some((l) => l.level === 'warn'), 'lines.some((l) => l.level === warn)', 3000)
      const ok = lines.find((l) => l.obj.outcome === 'ok')
      t.match(ok?.obj, { dst: `${gw.host}:${gw.port}`, src: '10.9.8.7:4242', up: 1, down: 1, end: 'closed', path: 'native' })
      const warn = lines.find((l) => l.level === 'warn')
      t.match(warn?.obj, { outcome: 'unreachable', dst: `${gw.host}:65000`, detail: 'ECONNREFUSED' })
      t.equal(r.counters.dialFailed, 1)
    })

    t.test('the connection cap covers hand-backs: MUX carriers past it are reset', async (t) => {
      const r = await relayWith(t, { maxConnections: 2 })
      const socks = []
      const resets: boolean[] = []
      // One after another (each reached the relay before the next connects).
      // Past the cap a carrier is reset by the lane at accept, or by server.ts
      // when its hand-back finds JS at the cap: either way, in order.
      for (let i = 0; i < 4; i++) {
        const s = connect({ host: '127.0.0.1', port: r.address.port })
        const k = i
        resets[k] = false
        s.on('error', (e: NodeJS.ErrnoException) => { if (e.code === 'ECONNRESET') resets[k] = true })
        t.teardown(() => { s.destroy() })
        s.write(Buffer.concat([encodeAuth(token), Buffer.from([3, 0])]))
        socks.push(s)
        await waitFor(() => r.counters.accepted === i + 1, 'the carrier reached the relay', 3000)
      }
      await waitFor(() => resets.filter(Boolean).length === 2, 'two carriers reset', 3000)
      t.same(resets, [false, false, true, true], 'the first two stay, the rest are reset')
      t.equal(r.counters.refusedBusy, 2)
      t.equal(r.counters.active, 2)
    })

    t.test('TCP keepalive on both of a spliced pair\'s sockets, as server.ts sets it', async (t) => {
      const r = await relayWith(t)
      const s = connect({ host: '127.0.0.1', port: r.address.port, allowHalfOpen: true })
      s.on('error', () => {})
      t.teardown(() => { s.destroy() })
      await once(s, 'connect')
      s.write(Buffer.concat([encodeAuth(token), encodeConnect({ address: gw.host, port: gw.port }), Buffer.from('hi')]))
      await once(s, 'data')
      const ss = (filter: string): string => execFileSync('ss', ['-tnoH', 'state', 'established', filter], { encoding: 'utf8' })
      const fromHost = ss(`( sport = :${r.address.port} )`)
      const toNode = ss(`( dport = :${gw.port} )`)
      t.match(fromHost, /keepalive/, 'the host side')
      t.match(toNode, /keepalive/, 'the node side')
    })

    t.test('close() with a hand-back on its way: the connection is served or closed, never left open', async (t) => {
      // A live MUX carrier is spliced: close() waits for it up to the drain timeout, as on the JS path.
      const r = await relayWith(t, { drainTimeoutMs: 300 })
      const s = connect({ host: '127.0.0.1', port: r.address.port })
      s.on('error', () => {})
      await once(s, 'connect')
      s.write(Buffer.concat([encodeAuth(token), Buffer.from([3, 0])]))
      // Listening before close(): the connection may end before close() resolves.
      const ended = new Promise((resolve) => s.once('close', () => resolve(true)))
      await new Promise((resolve) => setTimeout(resolve, 2))
      await r.close()
      const closed = await Promise.race([ended, new Promise((resolve) => setTimeout(() => resolve(false), 3000))])
      t.equal(closed, true, 'the client sees its connection end')
    })

    t.test('close(): idle pooled connections end, a spliced one finishes its transfer', async (t) => {
      const r = await relayWith(t)
      const d = new RelayDialer({ host: '127.0.0.1', port: r.address.port, token, poolSize: 3, transport: 'pool', name: 'c' })
      t.teardown(async () => { await d.close() })
      await waitFor(() => d.stats().idle >= 2, 'd.stats().idle >= 2', 3000)
      const s = await d.dial({ host: gw.host, port: gw.port, timeoutMs: 3000 })
      s.write('before ')
      const closing = r.close()
      await new Promise((resolve) => setTimeout(resolve, 100))
      s.end('after')
      t.equal((await readAll(s)).toString(), 'before after', 'the spliced connection finished')
      await closing
      t.equal(r.counters.active, 0)
      const late = connect({ host: '127.0.0.1', port: r.address.port })
      const err = await new Promise<NodeJS.ErrnoException>((resolve) => late.once('error', resolve))
      t.equal(err.code, 'ECONNREFUSED', 'no longer accepting')
    })
  }
}

