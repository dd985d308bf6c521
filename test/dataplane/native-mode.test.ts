// The same data-plane behaviour tests, run again through the native splice
// addon (in-process ListenerManager with the splicer) and through the CLI's
// default (--native auto). Skipped with a note when the addon is not built.
import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { loadNativeSplicer, nativeUnavailableReason } from '../../src/dataplane/native/index.js'
import { nativeSkip } from '../support/native.js'

const probe = loadNativeSplicer()
probe?.close()
const skip = nativeSkip(probe === undefined ? `native addon unavailable: ${nativeUnavailableReason() ?? ''}` : false)

const files = [
  'dataplane/splice-integrity.test.js',
  'dataplane/half-close.test.js',
  'dataplane/reset.test.js',
  'dataplane/connect-failure.test.js',
  'dataplane/limits.test.js',
  'dataplane/reload.test.js',
  'routing-e2e/tls-sni.test.js',
  'routing-e2e/http-host.test.js',
  'routing-e2e/slowloris.test.js',
]

// Each file is its own child process, independent of the others: two at a time.
t.jobs = 2

for (const f of files) {
  t.test(`native splice: ${f}`, { skip }, async (t) => {
    const file = fileURLToPath(new URL(`../${f}`, import.meta.url))
    const child = spawn(process.execPath, [file], { env: { ...process.env, KT_TEST_SPLICE: 'native', TAP: '1' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { out += d })
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    const failed = out.split('\n').filter((l) => /^\s*not ok/.test(l))
    t.equal(code, 0, failed.length > 0 ? failed.join('\n') : `exit ${code}`)
  })
}
