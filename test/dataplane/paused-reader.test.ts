// A reader paused while the peer sends 50 MiB keeps the proxy's memory bounded.
import t from 'tap'
import { connect } from 'node:net'
import { once } from 'node:events'
import { sleep, startServer, waitFor } from '../support/net.js'
import { startCli } from '../support/cli.js'

const MiB = 1024 * 1024

t.test('paused client, backend sends 50 MiB: proxy RSS stays bounded', async (t) => {
  let sent = 0
  let writerDone = false
  let blockedAt: number | undefined // set while the backend waits for 'drain'
  const block = Buffer.alloc(64 * 1024, 7)
  const be = await startServer((s) => {
    const pump = (): void => {
      while (sent < 50 * MiB) {
        sent += block.length
        if (!s.write(block)) { blockedAt = Date.now(); s.once('drain', () => { blockedAt = undefined; pump() }); return }
      }
      writerDone = true
      s.end()
    }
    pump()
  })
  t.teardown(() => be.close())
  const px = await startCli(['proxy', '--listen', '127.0.0.1:0', '--backend', `127.0.0.1:${be.port}`, '--log-level', 'warn'])
  t.teardown(() => px.stop('SIGKILL'))
  await sleep(200) // RSS after start-up settles: the baseline for the growth bound
  const rss0 = px.rssKiB()
  const c = connect({ port: (px.listening[0] as { port: number }).port, host: '127.0.0.1' })
  await once(c, 'connect')
  c.pause()
  // Until the path is full: the backend has been held back (waiting for
  // 'drain') for 300 ms without a break.
  await waitFor(() => blockedAt !== undefined && Date.now() - blockedAt >= 300, () => `the backend held back by backpressure (sent ${(sent / MiB).toFixed(1)} MiB)`, 15_000)
  const rssPaused = px.rssKiB()
  t.ok(sent < 50 * MiB, `backend is held back by backpressure (sent ${(sent / MiB).toFixed(1)} MiB of 50)`)
  const growth = rssPaused - rss0
  t.ok(growth < 16 * 1024, `proxy RSS grew by ${growth} KiB while paused (bound 16 MiB)`)
  // Now drain everything: all 50 MiB arrive.
  let got = 0
  c.on('data', (d: Buffer) => { got += d.length })
  c.resume()
  await once(c, 'end')
  t.equal(got, 50 * MiB, 'all bytes delivered after resume')
  t.ok(writerDone)
  c.end()
})
