// Routed listeners (SNI / Host) on the native accept lane (issue #3 benchmark
// target): native accepts, reads the first flight, parses it in C, matches the
// routes and connects, with no JS per connection. The issue's end-to-end cases
// (two TLS backends by SNI with curl, openssl and node:tls; Host routing with
// curl; uppercase and trailing-dot names; no SNI to the default; a slowloris
// cut at the deadline while others are served; no match and no default closed
// and counted), each with proof that the lane carried it: the listener is the
// lane's, JS holds no connection, and the lane's own counters moved.
import t, { type Test } from 'tap'
import { connect as tlsConnect } from 'node:tls'
import { createServer, type Server } from 'node:http'
import { once } from 'node:events'
import { connect, type AddressInfo, type Socket } from 'node:net'
import { createHash, randomBytes } from 'node:crypto'
import { closeKind, dial, readAll, startServer, waitFor } from '../support/net.js'
import { startTlsBackend, type TlsBackend } from '../support/tls.js'
import type { ListenerSpec, UpstreamSpec } from '../../src/routing/types.js'
import { laneSkip, startLaneProxy, type LaneProxy } from './lane-proxy.js'
import { runTool } from '../support/tool-env.js'

// curl and openssl without the sanitizer runtime under test:asan / test:tsan.
const run = runTool
const skip = laneSkip()

/** The listener is on the lane, not stopped, and JS accepted nothing on it. */
function onLane (t: Test, px: LaneProxy, key = '127.0.0.1:0'): void {
  const l = px.manager.listeners.get(key)
  t.ok(l?.lane !== undefined && !l.lane.stopped, `${key} is carried by the native lane`)
  t.equal(l?.server.listening, false, 'the JS server does not listen')
  t.equal(l?.active.size, 0, 'JS holds no connection')
}

function laneStat (px: LaneProxy, key = '127.0.0.1:0'): Float64Array {
  const ll = px.manager.listeners.get(key)?.lane
  ll?.sync()
  return ll?.stats ?? new Float64Array(40)
}

const decisions = (px: LaneProxy) => px.registry.counter('kt_route_decisions_total', '')
const conns = (px: LaneProxy) => px.registry.counter('kt_connections_total', '')

t.test('SNI routing on the lane: curl, openssl s_client and node:tls reach each TLS backend by name', { skip }, async (t) => {
  const a = await startTlsBackend('a.example.test')
  const b = await startTlsBackend('b.example.test')
  const wild = await startTlsBackend('x.apps.test')
  const def = await startTlsBackend('default.test')
  t.teardown(() => Promise.all([a, b, wild, def].map((x: TlsBackend) => x.close())))
  const up = (x: TlsBackend): UpstreamSpec => ({ id: x.cn, endpoints: [{ host: '127.0.0.1', port: x.port }] })
  const px = await startLaneProxy([{
    host: '127.0.0.1',
    port: 0,
    routes: [
      { names: ['a.example.test'], upstream: up(a) },
      { names: ['b.example.test'], upstream: up(b) },
      { names: ['*.apps.test'], upstream: up(wild) },
    ],
    default: up(def),
  }], { accessLog: true })
  t.teardown(() => px.close())
  const port = px.ports[0] as number
  onLane(t, px)

  for (const x of [a, b]) {
    const r = await run('curl', ['-sk', '-v', '--max-time', '10', '--resolve', `${x.cn}:${port}:127.0.0.1`, `https://${x.cn}:${port}/`])
    t.equal(r.stdout, `backend=${x.cn}\n`, `curl reaches ${x.cn}`)
    t.match(r.stderr, new RegExp(`subject: CN=${x.cn.replace(/\./g, '\\.')}`), `curl sees ${x.cn}'s certificate`)
  }
  const sclient = async (servername: string | undefined): Promise<string> => {
    const args = ['s_client', '-connect', `127.0.0.1:${port}`, '-brief']
    if (servername !== undefined) args.push('-servername', servername)
    else args.push('-noservername')
    const r = await run('sh', ['-c', `printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' | openssl ${args.map((x) => `'${x}'`).join(' ')} 2>&1`], { timeout: 10_000 })
    return r.stdout
  }
  t.match(await sclient('A.EXAMPLE.TEST'), /Peer certificate: CN = a\.example\.test/, 'uppercase SNI routes')
  t.match(await sclient('b.example.test.'), /Peer certificate: CN = b\.example\.test/, 'trailing-dot SNI routes')
  t.match(await sclient(undefined), /Peer certificate: CN = default\.test/, 'no SNI goes to the default')
  t.match(await sclient('unknown.test'), /Peer certificate: CN = default\.test/, 'an unknown name goes to the default')
  const nodeTls = (servername: string): Promise<string> => new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
      resolve((s.getPeerCertificate().subject as { CN: string }).CN)
      s.end()
    })
    s.on('error', reject)
  })
  t.equal(await nodeTls('one.apps.test'), 'x.apps.test', '*.apps.test matches one label')
  t.equal(await nodeTls('two.one.apps.test'), 'x.apps.test', '*.apps.test matches two labels')
  t.equal(await nodeTls('apps.test'), 'default.test', '*.apps.test does not match apps.test')

  // Both folded in (every 100 ms): sni reached 6 before the last connection's default decision.
  await waitFor(() => decisions(px).total({ outcome: 'sni' }) === 6 && decisions(px).total({ outcome: 'default' }) === 3, 'sni and default decisions counted', 3000)
  t.equal(decisions(px).total({ outcome: 'default' }), 3, 'default decisions counted (no SNI, unknown, bare suffix)')
  onLane(t, px)
  t.equal(laneStat(px)[0], 9, 'the lane accepted all nine connections')
  // The access log names the route and the client's name, as the JS path does.
  await waitFor(() => px.logs.filter((l) => l['msg'] === 'connection closed').length === 9, 'nine access-log lines', 3000)
  const lines = px.logs.filter((l) => l['msg'] === 'connection closed')
  const byName = lines.find((l) => l['name'] === 'two.one.apps.test')
  t.equal(byName?.['route'], 'sni')
  t.equal(byName?.['upstream'], 'x.apps.test')
  const noSni = lines.filter((l) => l['route'] === 'default' && l['name'] === undefined)
  t.equal(noSni.length, 1, 'the no-SNI connection logs route default without a name')
  t.equal(noSni[0]?.['upstream'], 'default.test')
})

async function named (name: string): Promise<{ server: Server, port: number }> {
  const server = createServer((req, res) => { res.end(`${name} saw host=${req.headers.host ?? '-'} url=${req.url ?? ''}\n`) })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { server, port: (server.address() as AddressInfo).port }
}

t.test('Host routing on the lane with curl', { skip }, async (t) => {
  const web = await named('web')
  const api = await named('api')
  const def = await named('default')
  t.teardown(() => { for (const s of [web, api, def]) s.server.close() })
  const px = await startLaneProxy([{
    host: '127.0.0.1',
    port: 0,
    routes: [
      { names: ['web.default.localhost'], upstream: { id: 'web', endpoints: [{ host: '127.0.0.1', port: web.port }] } },
      { names: ['api.test'], upstream: { id: 'api', endpoints: [{ host: '127.0.0.1', port: api.port }] } },
    ],
    default: { id: 'def', endpoints: [{ host: '127.0.0.1', port: def.port }] },
  }])
  t.teardown(() => px.close())
  onLane(t, px)
  const url = `http://127.0.0.1:${px.ports[0] as number}/`
  const curl = async (...args: string[]): Promise<string> => (await run('curl', ['-s', '--max-time', '10', ...args])).stdout
  t.match(await curl('-H', 'Host: web.default.localhost', url), /^web /, 'Host header routes')
  t.match(await curl('-H', `Host: API.TEST:${px.ports[0] as number}`, url), /^api /, 'Host with a port and uppercase routes')
  t.match(await curl('-H', 'Host: api.test.', url), /^api /, 'trailing dot routes')
  t.match(await curl('-H', 'Host: nobody.test', url), /^default /, 'unknown host goes to the default')
  t.match(await curl('--http1.0', '-H', 'Host:', url), /^default /, 'HTTP/1.0 without Host goes to the default')
  t.match(await curl('--request-target', `http://api.test:${px.ports[0] as number}/abs`, '-H', 'Host: web.default.localhost', url), /^api .*url=http:\/\/api\.test/, 'absolute-form target wins')
  const both = await curl('-H', 'Host: web.default.localhost', url, '-H', 'Host: web.default.localhost', url)
  t.equal(both.match(/^web /gm)?.length, 2, 'keep-alive connection keeps its route')
  await waitFor(() => decisions(px).total({ outcome: 'host' }) === 5 && decisions(px).total({ outcome: 'default' }) === 2, 'host and default decisions counted', 3000)
  t.equal(decisions(px).total({ outcome: 'default' }), 2)
  t.equal(laneStat(px)[0], 7, 'the lane accepted all seven connections')
  onLane(t, px)
})

t.test('peeked bytes go upstream first, byte-exact, then the rest of a large upload and the reply', { skip }, async (t) => {
  const be = await startServer((s) => {
    const h = createHash('sha256')
    let n = 0
    s.on('data', (d: Buffer) => { h.update(d); n += d.length })
    s.on('end', () => { s.end(`${n} ${h.digest('hex')}`) })
  })
  t.teardown(() => be.close())
  const px = await startLaneProxy([{ host: '127.0.0.1', port: 0, routes: [{ names: ['up.test'], upstream: { id: 'up', endpoints: [{ host: '127.0.0.1', port: be.port }] } }] }])
  t.teardown(() => px.close())
  onLane(t, px)
  const head = Buffer.from('POST /x HTTP/1.1\r\nHost: up.test\r\nContent-Length: 3000000\r\n\r\n')
  const body = randomBytes(3_000_000)
  const c = await dial(px.ports[0] as number)
  // The head arrives in pieces, the first ones before the route can be decided.
  for (let i = 0; i < head.length; i += 7) { c.write(head.subarray(i, i + 7)); await new Promise((resolve) => setImmediate(resolve)) }
  c.end(body)
  const got = (await readAll(c)).toString()
  const want = createHash('sha256').update(head).update(body).digest('hex')
  t.equal(got, `${head.length + body.length} ${want}`, 'every byte arrived once, in order')
  // kt_lane_finished adds the outcome and then the byte counts, two separate
  // atomics: a fold can land between them, so wait for both (the byte count is
  // one add per pair, so once it shows it is whole; the equality stays exact).
  const bytesIn = (): number => px.registry.counter('kt_bytes_total', '').total({ direction: 'client_to_upstream' })
  await waitFor(() => { px.manager.lane?.sync(); return conns(px).total({ outcome: 'eof' }) === 1 && bytesIn() > 0 }, 'eof and its bytes counted', 3000)
  t.equal(px.registry.counter('kt_bytes_total', '').total({ direction: 'client_to_upstream' }), head.length + body.length, 'bytes in count the peeked head')
})

t.test('slowloris on the lane: cut at the absolute deadline while others are served; counted', { skip }, async (t) => {
  const be = await startServer((s) => { s.on('data', () => { s.end('ok\n') }) })
  t.teardown(() => be.close())
  const px = await startLaneProxy([{
    host: '127.0.0.1',
    port: 0,
    routes: [{ names: ['a.test'], upstream: { id: 'a', endpoints: [{ host: '127.0.0.1', port: be.port }] } }],
  }], { peekTimeoutMs: 800 })
  t.teardown(() => px.close())
  onLane(t, px)
  const port = px.ports[0] as number
  const slow = connect({ host: '127.0.0.1', port })
  await once(slow, 'connect')
  const slowEnd = closeKind(slow)
  const started = Date.now()
  const req = 'GET / HTTP/1.1\r\nHost: a.test\r\nX-Pad: ' + 'y'.repeat(200)
  let i = 0
  const iv = setInterval(() => { if (!slow.destroyed && i < req.length) slow.write(req[i++] as string) }, 100)
  t.teardown(() => clearInterval(iv))
  const c = await dial(port)
  c.end('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n')
  t.equal((await readAll(c)).toString(), 'ok\n', 'a normal client is served during the slowloris')
  const kind = await slowEnd
  const took = Date.now() - started
  clearInterval(iv)
  t.ok(took >= 700 && took < 2000, `cut at the deadline (${took} ms, ${kind})`)
  t.equal(kind, 'reset', 'closed with a reset, as the JS path')
  // The decision and the outcome are counted a moment apart on the worker: a 100 ms fold may fall in between.
  await waitFor(() => decisions(px).total({ outcome: 'peek_timeout' }) === 1 && conns(px).total({ outcome: 'peek_timeout' }) === 1, 'peek_timeout decision and outcome counted', 3000)
  t.equal(conns(px).total({ outcome: 'peek_timeout' }), 1, 'closed (no default route) and counted')
  t.equal(laneStat(px)[0], 2, 'both connections were the lane\'s')
  await waitFor(() => px.logs.some((l) => l['route'] === 'peek_timeout' && l['to'] === 'closed'), 'the peek timeout is logged', 3000)
})

t.test('with a default route, a peek timeout and a half-close before a decision go to the default', { skip }, async (t) => {
  const be = await startServer((s) => {
    let got = ''
    s.on('data', (d: Buffer) => { got += d.toString('latin1') })
    s.on('end', () => { s.end(`default got ${JSON.stringify(got)}\n`) })
    setTimeout(() => { if (got === '' && !s.destroyed) s.end('default\n') }, 200)
  })
  t.teardown(() => be.close())
  const px = await startLaneProxy([{
    host: '127.0.0.1',
    port: 0,
    routes: [{ names: ['a.test'], upstream: { id: 'a', endpoints: [{ host: '127.0.0.1', port: 1 }] } }],
    default: { id: 'd', endpoints: [{ host: '127.0.0.1', port: be.port }] },
  }], { peekTimeoutMs: 300 })
  t.teardown(() => px.close())
  onLane(t, px)
  // A server-speaks-first protocol: the client sends nothing.
  const c = await dial(px.ports[0] as number)
  t.equal((await readAll(c)).toString(), 'default\n', 'peek timeout goes to the default')
  c.end()
  // A partial head then FIN: the bytes and the FIN are forwarded to the default.
  const h = await dial(px.ports[0] as number)
  h.end('GET / HTTP/1.1\r\nHo')
  t.equal((await readAll(h)).toString(), 'default got "GET / HTTP/1.1\\r\\nHo"\n', 'half-closed before a decision: default, bytes and FIN forwarded')
  await waitFor(() => decisions(px).total({ outcome: 'peek_timeout' }) === 1 && decisions(px).total({ outcome: 'default' }) === 1, 'decisions counted', 3000)
})

t.test('no match and no default: closed with a reset and counted no_route; not TLS or HTTP likewise; too large', { skip }, async (t) => {
  const be = await startServer((s) => { s.end('a\n') })
  t.teardown(() => be.close())
  const spec: ListenerSpec = { host: '127.0.0.1', port: 0, routes: [{ names: ['a.test'], upstream: { id: 'a', endpoints: [{ host: '127.0.0.1', port: be.port }] } }] }
  const px = await startLaneProxy([spec], { accessLog: true })
  t.teardown(() => px.close())
  onLane(t, px)
  const port = px.ports[0] as number
  const send = async (bytes: Buffer | string): Promise<string> => {
    const c: Socket = await dial(port)
    const end = closeKind(c)
    c.write(bytes)
    return end
  }
  t.equal(await send('GET / HTTP/1.1\r\nHost: other.test\r\n\r\n'), 'reset', 'no match: reset')
  t.equal(await send('SSH-2.0-OpenSSH_9.2\r\n'), 'reset', 'not TLS or HTTP: reset')
  t.equal(await send(`GET / HTTP/1.1\r\nX: ${'y'.repeat(17_000)}\r\n\r\n`), 'reset', 'too large: reset')
  const ok = await dial(port)
  ok.end('GET / HTTP/1.1\r\nHost: A.TEST\r\n\r\n')
  t.equal((await readAll(ok)).toString(), 'a\n', 'a matching name is served')
  // Each pair is counted by whichever worker ran it, once it finished, which
  // may be after the client already saw the reset: wait for every outcome, not
  // just the last one sent (the equalities below stay exact).
  await waitFor(() => { px.manager.lane?.sync(); return conns(px).total({ outcome: 'too_large' }) === 1 && conns(px).total({ outcome: 'no_route' }) === 2 }, 'too_large and no_route outcomes counted', 3000)
  t.equal(decisions(px).total({ outcome: 'no_route' }), 1)
  t.equal(decisions(px).total({ outcome: 'not_tls_or_http' }), 1)
  t.equal(decisions(px).total({ outcome: 'too_large' }), 1)
  t.equal(decisions(px).total({ outcome: 'host' }), 1, 'an unmatched name counts as no_route, not host (as the JS path)')
  t.equal(conns(px).total({ outcome: 'no_route' }), 2, 'no match and not-TLS-or-HTTP close as no_route')
  await waitFor(() => px.logs.filter((l) => l['msg'] === 'connection closed').length === 4, 'access log lines', 3000)
  const noRoute = px.logs.find((l) => l['msg'] === 'connection closed' && l['name'] === 'other.test')
  t.equal(noRoute?.['route'], 'no_route')
  t.equal(noRoute?.['cause'], 'no_route')
  t.equal(noRoute?.['upstream'], undefined)
  t.equal(laneStat(px)[0], 4)
})

t.test('reload: routes added and removed on a kept listener are re-pushed without rebinding', { skip }, async (t) => {
  const a = await startServer((s) => { s.on('data', () => s.end('A')) })
  const b = await startServer((s) => { s.on('data', () => s.end('B')) })
  t.teardown(() => Promise.all([a.close(), b.close()]))
  const ua: UpstreamSpec = { id: 'a', endpoints: [{ host: '127.0.0.1', port: a.port }] }
  const ub: UpstreamSpec = { id: 'b', endpoints: [{ host: '127.0.0.1', port: b.port }] }
  // Starts as a plain L4 listener on the lane.
  const L: ListenerSpec = { host: '127.0.0.1', port: 0, routes: [], default: ua }
  const px = await startLaneProxy([L])
  t.teardown(() => px.close())
  const port = px.ports[0] as number
  const lane = px.manager.listeners.get('127.0.0.1:0')?.lane
  const get = async (host: string): Promise<string> => {
    const c = await dial(port)
    c.write(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`)
    return (await readAll(c)).toString()
  }
  t.equal(await get('b.test'), 'A', 'L4: everything to the default')
  await px.manager.apply({ version: 2, listeners: [{ ...L, routes: [{ names: ['b.test', '*.b.test'], upstream: ub }] }] })
  t.equal(px.manager.listeners.get('127.0.0.1:0')?.lane, lane, 'same lane listener: not rebound, not handed back')
  t.equal(await get('b.test'), 'B', 'route added: b.test to b')
  t.equal(await get('x.y.b.test'), 'B', 'wildcard added')
  t.equal(await get('c.test'), 'A', 'others to the default')
  await px.manager.apply({ version: 3, listeners: [{ ...L, routes: [{ names: ['c.test'], upstream: ub }] }] })
  t.equal(await get('b.test'), 'A', 'route removed')
  t.equal(await get('c.test'), 'B', 'new route')
  await px.manager.apply({ version: 4, listeners: [L] })
  t.equal(await get('c.test'), 'A', 'back to plain L4')
  t.equal(px.manager.listeners.get('127.0.0.1:0')?.lane, lane, 'still the same lane listener')
  onLane(t, px)
})
