// core/v1 Event and events.k8s.io/v1 Event are two views of one stored
// object, as on a real server (pkg/apis/events/v1/conversion.go). The store
// keeps the core form; events.k8s.io reads and writes are converted here.

import { fieldError, type StatusCause } from './status.js'
import type { KubeObject } from './resources.js'

// [events.k8s.io/v1 field, core/v1 field]
const RENAMES: ReadonlyArray<readonly [string, string]> = [
  ['regarding', 'involvedObject'],
  ['note', 'message'],
  ['deprecatedSource', 'source'],
  ['deprecatedFirstTimestamp', 'firstTimestamp'],
  ['deprecatedLastTimestamp', 'lastTimestamp'],
  ['deprecatedCount', 'count'],
  ['reportingController', 'reportingComponent'],
]
const SAME = ['eventTime', 'series', 'action', 'reason', 'related', 'reportingInstance', 'type'] as const

function copy (from: Record<string, unknown>, to: Record<string, unknown>, a: string, b: string): void {
  if (from[a] !== undefined) to[b] = from[a]
}

export function eventToCore (o: KubeObject): KubeObject {
  const out: KubeObject = { apiVersion: 'v1', kind: 'Event', metadata: o.metadata }
  for (const [n, c] of RENAMES) copy(o, out, n, c)
  for (const k of SAME) copy(o, out, k, k)
  return out
}

export function eventFromCore (o: KubeObject): KubeObject {
  const out: KubeObject = { apiVersion: 'events.k8s.io/v1', kind: 'Event', metadata: o.metadata }
  for (const [n, c] of RENAMES) copy(o, out, c, n)
  for (const k of SAME) copy(o, out, k, k)
  return out
}

/** ValidateEventCreate for the events.k8s.io API (pkg/apis/core/validation/events.go). */
export function validateEventsV1 (o: KubeObject): StatusCause[] {
  const errs: StatusCause[] = []
  if (o.eventTime === undefined || o.eventTime === null || o.eventTime === '') errs.push(fieldError.required('eventTime'))
  for (const f of ['reportingController', 'reportingInstance', 'action', 'reason'] as const) {
    if (typeof o[f] !== 'string' || o[f] === '') errs.push(fieldError.required(f))
  }
  if (o.type !== 'Normal' && o.type !== 'Warning') errs.push(fieldError.notSupported('type', o.type, ['Normal', 'Warning']))
  if (typeof o.note === 'string' && o.note.length > 1024) errs.push(fieldError.invalid('note', '', 'can have at most 1024 characters'))
  return errs
}
