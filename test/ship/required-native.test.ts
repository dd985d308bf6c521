// Issue 13: CI's required-addon mode (KT_REQUIRE_NATIVE=1, set by .ci/run).
// A C file that does not compile fails the build, and an addon that cannot be
// found or loaded fails the loader, instead of a silent fall back to pure JS.
// The broken sources are a temporary copy, never the tree; the same copy
// without the mode still "succeeds" with one line, as an install must.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { repoRoot } from './pack.js'

const SKIP = process.platform !== 'linux' ? 'the addon builds on Linux only' : false
const nativeDir = join(repoRoot, 'src', 'dataplane', 'native')
const distIndex = fileURLToPath(new URL('../../src/dataplane/native/index.js', import.meta.url))

function copySources (): string {
  const dir = mkdtempSync(join(tmpdir(), 'kt-req-'))
  for (const f of readdirSync(nativeDir)) if (/\.(c|h|mjs|cjs)$/.test(f)) cpSync(join(nativeDir, f), join(dir, f))
  return dir
}

function build (dir: string, env: NodeJS.ProcessEnv): { status: number | null, out: string } {
  const r = spawnSync(process.execPath, [join(dir, 'build-addon.mjs')], { env, encoding: 'utf8', timeout: 240_000 })
  return { status: r.status, out: `${r.stdout}${r.stderr}` }
}

function baseEnv (): NodeJS.ProcessEnv {
  const env = { ...process.env }
  for (const k of ['KT_NATIVE', 'KT_REQUIRE_NATIVE', 'KT_NATIVE_ADDON', 'KT_NATIVE_PLATFORM']) delete env[k]
  return env
}

t.test('a syntax error in a .c file fails the build under KT_REQUIRE_NATIVE=1', { skip: SKIP }, async (t) => {
  const dir = copySources()
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  appendFileSync(join(dir, 'kt_peek.c'), '\nstatic int broken( { return 0 }\n')
  const req = build(dir, { ...baseEnv(), KT_REQUIRE_NATIVE: '1' })
  t.equal(req.status, 1, 'the build fails')
  t.match(req.out, /failed to compile.*KT_REQUIRE_NATIVE=1: failing the build/s)
  t.match(req.out, /kt_peek\.c.*error/s, "the compiler's error is shown")
  t.notOk(existsSync(join(dir, 'build', 'Release', 'kt_splice.node')), 'nothing left to load')
  const soft = build(dir, baseEnv())
  t.equal(soft.status, 0, 'without the mode an install still succeeds')
  t.match(soft.out, /^kind-tunnel native splice: not built: .*; the pure-JS data plane is used\n$/)
})

t.test('a warning is an error (-Wall -Wextra -Werror)', { skip: SKIP }, async (t) => {
  const dir = copySources()
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  appendFileSync(join(dir, 'kt_peek.c'), '\nint kt_test_unused_warning (int x) { int y; return x; }\n')
  t.equal(build(dir, { ...baseEnv(), KT_REQUIRE_NATIVE: '1' }).status, 1)
})

t.test('the loader refuses to fall back under KT_REQUIRE_NATIVE=1', { skip: SKIP }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kt-req-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const junk = join(dir, 'kt_splice.node')
  writeFileSync(junk, 'not an ELF object')
  const probe = `import { loadNativeSplicer } from ${JSON.stringify(distIndex)}
try { const s = loadNativeSplicer(); console.log(s ? 'native' : 'js'); s?.close() } catch (e) { console.log(e.code + ' ' + e.message) }`
  const load = (env: NodeJS.ProcessEnv): string => spawnSync(process.execPath, ['--input-type=module', '-e', probe], { env, encoding: 'utf8', timeout: 30_000 }).stdout.trim()
  t.match(load({ ...baseEnv(), KT_REQUIRE_NATIVE: '1', KT_NATIVE_ADDON: junk }), /^KT_ERR_NATIVE_UNAVAILABLE KT_REQUIRE_NATIVE=1: the native addon .* failed to load/, 'an addon that does not load')
  t.match(load({ ...baseEnv(), KT_REQUIRE_NATIVE: '1', KT_NATIVE_PLATFORM: 'linux-riscv64' }), /^KT_ERR_NATIVE_UNAVAILABLE KT_REQUIRE_NATIVE=1: no addon for linux-riscv64/, 'no addon at all')
  t.equal(load({ ...baseEnv(), KT_NATIVE_ADDON: junk }), 'js', 'without the mode: pure JS')
  t.equal(load({ ...baseEnv(), KT_REQUIRE_NATIVE: '1', KT_NATIVE: '0' }), 'js', 'KT_NATIVE=0 is an explicit choice, not a failure')
})

t.test('a local build older than its sources is not loaded', { skip: SKIP }, async (t) => {
  const built = join(nativeDir, 'build', 'Release', 'kt_splice.node')
  t.ok(existsSync(built), 'npm run build made it')
  // A checkout's layout in a temp folder: the compiled loader, the sources and their build.
  const dir = mkdtempSync(join(tmpdir(), 'kt-stale-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  cpSync(fileURLToPath(new URL('../../src', import.meta.url)), join(dir, 'dist', 'src'), { recursive: true })
  const src = join(dir, 'src', 'dataplane', 'native')
  for (const f of readdirSync(nativeDir)) if (/\.(c|h|mjs|cjs)$/.test(f)) cpSync(join(nativeDir, f), join(src, f))
  cpSync(built, join(src, 'build', 'Release', 'kt_splice.node'))
  const probe = `import { nativeDataPath } from ${JSON.stringify(join(dir, 'dist', 'src', 'dataplane', 'native', 'index.js'))}; console.log(JSON.stringify(nativeDataPath()))`
  // No compiler on PATH, a private cache: nothing may be compiled behind the test's back.
  mkdirSync(join(dir, 'bin'))
  symlinkSync(process.execPath, join(dir, 'bin', 'node'))
  const env = { ...baseEnv(), PATH: join(dir, 'bin'), KT_NATIVE_CACHE: join(dir, 'cache') }
  const path = (): { native: boolean, how?: string, why?: string } => JSON.parse(spawnSync(process.execPath, ['--input-type=module', '-e', probe], { env, encoding: 'utf8', timeout: 30_000 }).stdout)
  t.same(path(), { native: true, how: 'local build' }, 'fresh: loaded')
  appendFileSync(join(src, 'kt_splice.c'), '\n/* edited after the build */\n')
  const stale = path()
  t.equal(stale.native, false, 'after a source edit: not loaded')
  t.match(stale.why, /the local build .* \(stale\) and is not loaded/)
})
