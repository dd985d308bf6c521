// The data-plane behaviour tests again, with the native accept lane taking
// every eligible listener (KT_TEST_SPLICE=native + KT_NATIVE_ACCEPT=1): byte
// integrity (64 MiB both ways), half-close, RST both ways, reload, drain on
// SIGTERM (the CLI defaults to --native-accept auto), access log and metrics,
// and the SNI / Host routing end-to-end tests.
// The lane's own cases (retry, caps, EMFILE, balancing) are in this folder.
import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { laneSkip } from './lane-proxy.js'

const skip = laneSkip()

const files = [
  'dataplane/splice-integrity.test.js',
  'dataplane/half-close.test.js',
  'dataplane/reset.test.js',
  'dataplane/reload.test.js',
  'dataplane/drain.test.js',
  'dataplane/observability.test.js',
  // Routed listeners take the lane too (issue #3); test/fastlane/routing.test.ts proves the lane carries them.
  'routing-e2e/tls-sni.test.js',
  'routing-e2e/http-host.test.js',
  'routing-e2e/slowloris.test.js',
]

// Each file is its own child process, independent of the others: two at a time.
t.jobs = 2

for (const f of files) {
  t.test(`native lane: ${f}`, { skip }, async (t) => {
    const file = fileURLToPath(new URL(`../${f}`, import.meta.url))
    const child = spawn(process.execPath, [file], { env: { ...process.env, KT_TEST_SPLICE: 'native', KT_NATIVE_ACCEPT: '1', TAP: '1' }, stdio: ['ignore', 'pipe', 'pipe'] })
    t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { out += d })
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    const failed = out.split('\n').filter((l) => /^\s*not ok/.test(l))
    t.equal(code, 0, failed.length > 0 ? failed.join('\n') : `exit ${code}`)
  })
}
