// Issue 15 bug 1: the lane's threadsafe function at close. A worker decides to
// post a batch of records to JS under the ring's lock; laneClose releases the
// function. If the worker makes the call after unlocking, laneClose can
// release (and Node free) the function in between: a use-after-free on a
// worker thread. The test variant widens that window (a worker waits just
// before the call) and counts calls made after the release; the stress case
// closes lanes under load and is what the ASAN and TSAN runs
// (npm run test:asan / test:tsan) check for real.
import t from 'tap'
import net from 'node:net'
import { waitFor } from './fixtures/harness.js'
import { PROBE, variantSkip, variantSplicer } from './fixtures/variant.js'
import type { LaneBinding } from '../../src/dataplane/native/index.js'

const skip = await variantSkip()

async function backend (t: { teardown (fn: () => void): void }): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); s.end('x') })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  return (server.address() as net.AddressInfo).port
}

/** A lane listener on 127.0.0.1:0 forwarding to `to`, with close records on (log 1). */
async function laneOn (b: LaneBinding, lane: object, to: number): Promise<{ port: number, l: object }> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1', backlog: 512 }, resolve))
  const port = (server.address() as net.AddressInfo).port
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd
  const l = b.laneListen(lane, 1, fd, false)
  b.laneConfigure(l, 10000, 5000, 60000, 30000, 3, 0, 1)
  b.laneSetBackends(l, [0], ['127.0.0.1'], [to])
  b.laneStart?.(l)
  server.close() // the lane holds its own dup
  return { port, l }
}

function hit (port: number): Promise<void> {
  return new Promise((resolve) => {
    const c = net.connect({ port, host: '127.0.0.1' })
    c.on('error', () => resolve())
    c.on('close', () => resolve())
    c.resume()
  })
}

t.test('laneClose while a worker is about to post: the call is never made after the release', { skip }, async (t) => {
  const { lane: b, engines, hooks } = variantSplicer(t)
  const to = await backend(t)
  const records: number[] = []
  const lane = b.createLane(engines, (r) => { records.push(r.length) })
  const { port } = await laneOn(b, lane, to)
  const before = hooks.probe(PROBE.tsfnAfterRelease)
  hooks.postDelay(300)
  t.teardown(() => { hooks.postDelay(0) })
  await hit(port) // its close record makes a worker post
  await waitFor(() => hooks.probe(PROBE.inPostDelay) > 0, 'a worker waiting to post', 5000)
  b.laneClose(lane)
  await waitFor(() => hooks.probe(PROBE.inPostDelay) === 0, 'the worker past its post', 5000)
  hooks.postDelay(0)
  // Let the loop run: a call after the release would now touch a freed function.
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(hooks.probe(PROBE.tsfnAfterRelease) - before, 0, 'no threadsafe-function call after laneClose released it')
})

t.test('lanes closed under load (stress for the sanitizer runs)', { skip }, async (t) => {
  const to = await backend(t)
  for (let round = 0; round < 4; round++) {
    const { splicer, lane: b, engines } = variantSplicer(t, { threads: 2 })
    const lane = b.createLane(engines, () => {})
    const { port } = await laneOn(b, lane, to)
    // 200 connections, 20 at a time; the lane closes half way through.
    let started = 0
    let closed = false
    const worker = async (): Promise<void> => {
      while (started < 200) {
        started++
        if (started === 100 && !closed) { closed = true; b.laneClose(lane) }
        await hit(port)
      }
    }
    await Promise.all(Array.from({ length: 20 }, worker))
    splicer.close()
  }
  t.pass('no crash, no sanitizer report')
})
