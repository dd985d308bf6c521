// 2,000 pairs live at once, each a short request/response, in both modes:
// all bytes arrive, every pair reports done once, and afterwards the process
// holds exactly the descriptors it held before (dups, pipes and sockets freed).
import t from 'tap'
import type { Socket } from 'node:net'
import { MODES, SKIP, connect, fdCount, splicerFor, startBackend, startProxy, waitFor, within } from './fixtures/harness.js'

const PAIRS = 2000
const BATCH = 200

for (const mode of MODES) {
  t.test(`${mode}: ${PAIRS} concurrent short pairs, no fd leak`, { skip: SKIP }, async (t) => {
    const fdsBefore = fdCount()
    const splicer = splicerFor(t, mode)
    const backend = await startBackend(t, (s) => {
      // Echo the 100-byte request once it is complete, then FIN.
      let n = 0
      s.on('data', (d: Buffer) => {
        n += d.length
        s.write(d)
        if (n >= 100) s.end()
      })
    })
    const proxy = await startProxy(t, splicer, backend.port, { idleTimeoutMs: 60_000 })
    const clients: Socket[] = []
    t.teardown(() => { for (const c of clients) c.destroy() })
    for (let i = 0; i < PAIRS; i += BATCH) {
      const batch = await within(Promise.all(Array.from({ length: Math.min(BATCH, PAIRS - i) }, () => connect(proxy.port))), 20_000, 'connect batch')
      clients.push(...batch)
    }
    await waitFor(() => splicer.stats().pairs === PAIRS, () => `${PAIRS} live pairs (have ${splicer.stats().pairs})`, 60_000)
    t.equal(splicer.stats().pairs, PAIRS, 'all pairs live at once')
    // Per pair: client, accepted, upstream and backend sockets, plus native's two dups.
    t.ok(fdCount() >= fdsBefore + PAIRS * 6, `${fdCount()} descriptors open at the peak`)

    const request = Buffer.alloc(100, 'q')
    const echoed = clients.map((c) => new Promise<number>((resolve) => {
      let n = 0
      c.on('data', (d: Buffer) => { n += d.length })
      c.on('end', () => { c.end(); resolve(n) })
      c.on('error', () => resolve(-1))
    }))
    for (const c of clients) c.write(request)
    const counts = await within(Promise.all(echoed), 30_000, 'all echoes')
    t.equal(counts.filter((n) => n === 100).length, PAIRS, 'every client got its 100 bytes back')
    await proxy.waitResults(PAIRS, 20_000)
    t.equal(proxy.results.filter((r) => r.cause === 'eof' && r.aToB === 100 && r.bToA === 100).length, PAIRS, 'every pair ended clean with exact counts')
    const st = splicer.stats()
    t.equal(st.pairs, 0)
    t.ok(st.pipesPooled <= 64, `pipes pooled ${st.pipesPooled} (bounded)`)

    for (const c of clients) c.destroy()
    for (const s of backend.sockets) s.destroy()
    splicer.close()
    // Closed sockets leave the fd table as their handles close: wait, bounded.
    await waitFor(() => fdCount() <= fdsBefore + 2, 'descriptors to return', 10_000).catch(() => {})
    // +2: the backend and proxy listeners, closed only at teardown.
    t.equal(fdCount(), fdsBefore + 2, `descriptors back to ${fdsBefore} + 2 listeners`)
  })
}
