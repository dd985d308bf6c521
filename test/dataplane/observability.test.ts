// One access-log line per connection at close; Prometheus metrics; nothing per chunk.
import t from 'tap'
import { connect } from 'node:net'
import { once } from 'node:events'
import { readAll, sleep, startEcho } from '../support/net.js'
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
  await sleep(300)
  const access = px.stderr.map((l) => { try { return JSON.parse(l) } catch { return undefined } }).filter((o) => o?.module === 'access')
  t.equal(access.length, 3, 'exactly one access line per connection (none per chunk)')
  const a = access[0]
  t.equal(a.listener, `127.0.0.1:${port}`)
  t.equal(a.backend, `127.0.0.1:${echo.port}`)
  t.equal(a.bytesIn, 50_000)
  t.equal(a.bytesOut, 50_000)
  t.equal(a.cause, 'eof')
  t.type(a.ms, 'number')
  const res = await fetch(`http://127.0.0.1:${mport}/metrics`)
  const text = await res.text()
  t.match(text, new RegExp(`kt_connections_total\\{listener="127.0.0.1:${port}",outcome="eof"\\} 3`))
  t.match(text, new RegExp(`kt_bytes_total\\{direction="client_to_upstream",listener="127.0.0.1:${port}"\\} 150000`))
  t.match(text, /# TYPE kt_upstream_connect_errors_total counter/)
  t.match(text, new RegExp(`kt_active_connections\\{listener="127.0.0.1:${port}"\\} 0`))
})
