// Issue 15 bug 4: when a lane listener stops being eligible (here a reload
// puts a PROXY-protocol upstream behind it) the socket is handed back to JS
// with listen({ fd }). If that listen fails, the failure was swallowed (the
// server's error handler ignores errors while not listening) after native had
// already stopped accepting: the port went dead, silently. Now native keeps
// accepting until JS listens, and a failed hand-back is logged with its code.
import t from 'tap'
import { closeSync, openSync } from 'node:fs'
import { dial, readAll, startServer } from '../support/net.js'
import type { ListenerSpec } from '../../src/routing/types.js'
import { laneSkip, startLaneProxy } from './lane-proxy.js'

const skip = laneSkip()

t.test('a failed hand-back to JS is reported and the port keeps serving', { skip }, async (t) => {
  const a = await startServer((s) => { s.end('A') })
  t.teardown(() => a.close())
  const u = { id: 'u', endpoints: [{ host: '127.0.0.1', port: a.port }] }
  const L: ListenerSpec = { host: '127.0.0.1', port: 0, routes: [], default: u }
  const px = await startLaneProxy([L])
  t.teardown(() => px.close())
  const port = px.ports[0] as number
  const l = px.manager.listeners.get('127.0.0.1:0')
  t.ok(l?.lane, 'on the lane')
  const lane = px.manager.lane
  if (lane === undefined || l === undefined) return
  // The next dup hands JS a descriptor listen() cannot use (a regular file): a real listen failure.
  // (The addon's functions are read-only: the lane gets a binding whose laneDupFd does that once.)
  const holder = lane as unknown as { binding: object }
  const real = holder.binding
  let handed = -1
  holder.binding = Object.create(real, {
    laneDupFd: { value: () => { holder.binding = real; handed = openSync(process.execPath, 'r'); return handed } },
  }) as object
  t.teardown(() => { holder.binding = real; try { closeSync(handed) } catch { /* closed by the data plane */ } })
  await px.manager.apply({ version: 2, listeners: [{ ...L, default: { ...u, id: 'pp', proxyProtocol: 'v1' } }] })
  const deadline = Date.now() + 5000
  let logged: Record<string, unknown> | undefined
  while (logged === undefined && Date.now() < deadline) {
    logged = px.logs.find((r) => r['level'] === 50 && String(r['msg']).includes('hand the listener back'))
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  t.ok(logged, 'the failed hand-back is logged as an error')
  t.type(logged?.['code'], 'string', 'with a code')
  // Still served (by the lane, with the config it had): the port is not dead.
  const c = await dial(port)
  c.end()
  t.equal((await readAll(c)).toString(), 'A', 'the port still serves')
})
