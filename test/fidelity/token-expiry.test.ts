// A token that expires (`kubectl create token` lasts 3600 s) or is revoked:
// from then on every request gets 401. The controller must say so, in its
// snapshot (what `kind-tunnel status` shows for the cluster) and in its log,
// not retry silently forever.
import t from 'tap'
import { pino } from 'pino'
import { Writable } from 'node:stream'
import { startHarness, waitFor } from '../control/fixtures/harness.js'

t.test('a persistent 401 is reported as expired or revoked credentials', async (t) => {
  const lines: string[] = []
  const logger = pino({ level: 'info' }, new Writable({ write (chunk: Buffer, _enc, cb) { lines.push(chunk.toString('utf8')); cb() } }))
  const h = await startHarness(t, {
    api: { token: 'short-lived' },
    controller: { logger, informers: { silenceMs: 60_000, backoff: { initialMs: 20, maxMs: 100 } } },
  })
  t.equal(h.ctl.snapshot().apiProblem, undefined, 'no problem while the token is good')
  h.api.setToken('rotated')
  h.api.cutWatches()
  const problem = await waitFor(() => h.ctl.snapshot().apiProblem, 'the snapshot to report the refusal', 5000)
  t.equal(problem.code, 'KT_ERR_KUBE_FORBIDDEN')
  t.match(problem.message, /HTTP 401/)
  t.match(problem.message, /expired or was revoked/)
  t.match(problem.message, /docs\/rbac\.yaml/)
  await waitFor(() => lines.some((l) => l.includes('expired or was revoked')), 'a log line that says so', 5000)
})
