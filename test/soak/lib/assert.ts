// Turn a soak case's checks into tap assertions (test/reliability/ runs
// small versions of the soak cases in `npm test`).

import type { Test } from 'tap'
import type { CaseResult } from './case.js'

export function assertCase (t: Test, r: CaseResult): void {
  for (const [k, v] of r.figures) t.comment(`${k}: ${v}`)
  for (const n of r.notes) t.comment(`note: ${n}`)
  for (const c of r.checks) t.ok(c.ok, c.name, c.detail === undefined ? {} : { detail: c.detail })
  t.ok(r.checks.length > 0, `${r.id}: the case made its checks`)
}
