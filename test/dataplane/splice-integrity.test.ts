// Byte-exact splicing in both directions, with backpressure.
import t from 'tap'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { dial, hashAll, l4, startProxy, startServer, upstream, writeRandom } from '../support/net.js'

const MiB = 1024 * 1024

t.test('64 MiB each way at once, sha256-checked', async (t) => {
  // The backend hashes what it receives and sends its own 64 MiB back.
  let backendGot: Promise<{ sha: string, bytes: number }> | undefined
  let backendSent: Promise<string> | undefined
  const be = await startServer((s) => {
    backendGot = hashAll(s)
    backendSent = writeRandom(s, 64 * MiB)
  })
  t.teardown(() => be.close())
  const px = await startProxy([l4(upstream('u', be.port))])
  t.teardown(() => px.close())
  const c = await dial(px.port, px.host)
  const clientGot = hashAll(c)
  const clientSent = await writeRandom(c, 64 * MiB)
  const got = await clientGot
  t.equal(got.bytes, 64 * MiB, 'client received 64 MiB')
  t.equal(got.sha, await backendSent, 'backend->client bytes are identical')
  const bg = await (backendGot as Promise<{ sha: string, bytes: number }>)
  t.equal(bg.bytes, 64 * MiB, 'backend received 64 MiB')
  t.equal(bg.sha, clientSent, 'client->backend bytes are identical')
})

t.test('a writer-first backend works', async (t) => {
  const be = await startServer((s) => { s.end('hello first\n') })
  t.teardown(() => be.close())
  const px = await startProxy([l4(upstream('u', be.port))])
  t.teardown(() => px.close())
  const c = await dial(px.port, px.host)
  const chunks: Buffer[] = []
  c.on('data', (d: Buffer) => chunks.push(d))
  await once(c, 'end')
  t.equal(Buffer.concat(chunks).toString(), 'hello first\n')
  c.end()
})

t.test('small request/response keeps order across many round trips', async (t) => {
  const be = await startServer((s) => { s.pipe(s) })
  t.teardown(() => be.close())
  const px = await startProxy([l4(upstream('u', be.port))])
  t.teardown(() => px.close())
  const c = await dial(px.port, px.host)
  const h1 = createHash('sha256')
  const h2 = createHash('sha256')
  let pending = ''
  for (let i = 0; i < 500; i++) {
    const msg = `msg-${i}-${'x'.repeat(i % 97)}\n`
    h1.update(msg)
    c.write(msg)
    while (!pending.includes('\n')) {
      const [d] = await once(c, 'data') as [Buffer]
      pending += d.toString()
    }
    const nl = pending.indexOf('\n')
    h2.update(pending.slice(0, nl + 1))
    pending = pending.slice(nl + 1)
  }
  t.equal(h2.digest('hex'), h1.digest('hex'))
  c.end()
})
