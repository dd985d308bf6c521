// CI's addon-required mode: with KT_REQUIRE_NATIVE=1 a native test file whose
// addon cannot load fails; without it, the same file skips with the reason.
// The addon is made unavailable with KT_NATIVE=0 (the loader's off switch).

import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { nativeSkip } from '../support/native.js'

const file = fileURLToPath(new URL('../native/keeps-alive.test.js', import.meta.url))

function run (env: NodeJS.ProcessEnv): Promise<{ code: number | null, out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [file], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { out += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.once('exit', (code) => { clearTimeout(timer); resolve({ code, out }) })
  })
}

t.test('nativeSkip passes the reason through, or throws when the addon is required', async (t) => {
  const saved = process.env.KT_REQUIRE_NATIVE
  t.teardown(() => { if (saved === undefined) delete process.env.KT_REQUIRE_NATIVE; else process.env.KT_REQUIRE_NATIVE = saved })
  delete process.env.KT_REQUIRE_NATIVE
  t.equal(nativeSkip(false), false)
  t.equal(nativeSkip('not built'), 'not built')
  process.env.KT_REQUIRE_NATIVE = '1'
  t.equal(nativeSkip(false), false)
  t.throws(() => nativeSkip('not built'), /KT_REQUIRE_NATIVE=1 .*not built/)
})

t.test('a native test file skips without the addon, and fails under KT_REQUIRE_NATIVE=1', async (t) => {
  const skipped = await run({ KT_NATIVE: '0', KT_REQUIRE_NATIVE: '' })
  t.equal(skipped.code, 0, skipped.out)
  t.match(skipped.out, /# SKIP native addon unavailable/)
  const failed = await run({ KT_NATIVE: '0', KT_REQUIRE_NATIVE: '1' })
  t.not(failed.code, 0, 'the file fails')
  t.match(failed.out, /KT_REQUIRE_NATIVE=1 and the native addon is required/)
})
