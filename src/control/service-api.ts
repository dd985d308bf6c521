// The Service-sync layer's writes to the API server (issue #15): the one
// status patch, the one finalizer edit, and the one 409-conflict retry they
// and `down` share. Services are addressed by a structured ServiceRef, never
// by a `namespace/name` string parsed back.

import type { KubernetesObject, V1Service } from '@kubernetes/client-node'
import { KtError } from '../errors.js'
import { type LoadBalancerIngress, removableFinalizers, type StatusOwner, statusIsOurs } from '../routing/compute.js'
import type { KubeService } from '../routing/kube.js'
import { type KubeClients, kubeError, type KubeOp, MERGE_PATCH, requestOptions, statusCodeOf } from './kube.js'

export type Svc = KubeService & KubernetesObject

/** One Service, by namespace and name. */
export interface ServiceRef {
  readonly namespace: string
  readonly name: string
}

export function refOf (svc: Svc): ServiceRef {
  return { namespace: svc.metadata?.namespace ?? 'default', name: svc.metadata?.name ?? '' }
}

/** `namespace/name`: for logs and map keys only, never parsed back. */
export function refKey (ref: ServiceRef): string {
  return `${ref.namespace}/${ref.name}`
}

export function isDeleting (svc: Svc): boolean {
  const t = svc.metadata?.deletionTimestamp
  return t !== undefined && t !== null && (t as unknown) !== ''
}

/** Attempts at a write that keeps meeting 409 before giving up with KT_ERR_KUBE_CONFLICT. */
export const CONFLICT_ATTEMPTS = 4

/**
 * The one 409 retry. `attempt` writes against `cur`; on 409 the Service is
 * read again and `attempt` runs on the fresh copy (its resourceVersion is
 * the precondition). A 404, on the write or the read, means the Service is
 * gone: `gone` is returned. After CONFLICT_ATTEMPTS conflicts it throws
 * KT_ERR_KUBE_CONFLICT.
 */
export async function retryOnConflict<T> (clients: KubeClients, first: Svc, attempt: (cur: Svc) => Promise<T>, gone: T): Promise<T> {
  const ref = refOf(first)
  let cur = first
  for (let i = 0; i < CONFLICT_ATTEMPTS; i++) {
    try {
      return await attempt(cur)
    } catch (err) {
      const status = statusCodeOf(err)
      if (status === 404) return gone
      if (status !== 409) throw err
      try {
        cur = await clients.core.readNamespacedService(ref, requestOptions()) as Svc
      } catch (raw) {
        if (statusCodeOf(raw) === 404) return gone
        throw kubeError(raw, { verb: 'get', resource: 'services', ...ref })
      }
    }
  }
  throw new KtError('KT_ERR_KUBE_CONFLICT', `patch services "${refKey(ref)}": still conflicting after ${CONFLICT_ATTEMPTS} attempts`)
}

/** Called after every write with its kind (status, finalizer) and outcome (ok or an error code). */
export type WriteObserver = (kind: 'status' | 'finalizer', outcome: string) => void

/** The writes of the Service-sync layer, each mapped to a KtError and reported to `observe`. */
export class ServiceWriter {
  readonly #clients: KubeClients
  readonly #observe: WriteObserver | undefined

  constructor (clients: KubeClients, observe?: WriteObserver) {
    this.#clients = clients
    this.#observe = observe
  }

  async #write<T> (kind: 'status' | 'finalizer', op: KubeOp, fn: () => Promise<T>): Promise<T> {
    try {
      const r = await fn()
      this.#observe?.(kind, 'ok')
      return r
    } catch (raw) {
      const err = kubeError(raw, op)
      this.#observe?.(kind, err.code)
      throw err
    }
  }

  /** The one status patch: `status.loadBalancer.ingress` set, or cleared with null. */
  async patchStatus (ref: ServiceRef, ingress: readonly LoadBalancerIngress[] | null): Promise<V1Service> {
    const body = { status: { loadBalancer: { ingress } } }
    return await this.#write('status', { verb: 'patch', resource: 'services/status', ...ref },
      async () => await this.#clients.core.patchNamespacedServiceStatus({ ...ref, body }, requestOptions({ contentType: MERGE_PATCH })))
  }

  /**
   * Merge patch of metadata.finalizers with metadata.resourceVersion as a
   * precondition (409 if the object moved): a merge patch replaces the whole
   * list, so the RV guards the other controllers' finalizers. `edit` returns
   * the wanted list, or null when nothing needs to change. Returns the new
   * resourceVersion (the current one when nothing changed; undefined when
   * the Service is gone).
   */
  async editFinalizers (svc: Svc, edit: (fins: readonly string[]) => string[] | null): Promise<string | undefined> {
    return await retryOnConflict(this.#clients, svc, async (cur) => {
      const wanted = edit(cur.metadata?.finalizers ?? [])
      if (wanted === null) return cur.metadata?.resourceVersion
      const ref = refOf(cur)
      const res = await this.#write('finalizer', { verb: 'patch', resource: 'services', ...ref },
        async () => await this.#clients.core.patchNamespacedService({
          ...ref,
          body: { metadata: { resourceVersion: cur.metadata?.resourceVersion, finalizers: wanted } },
        }, requestOptions({ contentType: MERGE_PATCH })))
      return res.metadata?.resourceVersion
    }, undefined)
  }

  async addFinalizers (svc: Svc, want: readonly string[]): Promise<string | undefined> {
    return await this.editFinalizers(svc, (fins) => {
      const missing = want.filter((f) => !fins.includes(f))
      return missing.length === 0 ? null : [...fins, ...missing]
    })
  }

  async removeFinalizers (svc: Svc, names: readonly string[]): Promise<string | undefined> {
    return await this.editFinalizers(svc, (fins) => fins.some((f) => names.includes(f)) ? fins.filter((f) => !names.includes(f)) : null)
  }

  /** Whether the Service is gone or no longer a LoadBalancer (a status patch then gets 422). */
  async noLongerLoadBalancer (ref: ServiceRef): Promise<boolean> {
    try {
      const cur = await this.#clients.core.readNamespacedService(ref, requestOptions())
      return cur.spec?.type !== 'LoadBalancer'
    } catch (err) {
      return statusCodeOf(err) === 404
    }
  }

  /** Clear our status entries and remove our finalizers from one Service (`down`, or cleanup). */
  async undo (svc: Svc, owner: StatusOwner): Promise<void> {
    // Decided on what we listed: the status is part of the evidence.
    const removable = removableFinalizers(svc, owner)
    if (statusIsOurs(svc, owner) && !isDeleting(svc)) {
      try {
        await this.patchStatus(refOf(svc), null)
      } catch (err) {
        if (statusCodeOf(err) !== 404) throw err
      }
    }
    await this.removeFinalizers(svc, removable)
  }
}
