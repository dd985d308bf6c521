// Issue 15 bug 5: the kt_active_connections series of a removed listener was
// never deleted, so /metrics grew with every listener that ever existed. A
// removed listener's series stays while it drains open connections and goes
// once it has none.
import t from 'tap'
import { dial, l4, startServer, startProxy, upstream, waitFor } from '../support/net.js'

function activeSeries (text: string): string[] {
  return text.split('\n').filter((line) => line.startsWith('kt_active_connections{'))
}

t.test('a removed listener\'s gauge series goes once it has drained', async (t) => {
  const held: import('node:net').Socket[] = []
  const be = await startServer((s) => { held.push(s); s.write('hi') })
  t.teardown(() => be.close())
  const u = upstream('u', be.port)
  const a = l4(u)
  const b = l4(u)
  const px = await startProxy([a, b], { drainTimeoutMs: 5000 })
  t.teardown(() => px.close())
  const open = await dial(px.ports[1] as number, px.hosts[1])
  t.teardown(() => open.destroy())
  await new Promise((resolve) => open.once('data', resolve))
  const bName = `${px.hosts[1]}:${px.ports[1]}`
  t.equal(activeSeries(px.registry.render()).length, 2)
  await px.manager.apply({ version: 2, listeners: [a] })
  t.ok(activeSeries(px.registry.render()).some((l) => l.includes(bName) && l.endsWith(' 1')), 'draining: still reported with its open connection')
  open.destroy()
  for (const s of held) s.destroy()
  let last: string[] = []
  await waitFor(() => { last = activeSeries(px.registry.render()); return last.length === 1 }, 'the removed listener\'s series to go', 5000)
  t.notOk(last.some((l) => l.includes(bName)), `only the kept listener is left: ${last.join(' | ')}`)
})

t.test('listener churn does not grow /metrics', async (t) => {
  const be = await startServer((s) => { s.end() })
  t.teardown(() => be.close())
  const u = upstream('u', be.port)
  const keep = l4(u)
  const px = await startProxy([keep])
  t.teardown(() => px.close())
  for (let v = 2; v < 22; v++) {
    await px.manager.apply({ version: v, listeners: [keep, l4(u)] })
    px.registry.render()
  }
  await px.manager.apply({ version: 22, listeners: [keep] })
  t.equal(activeSeries(px.registry.render()).length, 1, 'one series for the one listener left')
})
