// Half-close is proxied in each direction.
import t from 'tap'
import { once } from 'node:events'
import { dial, l4, readAll, startProxy, startServer, upstream } from '../support/net.js'

t.test('client ends its write side; the backend still answers; the client gets all of it', async (t) => {
  const be = await startServer((s) => {
    const chunks: Buffer[] = []
    s.on('data', (d: Buffer) => chunks.push(d))
    s.on('end', () => {
      // Answer only after the client's FIN arrived.
      const req = Buffer.concat(chunks).toString()
      s.write('got:' + req + '\n')
      setTimeout(() => s.end('bye\n'), 50)
    })
  })
  t.teardown(() => be.close())
  const px = await startProxy([l4(upstream('u', be.port))])
  t.teardown(() => px.close())
  const c = await dial(px.port, px.host)
  const all = readAll(c)
  c.end('request')
  t.equal((await all).toString(), 'got:request\nbye\n')
})

t.test('backend ends its write side; the client can still send; the backend gets all of it', async (t) => {
  let received: Promise<Buffer> | undefined
  const be = await startServer((s) => {
    s.end('server-done\n')
    received = readAll(s)
  })
  t.teardown(() => be.close())
  const px = await startProxy([l4(upstream('u', be.port))])
  t.teardown(() => px.close())
  const c = await dial(px.port, px.host)
  const chunks: Buffer[] = []
  c.on('data', (d: Buffer) => chunks.push(d))
  await once(c, 'end')
  t.equal(Buffer.concat(chunks).toString(), 'server-done\n')
  // The client keeps writing after the backend's FIN.
  for (let i = 0; i < 10; i++) c.write(`late-${i};`)
  c.end()
  const got = await (received as Promise<Buffer>)
  t.equal(got.toString(), Array.from({ length: 10 }, (_, i) => `late-${i};`).join(''))
})
