// The CLI tests judge a child by its exit status and its stderr. With several
// children running at once, one SIGCHLD reaps every child that has exited, so
// a child's 'exit' can come before the parent has read its last line: CI saw
// `up --ip-pool 10.0.0.1/8` exit 2 with an empty stderr. exitedAndDrained
// waits for the output too.
import t from 'tap'
import { spawn } from 'node:child_process'
import { exitedAndDrained } from '../support/cli.js'

t.test('exitedAndDrained: every child\'s one line is read by the time it resolves', async (t) => {
  const N = 120
  const runs = Array.from({ length: N }, async (_, k) => {
    const c = spawn(process.execPath, ['-e', `setTimeout(() => { process.stderr.write('error KT_ERR_X: ${k}\\n'); process.exit(2) }, ${50 + (k % 30)})`], { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    // A parent busy in its callbacks, as a test process running four CLI
    // cases is: children exit between its poll and its SIGCHLD handling.
    c.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; const t0 = Date.now(); while (Date.now() - t0 < 2) {} })
    const code = await exitedAndDrained(c)
    return { code, err, k }
  })
  const got = await Promise.all(runs)
  t.equal(got.filter((g) => g.code !== 2).length, 0, 'every exit status is 2')
  t.same(got.filter((g) => g.err !== `error KT_ERR_X: ${g.k}\n`).map((g) => g.k), [], 'no child\'s line is missing')
})

t.test('a grandchild holding the pipe does not hold the status back past drainMs', async (t) => {
  const c = spawn('/bin/sh', ['-c', 'sleep 5 & echo started >&2; exit 3'], { stdio: ['ignore', 'ignore', 'pipe'] })
  c.stderr.resume()
  const t0 = Date.now()
  const code = await exitedAndDrained(c, 300)
  t.equal(code, 3)
  t.ok(Date.now() - t0 < 3000, 'resolved after the drain time, not when the grandchild ended')
  c.stderr.destroy()
})
