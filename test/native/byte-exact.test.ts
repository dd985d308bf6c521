// 64 MiB each way at once through the native splicer, checked with sha256, in
// both modes. The counts reported by native must match the bytes that arrived.
import t from 'tap'
import { MODES, SKIP, collect, connect, payloadBlocks, sha256, splicerFor, startBackend, startProxy, within, writeAll } from './fixtures/harness.js'

const SIZE = 64 * 1024 * 1024

// The default pipe (256 KiB) and the kernel's own 64 KiB one.
const VARIANTS = [...MODES.map((mode) => ({ mode, pipeSize: undefined })), { mode: 'splice' as const, pipeSize: 0 }]

for (const { mode, pipeSize } of VARIANTS) {
  t.test(`${mode}${pipeSize === 0 ? ' (64 KiB pipes)' : ''}: 64 MiB each way, byte-exact`, { skip: SKIP }, async (t) => {
    const splicer = splicerFor(t, mode, pipeSize === undefined ? {} : { pipeSize })
    const up = payloadBlocks(SIZE)
    const down = payloadBlocks(SIZE)
    let backendGot: Promise<{ bytes: number, hash: string }> | undefined
    const backend = await startBackend(t, (s) => {
      backendGot = collect(s).done
      void writeAll(s, down, true).catch(() => {})
    })
    const proxy = await startProxy(t, splicer, backend.port, { idleTimeoutMs: 30_000 })
    const client = await connect(proxy.port)
    t.teardown(() => client.destroy())
    const clientGot = collect(client).done
    await within(writeAll(client, up, true), 60_000, 'client upload')
    const got = await within(clientGot, 60_000, 'client download')
    t.equal(got.bytes, SIZE, 'client received every byte')
    t.equal(got.hash, sha256(down), 'client received the backend bytes in order')
    t.ok(backendGot, 'backend accepted')
    const atBackend = await within(backendGot!, 60_000, 'backend receive')
    t.equal(atBackend.bytes, SIZE, 'backend received every byte')
    t.equal(atBackend.hash, sha256(up), 'backend received the client bytes in order')
    client.end()
    await proxy.waitResults(1, 10_000)
    t.same(proxy.results[0], { aToB: SIZE, bToA: SIZE, cause: 'eof' }, 'native counts both ways, clean end')
    t.equal(splicer.stats().pairs, 0)
  })
}
