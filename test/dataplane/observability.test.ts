// One access-log line per connection at close; Prometheus metrics; nothing per chunk.
import t from 'tap'
import { connect } from 'node:net'
import { once } from 'node:events'
import { readAll, sleep, startEcho, waitFor } from '../support/net.js'
import { startCli } from '../support/cli.js'

t.test('access log and metrics', async (t) => {
  const echo = await startEcho()
  t.teardown(() => echo.close())
  const px = await startCli(['proxy', '--listen', '127.0.0.1:0', '--backend', `127.0.0.1:${echo.port}`, '--metrics', '127.0.0.1:0'])
  t.teardown(() => px.stop('SIGKILL'))
  const port = (px.listening[0] as { port: number }).port
  const metricsLine = px.stdout.find((l) => l.startsWith('metrics '))
  t.ok(metricsLine, 'prints the metrics address')
  const mport = Number(metricsLine?.split(':').pop())
  // 3 connections, each with many chunks.
  for (let i = 0; i < 3; i++) {
    const c = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
    await once(c, 'connect')
    const all = readAll(c)
    for (let j = 0; j < 50; j++) { c.write(Buffer.alloc(1000, j)); await sleep(1) }
    c.end()
    t.equal((await all).length, 50_000)
  }
  // The client sees EOF before the proxy's pair has closed both ways and
  // logged (on the native lane, a pair is finished, logged and counted only
  // once both directions are closed, and its counters are folded in every
  // 100 ms); the lines also cross a pipe. So poll for them, bounded, instead
  // of a fixed sleep; a line per chunk would still show as more than 3.
  const accessLines = () => px.stderr.map((l) => { try { return JSON.parse(l) } catch { return undefined } }).filter((o) => o?.module === 'access')
  await waitFor(() => accessLines().length >= 3, 'three access lines', 5000).catch(() => {})
  const access = accessLines()
  t.equal(access.length, 3, 'exactly one access line per connection (none per chunk)')
  const a = access[0]
  t.equal(a.listener, `127.0.0.1:${port}`)
  t.equal(a.backend, `127.0.0.1:${echo.port}`)
  t.equal(a.bytesIn, 50_000)
  t.equal(a.bytesOut, 50_000)
  t.equal(a.cause, 'eof')
  t.type(a.ms, 'number')
  // Scrape until the three pairs are counted (bounded); the values stay exact.
  const eof = new RegExp(`kt_connections_total\\{listener="127.0.0.1:${port}",outcome="eof"\\} 3\\n`)
  const bytes = new RegExp(`kt_bytes_total\\{direction="client_to_upstream",listener="127.0.0.1:${port}"\\} 150000\\n`)
  const idle = new RegExp(`kt_active_connections\\{listener="127.0.0.1:${port}"\\} 0\\n`)
  let text = ''
  for (let i = 0; i < 50; i++) {
    text = await (await fetch(`http://127.0.0.1:${mport}/metrics`)).text()
    if (eof.test(text) && bytes.test(text) && idle.test(text)) break
    await sleep(100)
  }
  t.match(text, eof)
  t.match(text, bytes)
  t.match(text, /# TYPE kt_upstream_connect_errors_total counter/)
  t.match(text, idle)
})
