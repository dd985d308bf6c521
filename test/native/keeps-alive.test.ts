// Paused sockets do not keep Node's event loop alive, so a live native pair
// must: a process whose only remaining work is one spliced pair stays up
// until that pair ends, delivers its done, and then exits by itself.
import t from 'tap'
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { SKIP, collect, connect, startBackend, waitFor, within, sleep } from './fixtures/harness.js'

const child = fileURLToPath(new URL('./fixtures/lone-pair-child.js', import.meta.url))

t.test('a live pair keeps the process alive until done', { skip: SKIP }, async (t) => {
  const backend = await startBackend(t, (s) => {
    s.on('data', (d: Buffer) => s.write(d))
    s.on('end', () => s.end())
  })
  const proc = spawn(process.execPath, [child, String(backend.port)], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
    await within(exited, 5000, 'child exit').catch(() => {})
  })
  const out: string[] = []
  createInterface({ input: proc.stdout! }).on('line', (l) => out.push(l))
  await waitFor(() => out.some((l) => l.startsWith('listening ')), 'child to listen', 10_000)
  const port = Number(out.find((l) => l.startsWith('listening '))!.split(' ')[1])

  const client = await connect(port)
  t.teardown(() => client.destroy())
  const got = collect(client, true)
  client.write('one;')
  await sleep(500)  // the child has nothing but the pair now
  t.equal(proc.exitCode, null, 'still running with a live pair')
  client.end('two;')
  await within(got.done, 5000, 'echo')
  t.equal(got.state.text(), 'one;two;')
  t.equal(await within(exited, 5000, 'child exits by itself'), 0)
  const done = out.find((l) => l.startsWith('done '))
  t.ok(done, 'done was delivered before exit')
  t.same(JSON.parse(done!.slice(5)), { aToB: 8, bToA: 8, cause: 'eof' })
})
