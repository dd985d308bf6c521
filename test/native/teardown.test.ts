// The environment going away with pairs live and bytes moving — process.exit()
// or a worker thread terminated — joins the native worker before Node disposes
// of the threadsafe function: no crash, no hang.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { SKIP } from './fixtures/harness.js'

const child = fileURLToPath(new URL('./fixtures/teardown-child.js', import.meta.url))

for (const mode of ['exit', 'worker']) {
  t.test(`${mode} with live pairs`, { skip: SKIP }, async (t) => {
    for (let i = 0; i < 3; i++) {
      const r = spawnSync(process.execPath, [child, mode], { timeout: 30_000, encoding: 'utf8' })
      t.equal(r.signal, null, 'no signal (no crash)')
      t.equal(r.status, 0, `exit status 0 ${r.stderr.slice(0, 300)}`)
      t.equal(r.stdout.trim(), 'ok')
    }
  })
}
