// SIGTERM: stop accepting, let in-flight transfers finish within the drain
// time, then destroy what is left; exit 0.
import t from 'tap'
import { connect } from 'node:net'
import { once } from 'node:events'
import { createHash, randomBytes } from 'node:crypto'
import { hashAll, startServer, waitFor } from '../support/net.js'
import { startCli } from '../support/cli.js'

t.test('an in-flight transfer completes across SIGTERM, then the process exits 0', async (t) => {
  // The backend sends 1 MiB, then holds the other 31 MiB until SIGTERM has
  // been sent and new connections are refused: the transfer is in flight
  // across the drain by construction (loopback buffers here autotune up to
  // 32 MiB a socket, so a size alone cannot guarantee it).
  const SIZE = 32 * 1024 * 1024
  const HEAD = 1024 * 1024
  const data = randomBytes(SIZE)
  let release: () => void = () => {}
  const released = new Promise<void>((resolve) => { release = resolve })
  let started = false
  let sent = false
  const be = await startServer((s) => {
    s.once('data', () => {
      started = true
      s.write(data.subarray(0, HEAD))
      void released.then(() => { s.end(data.subarray(HEAD), () => { sent = true }) })
    })
  })
  t.teardown(() => be.close())
  const px = await startCli(['proxy', '--listen', '127.0.0.1:0', '--backend', `127.0.0.1:${be.port}`, '--drain-timeout', '10000'])
  t.teardown(() => px.stop('SIGKILL'))
  const port = (px.listening[0] as { port: number }).port
  const c = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  await once(c, 'connect')
  c.write('go')
  await waitFor(() => started, 'the backend to start sending')
  px.child.kill('SIGTERM')
  // New connections are refused once draining started.
  const dial = (): Promise<string> => new Promise<string>((resolve) => {
    const n = connect({ port, host: '127.0.0.1' })
    n.once('connect', () => { n.destroy(); resolve('connected') })
    n.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
  })
  let last = ''
  await waitFor(async () => (last = await dial()) === 'ECONNREFUSED', () => `new connections refused after SIGTERM (last dial: ${last})`, 5000)
  t.equal(px.child.exitCode, null, 'still running while the transfer is open')
  release()
  const r = await hashAll(c)
  t.ok(sent, 'the backend sent the rest after SIGTERM')
  t.equal(r.bytes, SIZE)
  t.equal(r.sha, createHash('sha256').update(data).digest('hex'), 'the in-flight transfer completed byte-exact')
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
