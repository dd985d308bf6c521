// SIGTERM: stop accepting, let in-flight transfers finish within the drain
// time, then destroy what is left; exit 0.
import t from 'tap'
import { connect } from 'node:net'
import { once } from 'node:events'
import { hashAll, startServer, waitFor, writeRandom } from '../support/net.js'
import { startCli } from '../support/cli.js'

t.test('an in-flight transfer completes across SIGTERM, then the process exits 0', async (t) => {
  // 32 MiB, more than the socket buffers of both hops hold: with the client
  // not reading yet, the backend cannot finish writing, so the transfer is
  // certainly in flight when SIGTERM arrives.
  const SIZE = 32 * 1024 * 1024
  let sha: Promise<string> | undefined
  let sent = false
  const be = await startServer((s) => {
    s.once('data', () => {
      sha = writeRandom(s, SIZE, 64 * 1024)
      void sha.then(() => { sent = true })
    })
  })
  t.teardown(() => be.close())
  const px = await startCli(['proxy', '--listen', '127.0.0.1:0', '--backend', `127.0.0.1:${be.port}`, '--drain-timeout', '10000'])
  t.teardown(() => px.stop('SIGKILL'))
  const port = (px.listening[0] as { port: number }).port
  const c = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  await once(c, 'connect')
  c.write('go')
  await waitFor(() => sha !== undefined, 'the backend to start sending')
  px.child.kill('SIGTERM')
  // New connections are refused once draining started.
  const dial = (): Promise<string> => new Promise<string>((resolve) => {
    const n = connect({ port, host: '127.0.0.1' })
    n.once('connect', () => { n.destroy(); resolve('connected') })
    n.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
  })
  let last = ''
  await waitFor(async () => (last = await dial()) === 'ECONNREFUSED', () => `new connections refused after SIGTERM (last dial: ${last})`, 5000)
  t.equal(sent, false, 'the transfer was still in flight')
  const r = await hashAll(c)
  t.equal(r.bytes, SIZE)
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
  await waitFor(() => be.accepts === 1 && [...be.sockets].some((x) => x.bytesRead > 0), 'the backend to get the held connection\'s bytes')
  const start = Date.now()
  const closed = new Promise((resolve) => c.once('close', resolve))
  px.child.kill('SIGTERM')
  await closed
  const took = Date.now() - start
  t.ok(took >= 250 && took < 3000, `cut at the drain deadline (${took} ms)`)
  const exit = await px.exited
  t.ok(exit.code === 0 || exit.code === 1, `exited (${exit.code})`)
})
