// Many pairs at once with every ending mixed together: clean echo, client RST,
// backend RST, abort(), idle timeout, bulk download. Each pair reports done
// exactly once with the cause its behaviour calls for, and afterwards nothing
// is left: no live pair, no leaked descriptor.
import t from 'tap'
import type { Socket } from 'node:net'
import { MODES, SKIP, connect, fdCount, splicerFor, startBackend, startProxy, waitFor, within, sleep } from './fixtures/harness.js'

const PAIRS = 600
const KINDS = ['echo', 'reset-client', 'reset-backend', 'abort', 'idle', 'bulk'] as const
const EXPECT: Record<typeof KINDS[number], string> = {
  echo: 'eof', 'reset-client': 'reset-a', 'reset-backend': 'reset-b', abort: 'aborted', idle: 'idle-timeout', bulk: 'eof',
}
const BULK = Buffer.alloc(1 << 20, 'z')

const VARIANTS = [...MODES.map((mode) => ({ mode, threads: 1 })), { mode: 'splice' as const, threads: 2 }]

for (const { mode, threads } of VARIANTS) {
  t.test(`${mode}, ${threads} thread(s): ${PAIRS} pairs with mixed endings`, { skip: SKIP }, async (t) => {
    const fdsBefore = fdCount()
    const splicer = splicerFor(t, mode, { threads })
    const backend = await startBackend(t, (s) => {
      let kind: string | undefined
      s.on('data', (d: Buffer) => {
        if (kind === undefined) kind = KINDS[d[0]!]
        if (kind === 'echo') s.write(d)
        else if (kind === 'reset-client') s.write('k')  // the pair is live: the client may reset now
        else if (kind === 'reset-backend') s.resetAndDestroy()
        else if (kind === 'bulk') s.end(BULK)
      })
      s.on('end', () => { if (kind === 'echo') s.end() })
    })
    const proxy = await startProxy(t, splicer, backend.port, {
      idleTimeoutMs: 60_000,
      beforeSplice: async (c) => {
        // Peek the one-byte behaviour tag and pass it on as the head.
        c.on('readable', noop)
        await waitFor(() => c.readableLength > 0, 'tag', 10_000)
        c.off('readable', noop)
        const tag = c.read(1) as Buffer
        const kind = KINDS[tag[0]!]
        return { idleTimeoutMs: kind === 'idle' ? 100 : 60_000, headAtoB: tag }
      },
    })
    const clients: Socket[] = []
    t.teardown(() => { for (const c of clients) c.destroy() })
    const finished: Array<Promise<void>> = []
    for (let i = 0; i < PAIRS; i++) {
      const kind = KINDS[i % KINDS.length]!
      const c = await connect(proxy.port)
      clients.push(c)
      c.on('error', () => {})
      c.write(Buffer.from([i % KINDS.length]))
      finished.push(new Promise<void>((resolve) => {
        c.on('close', () => resolve())
        if (kind === 'echo') {
          c.write(Buffer.alloc(10_000, 'e'))
          c.end()
          c.resume()
        } else if (kind === 'reset-client') {
          c.once('data', () => c.resetAndDestroy())
        } else if (kind === 'reset-backend') {
          c.write('x')
        } else if (kind === 'bulk') {
          c.write('go')
          c.on('end', () => c.end())
          c.resume()
        } else {
          c.resume()
        }
      }))
    }
    await waitFor(() => proxy.handles.length === PAIRS, 'all handed over', 20_000)
    // Every other behaviour ends by itself; then abort() every handle: only the
    // 'abort' pairs are still live, and on the others abort() must be a no-op.
    await proxy.waitResults(PAIRS - PAIRS / KINDS.length, 30_000)
    await sleep(50)
    for (const h of proxy.handles) h.abort()
    await proxy.waitResults(PAIRS, 30_000)
    await within(Promise.all(finished), 30_000, 'all clients closed')
    const counts: Record<string, number> = {}
    for (const r of proxy.results) counts[r.cause] = (counts[r.cause] ?? 0) + 1
    const expected: Record<string, number> = {}
    for (let i = 0; i < PAIRS; i++) {
      const cause = EXPECT[KINDS[i % KINDS.length]!]
      expected[cause] = (expected[cause] ?? 0) + 1
    }
    t.same(counts, expected, 'each behaviour ended with its cause, exactly once per pair')
    t.equal(proxy.results.length, PAIRS, 'no pair reported twice')
    t.equal(splicer.stats().pairs, 0)
    for (const c of clients) c.destroy()
    for (const s of backend.sockets) s.destroy()
    splicer.close()
    await waitFor(() => fdCount() <= fdsBefore + 2, 'descriptors to return', 10_000).catch(() => {})
    t.equal(fdCount(), fdsBefore + 2, 'no descriptor leaked (+2 listeners)')
  })
}

function noop (): void {}
