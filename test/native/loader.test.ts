// The loader: when it returns undefined, how modes are chosen, and the
// synchronous refusals (each with a stable code) that leave the caller owning
// its sockets with nothing lost.
import t from 'tap'
import net from 'node:net'
import { execFileSync, spawnSync } from 'node:child_process'
import { constants, mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadNativeSplicer, nativeUnavailableReason } from '../../src/dataplane/native/index.js'
import { SKIP, collect, connect, splicerFor, startBackend, waitFor } from './fixtures/harness.js'

function withEnv (vars: Record<string, string | undefined>, fn: () => void): void {
  const saved: Record<string, string | undefined> = {}
  for (const k of Object.keys(vars)) {
    saved[k] = process.env[k]
    if (vars[k] === undefined) delete process.env[k]
    else process.env[k] = vars[k]
  }
  try { fn() } finally {
    for (const k of Object.keys(saved)) {
      if (saved[k] === undefined) delete process.env[k]
      else process.env[k] = saved[k]
    }
  }
}

t.test('build-addon.mjs, binding.gyp and the directory name the same C sources', async (t) => {
  // build-addon.mjs keeps its own list (the sidecar image copies it without binding.gyp).
  const dir = fileURLToPath(new URL('../../../src/dataplane/native/', import.meta.url))
  const script = /^const SOURCES = \[([^\]]*)\]/m.exec(readFileSync(join(dir, 'build-addon.mjs'), 'utf8'))?.[1]
  const fromScript = (script ?? '').split(',').map((x) => x.trim().replace(/^'|'$/g, '')).filter((x) => x !== '').sort()
  const gyp = JSON.parse(readFileSync(join(dir, 'binding.gyp'), 'utf8')) as { targets: Array<{ sources: string[] }> }
  const inDir = readdirSync(dir).filter((f) => f.endsWith('.c')).sort()
  t.same(fromScript, inDir, 'build-addon.mjs SOURCES')
  t.same([...gyp.targets[0]!.sources].sort(), inDir, 'binding.gyp sources')
})

t.test('KT_NATIVE=0 disables the addon', async (t) => {
  withEnv({ KT_NATIVE: '0' }, () => {
    t.equal(loadNativeSplicer(), undefined)
    t.match(nativeUnavailableReason(), /KT_NATIVE=0/)
  })
})

t.test('a missing addon file means undefined, with a reason', async (t) => {
  t.equal(loadNativeSplicer({ addonPath: '/nonexistent/kt_splice.node' }), undefined)
  t.match(nativeUnavailableReason(), /not built/)
})

t.test('mode comes from opts, then KT_NATIVE_MODE, default splice', { skip: SKIP }, async (t) => {
  withEnv({ KT_NATIVE_MODE: 'rw' }, () => {
    const s = loadNativeSplicer()
    t.equal(s?.mode, 'rw')
    s?.close()
    const o = loadNativeSplicer({ mode: 'splice' })
    t.equal(o?.mode, 'splice')
    o?.close()
  })
  withEnv({ KT_NATIVE_MODE: undefined }, () => {
    const s = loadNativeSplicer()
    t.equal(s?.mode, 'splice')
    t.equal(nativeUnavailableReason(), undefined)
    s?.close()
  })
  t.throws(() => loadNativeSplicer({ pipeSize: -1 }), { code: 'KT_ERR_INVALID_ARG' })
  t.throws(() => loadNativeSplicer({ threads: 0 }), { code: 'KT_ERR_INVALID_ARG' })
  const two = loadNativeSplicer({ threads: 2 })
  t.same(two?.stats(), { pairs: 0, pipesPooled: 0, pipeFallbacks: 0 })
  two?.close()
})

t.test('refusals carry codes and leave the sockets untouched', { skip: SKIP }, async (t) => {
  const splicer = splicerFor(t, 'splice')
  const backend = await startBackend(t, (s) => { s.pause() })
  const a = await connect(backend.port)
  const b = await connect(backend.port)
  t.teardown(() => { a.destroy(); b.destroy() })
  const done = (): void => { t.fail('done must not run for a refused pair') }

  t.throws(() => splicer.splice(new net.Socket(), b, { idleTimeoutMs: 0 }, done), { code: 'KT_ERR_NATIVE_FD' }, 'unconnected socket')
  t.throws(() => splicer.splice(a, a, { idleTimeoutMs: 0 }, done), { code: 'KT_ERR_NATIVE_HANDOFF' }, 'same socket twice')
  for (const bad of [-1, 1.5, Number.NaN, 2 ** 31]) {
    t.throws(() => splicer.splice(a, b, { idleTimeoutMs: bad }, done), { code: 'KT_ERR_INVALID_ARG' }, `idleTimeoutMs ${bad}`)
  }
  t.throws(() => splicer.splice(a, b, { idleTimeoutMs: 0, halfCloseTimeoutMs: -5 }, done), { code: 'KT_ERR_INVALID_ARG' })

  // JS still has bytes queued for a: the backend is not reading, so fill the kernel first.
  const big = Buffer.alloc(1 << 20)
  for (let i = 0; i < 64 && a.write(big); i++) { /* until write() reports backpressure */ }
  t.ok(a.writableLength > 0, 'bytes queued in JS')
  t.throws(() => splicer.splice(a, b, { idleTimeoutMs: 0 }, done), { code: 'KT_ERR_NATIVE_HANDOFF' }, 'pending writes')

  const ended = await connect(backend.port)
  ended.end()
  t.teardown(() => ended.destroy())
  t.throws(() => splicer.splice(b, ended, { idleTimeoutMs: 0 }, done), { code: 'KT_ERR_NATIVE_HANDOFF' }, 'already ended by JS')

  const dead = await connect(backend.port)
  dead.destroy()
  t.throws(() => splicer.splice(dead, b, { idleTimeoutMs: 0 }, done), { code: 'KT_ERR_NATIVE_FD' }, 'destroyed socket')
  t.equal(splicer.stats().pairs, 0)
})

t.test('a refused handoff gives the buffered bytes back', { skip: SKIP }, async (t) => {
  // The one refusal that comes after the JS buffers were taken: native's own
  // check that both descriptors are stream sockets. A FIFO wrapped in a
  // net.Socket has an fd, but is not a socket.
  const splicer = splicerFor(t, 'splice')
  const backend = await startBackend(t, (s) => { s.write('buffered-before-handoff') })
  const a = await connect(backend.port)
  t.teardown(() => a.destroy())
  a.on('readable', () => {})
  await waitFor(() => a.readableLength === 23, 'bytes in JS', 5000)
  a.removeAllListeners('readable')
  const dir = mkdtempSync(join(tmpdir(), 'kt-native-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  execFileSync('mkfifo', [join(dir, 'fifo')])
  const fifo = new net.Socket({ fd: openSync(join(dir, 'fifo'), constants.O_RDWR | constants.O_NONBLOCK), readable: false, writable: true })
  t.teardown(() => fifo.destroy())
  t.throws(() => splicer.splice(a, fifo, { idleTimeoutMs: 0 }, () => {}), { code: 'KT_ERR_NATIVE_SPLICE' })
  const got = collect(a, true)
  a.resume()
  await waitFor(() => got.state.bytes === 23, 'bytes back in the socket', 5000)
  t.equal(got.state.text(), 'buffered-before-handoff', 'nothing lost')
  t.equal(splicer.stats().pairs, 0)
})

t.test('an idle splicer does not keep the process alive', { skip: SKIP }, async (t) => {
  const url = new URL('../../src/dataplane/native/index.js', import.meta.url).href
  const r = spawnSync(process.execPath, ['--input-type=module', '-e',
    `import { loadNativeSplicer } from ${JSON.stringify(url)}; const s = loadNativeSplicer(); console.log(s ? 'loaded' : 'none')`],
  { timeout: 10_000, encoding: 'utf8' })
  t.equal(r.status, 0, 'exited on its own')
  t.equal(r.stdout.trim(), 'loaded')
})
