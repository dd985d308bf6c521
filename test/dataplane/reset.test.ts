// RST propagation both ways; a clean end never becomes a reset.
import t from 'tap'
import { once } from 'node:events'
import type { Socket } from 'node:net'
import { closeKind, dial, l4, startProxy, startServer, upstream, waitFor } from '../support/net.js'

t.test('a backend reset shows up as a reset at the client', async (t) => {
  const be = await startServer((s) => {
    s.once('data', () => { s.resetAndDestroy() })
  })
  t.teardown(() => be.close())
  const px = await startProxy([l4(upstream('u', be.port))])
  t.teardown(() => px.close())
  const c = await dial(px.port, px.host)
  const kind = closeKind(c)
  c.write('trigger')
  t.equal(await kind, 'reset')
  await waitFor(() => px.registry.counter('kt_connections_total', '').total({ outcome: 'reset_upstream' }) === 1, 'reset_upstream counted', 2000)
})

t.test('a client reset shows up as a reset at the backend', async (t) => {
  let backendKind: Promise<string> | undefined
  let onBackend: () => void = () => {}
  const connected = new Promise<void>((resolve) => { onBackend = resolve })
  const be = await startServer((s: Socket) => {
    backendKind = closeKind(s)
    s.once('data', (d: Buffer) => { s.write(d); onBackend() })
  })
  t.teardown(() => be.close())
  const px = await startProxy([l4(upstream('u', be.port))])
  t.teardown(() => px.close())
  const c = await dial(px.port, px.host)
  c.write('x')
  await connected
  // Reset once the splice is established (the echo came back through it).
  await once(c, 'data')
  c.resetAndDestroy()
  t.equal(await (backendKind as Promise<string>), 'reset')
})

t.test('a clean end stays clean on both sides', async (t) => {
  let backendKind: Promise<string> | undefined
  const be = await startServer((s) => {
    backendKind = closeKind(s)
    s.on('end', () => s.end())
  })
  t.teardown(() => be.close())
  const px = await startProxy([l4(upstream('u', be.port))])
  t.teardown(() => px.close())
  const c = await dial(px.port, px.host)
  const kind = closeKind(c)
  c.write('hello')
  c.end()
  t.equal(await kind, 'end')
  t.equal(await (backendKind as Promise<string>), 'end')
  await waitFor(() => px.registry.counter('kt_connections_total', '').total({ outcome: 'eof' }) === 1, 'eof counted', 2000)
  t.equal(px.registry.counter('kt_connections_total', '').total({ outcome: 'reset_upstream' }), 0)
})
