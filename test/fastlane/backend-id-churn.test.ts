// Issue 15 bug 2: the lane numbers backends (native arrays are indexed by the
// number) and never gave a number back, so a long-lived `up` whose Services'
// endpoints churn ran out after 65,536: laneSetBackends threw, from apply and
// from the lane's timer (an uncaught exception: the process died). This
// drives the same path as `up` does (ListenerManager.apply on every table the
// controller computes) through more than 65,536 distinct backends, then
// checks the listener still serves on the lane.
import t from 'tap'
import { dial, readAll, startServer } from '../support/net.js'
import type { ListenerSpec, UpstreamSpec } from '../../src/routing/types.js'
import { laneSkip, startLaneProxy } from './lane-proxy.js'

const skip = laneSkip()
const PER_TABLE = 1000
const TABLES = 70 // 70,000 distinct backends in all

function churned (round: number): UpstreamSpec['endpoints'] {
  const out: Array<{ host: string, port: number }> = []
  // Nothing listens there: no connect is made to them (the test never dials while they are in rotation).
  for (let i = 0; i < PER_TABLE; i++) out.push({ host: `127.1.${round}.${(i % 250) + 1}`, port: 20000 + i })
  return out
}

t.test('backend numbers are recycled: churn past 65,536 backends keeps the lane working', { skip, timeout: 240_000 }, async (t) => {
  const a = await startServer((s) => { s.end('A') })
  t.teardown(() => a.close())
  const L = (endpoints: UpstreamSpec['endpoints']): ListenerSpec => ({ host: '127.0.0.1', port: 0, routes: [], default: { id: 'u', endpoints } })
  const px = await startLaneProxy([L([{ host: '127.0.0.1', port: a.port }])])
  t.teardown(() => px.close())
  const port = px.ports[0] as number
  const uncaught: unknown[] = []
  const onUncaught = (err: unknown): void => { uncaught.push(err) }
  process.on('uncaughtException', onUncaught)
  t.teardown(() => { process.off('uncaughtException', onUncaught) })
  for (let r = 0; r < TABLES; r++) {
    const res = await px.manager.apply({ version: r + 2, listeners: [L(churned(r))] })
    t.same(res.failed, [], `table ${r + 2} applied`)
    if (uncaught.length > 0) break
    // A turn of the loop between tables, as the controller's debounce gives: the lane's timer may run.
    await new Promise((resolve) => setImmediate(resolve))
  }
  t.same(uncaught.map(String), [], 'nothing thrown from a timer')
  await px.manager.apply({ version: TABLES + 2, listeners: [L([{ host: '127.0.0.1', port: a.port }])] })
  const l = px.manager.listeners.get('127.0.0.1:0')
  t.ok(l?.lane !== undefined && !l.lane.stopped, 'still on the lane')
  const c = await dial(port)
  c.end()
  t.equal((await readAll(c)).toString(), 'A', 'serves through the lane')
})
