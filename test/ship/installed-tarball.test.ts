// Issue 13: what `npm install -g kind-tunnel-*.tgz` gives a user with no C
// compiler. The tarball carries the prebuilt addon, doctor says which data path
// the install gets, and `kind-tunnel proxy` moves real bytes through it: native
// from the prebuild, pure JS with KT_NATIVE=0 or on a platform without one, a
// first-run compile when a compiler is there, and never a stale prebuild.
import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { appendFileSync, existsSync, renameSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { startEcho } from '../support/net.js'
import { installedEnv, packAndInstall, runInstalled, startInstalledProxy, type Installed } from './pack.js'

const SKIP = process.platform !== 'linux' || !['x64', 'arm64'].includes(process.arch) ? 'prebuilds are made for linux-x64 and linux-arm64' : false

function dataplaneLine (out: string): string {
  return out.split('\n').find((l) => /^\S+\s+dataplane: /.test(l)) ?? `(no dataplane line in ${JSON.stringify(out)})`
}

/** Send `n` random bytes through the proxy and read the echo back; resolves with both hashes. */
async function echoThrough (port: number, n: number): Promise<{ sent: string, got: string }> {
  const data = randomBytes(n)
  const s: Socket = connect(port, '127.0.0.1')
  const h = createHash('sha256')
  let got = 0
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`echo: ${got} of ${n} bytes back in 20 s`)) }, 20_000)
    s.on('data', (d: Buffer) => { h.update(d); got += d.length; if (got >= n) { clearTimeout(timer); s.end(); resolve() } })
    s.on('error', (e) => { clearTimeout(timer); reject(e) })
    s.write(data)
  })
  s.destroy()
  return { sent: createHash('sha256').update(data).digest('hex'), got: h.digest('hex') }
}

async function proxyWorks (t: Test, inst: Installed, env: NodeJS.ProcessEnv, native: 'on' | 'auto'): Promise<string> {
  const echo = await startEcho()
  t.teardown(() => echo.close())
  const p = await startInstalledProxy(inst, ['--listen', '127.0.0.1:0', '--backend', `127.0.0.1:${echo.port}`, '--native', native, '--log-level', 'debug'], env)
  t.teardown(() => { p.child.kill('SIGKILL') })
  const r = await echoThrough(p.port, 4 << 20)
  t.equal(r.got, r.sent, '4 MiB echoed byte-exact through the installed proxy')
  p.child.kill('SIGTERM')
  await new Promise((resolve) => p.child.once('exit', resolve))
  return p.stderr()
}

if (SKIP !== false) t.plan(0, SKIP)
else {
  const inst = await packAndInstall()
  t.teardown(inst.cleanup)
  const tag = `linux-${process.arch}`

  t.test('the tarball carries both prebuilds, the C sources and the build script', async (t) => {
    for (const f of ['prebuilds/linux-x64/kt_splice.napi.glibc.node', 'prebuilds/linux-arm64/kt_splice.napi.glibc.node',
      'src/dataplane/native/kt_splice.c', 'src/dataplane/native/kt_lane.c', 'src/dataplane/native/kt_route.c',
      'src/dataplane/native/kt_ring.c', 'src/dataplane/native/kt_lane_napi.c', 'src/dataplane/native/kt_timer.c', 'src/dataplane/native/kt_peek.c', 'src/dataplane/native/kt_relay.c', 'src/dataplane/native/kt_relay_napi.c', 'src/dataplane/native/kt_mux.c', 'src/dataplane/native/kt_lane.h',
      'src/dataplane/native/kt_engine.h', 'src/dataplane/native/binding.gyp', 'src/dataplane/native/build-addon.mjs',
      'src/dataplane/native/source-hash.cjs']) t.ok(inst.files.includes(f), f)
    t.notOk(inst.files.some((f) => f.includes('build/Release')), 'no local build inside')
  })

  t.test('no compiler on PATH: doctor says native (prebuilt), and proxy runs on it', async (t) => {
    const env = installedEnv(inst)
    const d = await runInstalled(inst, ['doctor', '--no-docker'], env)
    t.equal(dataplaneLine(d.stdout), `ok   dataplane: native (prebuilt ${tag})`)
    const j = await runInstalled(inst, ['doctor', '--no-docker', '--json'], env)
    const line = (JSON.parse(j.stdout) as { lines: Array<{ check: string, status: string, message: string }> }).lines.find((l) => l.check === 'dataplane')
    t.same(line, { check: 'dataplane', status: 'ok', message: `native (prebuilt ${tag})` }, '--json carries the same')
    // --native on fails unless the addon loads.
    await proxyWorks(t, inst, env, 'on')
  })

  t.test('KT_NATIVE=0: pure JS, and it works', async (t) => {
    const env = installedEnv(inst, { KT_NATIVE: '0' })
    const d = await runInstalled(inst, ['doctor', '--no-docker'], env)
    t.equal(dataplaneLine(d.stdout).replace(/ → fix.*/, ''), 'warn dataplane: pure JS (disabled by KT_NATIVE=0)')
    await proxyWorks(t, inst, env, 'auto')
  })

  t.test('a platform without a prebuild: pure JS, said in one line, and it works', async (t) => {
    for (const sim of ['darwin-arm64', 'linux-riscv64']) {
      const env = installedEnv(inst, { KT_NATIVE_PLATFORM: sim })
      const d = await runInstalled(inst, ['doctor', '--no-docker'], env)
      t.match(dataplaneLine(d.stdout), new RegExp(`^warn dataplane: pure JS \\(no addon for ${sim}`), sim)
      t.equal(d.code, 0, 'doctor does not fail for it')
      await proxyWorks(t, inst, env, 'auto')
    }
  })

  t.test('no prebuild for this machine but a compiler: compiled once on first run, cached, said in one line', async (t) => {
    const dir = join(inst.pkg, 'prebuilds', tag)
    renameSync(dir, `${dir}.away`)
    t.teardown(() => renameSync(`${dir}.away`, dir))
    const env = installedEnv(inst, { PATH: `${inst.pathNoCc}:${process.env['PATH'] ?? ''}`, KT_NATIVE_CACHE: join(inst.dir, 'cache-compile') })
    const first = await runInstalled(inst, ['doctor', '--no-docker'], env)
    t.equal(dataplaneLine(first.stdout), `ok   dataplane: native (compiled ${tag}, cached)`)
    t.equal(first.stderr.split('\n').filter((l) => /compiled the native data plane/.test(l)).length, 1, 'one line says it compiled')
    const again = await runInstalled(inst, ['doctor', '--no-docker'], env)
    t.equal(dataplaneLine(again.stdout), `ok   dataplane: native (compiled ${tag}, cached)`)
    t.notMatch(again.stderr, /compiled/, 'compiled once only')
    // Without a compiler and without the cache: pure JS, the reason once.
    const bare = installedEnv(inst, { KT_NATIVE_CACHE: join(inst.dir, 'cache-bare') })
    const js = await runInstalled(inst, ['doctor', '--no-docker'], bare)
    t.match(dataplaneLine(js.stdout), /^warn dataplane: pure JS \(no addon for linux-\w+ and no C compiler/)
    t.match(js.stderr, /using the pure-JS data plane/, 'said on the first run')
    const js2 = await runInstalled(inst, ['doctor', '--no-docker'], bare)
    t.notMatch(js2.stderr, /pure-JS/, 'and not again')
  })

  t.test('a prebuild older than the shipped sources is never loaded', async (t) => {
    const c = join(inst.pkg, 'src', 'dataplane', 'native', 'kt_peek.c')
    t.ok(existsSync(c))
    appendFileSync(c, '\n/* changed after the prebuild */\n')
    const d = await runInstalled(inst, ['doctor', '--no-docker'], installedEnv(inst, { KT_NATIVE_CACHE: join(inst.dir, 'cache-stale') }))
    t.match(dataplaneLine(d.stdout), /^warn dataplane: pure JS \(.*prebuild .* \(stale\) and is not loaded/)
  })
}
