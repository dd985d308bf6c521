// Kubernetes Events on Services (core/v1 events: what `kubectl describe svc`
// and `kubectl get events` show). A repeat of the same event (same Service,
// type, reason and message) bumps `count` and `lastTimestamp` on the event
// already written, as client-go's event correlator does, instead of writing
// a new object each time. Events are best effort: a failure is logged once
// per code and never blocks a reconcile.

import { hostname } from 'node:os'
import type { CoreV1Api, CoreV1Event } from '@kubernetes/client-node'
import type { Logger } from '../observe/logger.js'
import { kubeError, MERGE_PATCH, requestOptions, statusCodeOf } from './kube.js'

export const EVENT_COMPONENT = 'kind-tunnel'
/** Correlation entries kept; the oldest is forgotten first. */
const MAX_TRACKED = 4096

export interface EventTarget {
  readonly namespace: string
  readonly name: string
  readonly uid?: string | undefined
  readonly resourceVersion?: string | undefined
  /** Default `Service` (`v1`); Gateways get theirs too. */
  readonly kind?: string
  readonly apiVersion?: string
}

export interface RecordedEvent {
  readonly type: 'Normal' | 'Warning'
  readonly reason: string
  readonly message: string
}

interface Tracked { name: string, namespace: string, count: number, first: Date }

export class EventRecorder {
  readonly #core: CoreV1Api
  readonly #log: Logger
  readonly #instance: string
  readonly #tracked = new Map<string, Tracked>()
  #lastFailure: string | undefined
  /** Events written (created or bumped). */
  written = 0
  failed = 0

  constructor (core: CoreV1Api, logger: Logger) {
    this.#core = core
    this.#log = logger
    this.#instance = hostname()
  }

  async record (target: EventTarget, ev: RecordedEvent): Promise<void> {
    const key = `${target.kind ?? 'Service'}\0${target.namespace}/${target.name}/${target.uid ?? ''}\0${ev.type}\0${ev.reason}\0${ev.message}`
    const now = new Date()
    const prev = this.#tracked.get(key)
    try {
      if (prev !== undefined) {
        try {
          await this.#core.patchNamespacedEvent({
            name: prev.name,
            namespace: prev.namespace,
            body: { count: prev.count + 1, lastTimestamp: now.toISOString() },
          }, requestOptions({ contentType: MERGE_PATCH }))
          prev.count++
          // Refresh its place in the insertion-ordered map (LRU).
          this.#tracked.delete(key)
          this.#tracked.set(key, prev)
          this.written++
          return
        } catch (err) {
          // The API server expires events (1 h by default): write a new one.
          if (statusCodeOf(err) !== 404) throw err
          this.#tracked.delete(key)
        }
      }
      const name = `${target.name}.${(BigInt(now.getTime()) * 1_000_000n + BigInt(Math.floor(Math.random() * 1e6))).toString(16)}`
      const body: CoreV1Event = {
        metadata: { name, namespace: target.namespace },
        involvedObject: {
          apiVersion: target.apiVersion ?? 'v1',
          kind: target.kind ?? 'Service',
          namespace: target.namespace,
          name: target.name,
          ...(target.uid !== undefined ? { uid: target.uid } : {}),
          ...(target.resourceVersion !== undefined ? { resourceVersion: target.resourceVersion } : {}),
        },
        type: ev.type,
        reason: ev.reason,
        message: ev.message.slice(0, 1024),
        source: { component: EVENT_COMPONENT },
        reportingComponent: EVENT_COMPONENT,
        reportingInstance: this.#instance,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      }
      await this.#core.createNamespacedEvent({ namespace: target.namespace, body }, requestOptions())
      this.#tracked.set(key, { name, namespace: target.namespace, count: 1, first: now })
      if (this.#tracked.size > MAX_TRACKED) {
        const oldest = this.#tracked.keys().next().value
        if (oldest !== undefined) this.#tracked.delete(oldest)
      }
      this.written++
    } catch (raw) {
      this.failed++
      const err = kubeError(raw, { verb: prev !== undefined ? 'patch' : 'create', resource: 'events', namespace: target.namespace })
      if (this.#lastFailure !== err.code) {
        this.#lastFailure = err.code
        this.#log.warn({ code: err.code, service: `${target.namespace}/${target.name}`, reason: ev.reason }, `cannot record an event: ${err.message}`)
      }
    }
  }
}
