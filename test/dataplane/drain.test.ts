// SIGTERM: stop accepting, let in-flight transfers finish within the drain
// time, then destroy what is left; exit 0.
import t from 'tap'
import { connect } from 'node:net'
import { once } from 'node:events'
import { hashAll, sleep, startServer, writeRandom } from '../support/net.js'
import { startCli } from '../support/cli.js'

t.test('an in-flight transfer completes across SIGTERM, then the process exits 0', async (t) => {
  let sha: Promise<string> | undefined
  const be = await startServer((s) => {
    s.once('data', () => {
      // A slow 8 MiB download: ~1 s.
      sha = (async () => {
        const h = await writeRandom(s, 8 * 1024 * 1024, 64 * 1024)
        return h
      })()
    })
  })
  t.teardown(() => be.close())
  const px = await startCli(['proxy', '--listen', '127.0.0.1:0', '--backend', `127.0.0.1:${be.port}`, '--drain-timeout', '5000'])
  t.teardown(() => px.stop('SIGKILL'))
  const port = (px.listening[0] as { port: number }).port
  const c = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  await once(c, 'connect')
  const got = hashAll(c)
  c.write('go')
  await sleep(50)
  px.child.kill('SIGTERM')
  // New connections are refused once draining started.
  await sleep(200)
  const refused = await new Promise<string>((resolve) => {
    const n = connect({ port, host: '127.0.0.1' })
    n.once('connect', () => { n.destroy(); resolve('connected') })
    n.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
  })
  t.equal(refused, 'ECONNREFUSED', 'stopped accepting')
  const r = await got
  t.equal(r.bytes, 8 * 1024 * 1024)
  t.equal(r.sha, await (sha as Promise<string>), 'the in-flight transfer completed byte-exact')
  c.end()
  const exit = await px.exited
  t.equal(exit.code, 0, 'exit status 0')
})

t.test('connections still open at the drain deadline are destroyed', async (t) => {
  const be = await startServer((s) => { s.on('data', () => {}) })
  t.teardown(() => be.close())
  const px = await startCli(['proxy', '--listen', '127.0.0.1:0', '--backend', `127.0.0.1:${be.port}`, '--drain-timeout', '300'])
  t.teardown(() => px.stop('SIGKILL'))
  const c = connect({ port: (px.listening[0] as { port: number }).port, host: '127.0.0.1' })
  await once(c, 'connect')
  c.write('hold')
  c.on('error', () => {})
  await sleep(100)
  const start = Date.now()
  const closed = new Promise((resolve) => c.once('close', resolve))
  px.child.kill('SIGTERM')
  await closed
  const took = Date.now() - start
  t.ok(took >= 250 && took < 3000, `cut at the drain deadline (${took} ms)`)
  const exit = await px.exited
  t.ok(exit.code === 0 || exit.code === 1, `exited (${exit.code})`)
})
