// The docker test lock (test/support/docker.ts): a fresh CI run crashed in
// two-clusters with ENOTEMPTY. A waiter read the owner's pid file while the
// owner was writing it, saw it empty (pid 0), called the lock stale and
// removed a live lock. Now the pid appears by rename, and a lock without a
// readable owner is stale only after 30 s.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { lockIsStale } from '../support/docker.js'

t.test('stale only when the owner is gone, or no owner was written for 30 s', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kt-lock-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  t.equal(lockIsStale(dir), false, 'no pid yet, just made: a taker between mkdir and pid')
  writeFileSync(join(dir, 'pid'), '')
  t.equal(lockIsStale(dir), false, 'an empty pid file is not a dead owner')
  writeFileSync(join(dir, 'pid'), String(process.pid))
  t.equal(lockIsStale(dir), false, 'a live owner')
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
  writeFileSync(join(dir, 'pid'), dead.stdout)
  t.equal(lockIsStale(dir), true, 'an owner that exited')
  writeFileSync(join(dir, 'pid'), '')
  const old = (Date.now() - 60_000) / 1000
  utimesSync(dir, old, old)
  t.equal(lockIsStale(dir), true, 'no owner for a minute')
})
