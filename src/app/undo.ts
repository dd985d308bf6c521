// Undo what a dead `up` left, from its state file: Service statuses and
// finalizers (through the cluster's API), LB IPs (through the same address
// backend it used), relay containers (through Docker). Each step is
// idempotent and independent: one failing step does not stop the others,
// and what could not be undone stays in the state file for the next try.

import { readFile } from 'node:fs/promises'
import { errorCode, KtError } from '../errors.js'
import type { Logger } from '../observe/logger.js'
import { openAddresses, type OpenedAddresses, type OpenAddressesOptions } from './addresses.js'
import type { ControllerModule } from './controller-port.js'
import { hasLeftovers, type ClusterState, type KubeconfigSource, type UpState } from './state.js'
import type { DockerAccess } from './docker.js'

export interface UndoDeps {
  readonly logger: Logger
  readonly controller: () => Promise<ControllerModule>
  readonly docker: DockerAccess
  readonly openAddresses?: (o: OpenAddressesOptions) => OpenedAddresses
  /** Bound on each cluster's API cleanup (default 30 s). */
  readonly timeoutMs?: number
}

export interface UndoStep {
  readonly what: string
  readonly ok: boolean
  readonly detail: string
}

export interface ClusterUndo {
  readonly cluster: string
  readonly steps: readonly UndoStep[]
  /** What is left to undo (for the rewritten state file), or undefined when all is done. */
  readonly left?: ClusterState
}

function withTimeout<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_resolve, reject) => { timer = setTimeout(() => reject(new KtError('KT_ERR_CLEANUP', `${what} did not finish within ${ms} ms`)), ms) }),
  ])
}

export async function kubeconfigFor (source: KubeconfigSource, cluster: string, docker: DockerAccess): Promise<string | undefined> {
  if (source.kind === 'ephemeral') return undefined
  if (source.kind === 'file') {
    try {
      return await readFile(source.path, 'utf8')
    } catch (err) {
      throw new KtError('KT_ERR_KUBECONFIG', `cannot read ${source.path} (${(err as NodeJS.ErrnoException).code ?? 'error'}) to clean up cluster ${cluster}`, { cause: err })
    }
  }
  return await docker.kubeconfig(cluster)
}

export async function undoCluster (c: ClusterState, deps: UndoDeps): Promise<ClusterUndo> {
  const log = deps.logger.child({ module: 'undo', cluster: c.name })
  const timeoutMs = deps.timeoutMs ?? 30_000
  const steps: UndoStep[] = []
  let apiLeft = false
  let relayLeft = false
  const addressesLeft: string[] = []

  // 1. Statuses and finalizers, while the API still knows the Services.
  if (c.kubeconfig.kind === 'ephemeral') {
    steps.push({ what: 'statuses', ok: true, detail: 'the API server was part of the process; nothing to clean' })
  } else {
    try {
      const kc = await kubeconfigFor(c.kubeconfig, c.name, deps.docker)
      if (kc === undefined) {
        steps.push({ what: 'statuses', ok: true, detail: `cluster ${c.name} no longer exists; nothing to clean` })
      } else {
        const { undoCluster: undoApi } = await deps.controller()
        const n = await withTimeout(undoApi({ cluster: c.name, kubeconfig: kc, routing: { ipPool: c.ipPool, mode: 'both' }, logger: log }), timeoutMs, `cleaning the Services of ${c.name}`)
        steps.push({ what: 'statuses', ok: true, detail: `removed LoadBalancer statuses and finalizers (${n} Service${n === 1 ? '' : 's'})` })
      }
    } catch (err) {
      apiLeft = true
      steps.push({ what: 'statuses', ok: false, detail: `${errorCode(err)}: ${(err as Error).message}` })
    }
  }

  // 2. LB IPs.
  if (c.addresses.length > 0) {
    let opened: OpenedAddresses | undefined
    try {
      opened = (deps.openAddresses ?? openAddresses)({ pool: c.ipPool, device: c.device })
      for (const ip of c.addresses) {
        try {
          const r = await opened.addresses.release(ip)
          steps.push({ what: `address ${ip}`, ok: true, detail: r.changed ? `removed from ${c.device}` : `not on ${c.device}` })
        } catch (err) {
          addressesLeft.push(ip)
          steps.push({ what: `address ${ip}`, ok: false, detail: `${errorCode(err)}: ${(err as Error).message}` })
        }
      }
    } catch (err) {
      addressesLeft.push(...c.addresses)
      steps.push({ what: 'addresses', ok: false, detail: `${errorCode(err)}: ${(err as Error).message}` })
    } finally {
      await opened?.close().catch(() => {})
    }
  }

  // 3. The relay container.
  if (c.relay !== undefined) {
    try {
      const n = await deps.docker.removeRelay(c.name)
      steps.push({ what: `relay ${c.relay.name}`, ok: true, detail: n > 0 ? 'removed' : 'already gone' })
    } catch (err) {
      relayLeft = true
      steps.push({ what: `relay ${c.relay.name}`, ok: false, detail: `${errorCode(err)}: ${(err as Error).message}` })
    }
  }
  for (const s of steps) (s.ok ? log.info.bind(log) : log.error.bind(log))({ step: s.what }, s.detail)

  if (!apiLeft && !relayLeft && addressesLeft.length === 0) return { cluster: c.name, steps }
  const { relay: _r, ...rest } = c
  const left: ClusterState = {
    ...rest,
    kubeconfig: apiLeft ? c.kubeconfig : { kind: 'ephemeral' },
    addresses: addressesLeft,
    ...(relayLeft && c.relay !== undefined ? { relay: c.relay } : {}),
  }
  return { cluster: c.name, steps, left }
}

/**
 * Undo every cluster (or one); returns the per-cluster reports and the state
 * still left. An entry that only remembers allocations has nothing to undo:
 * it gets no report and is dropped (the caller keeps what it wants of it).
 */
export async function undoState (state: UpState, deps: UndoDeps, only?: string): Promise<{ reports: ClusterUndo[], left: UpState | undefined }> {
  const reports: ClusterUndo[] = []
  const keep: ClusterState[] = []
  for (const c of state.clusters) {
    if (only !== undefined && c.name !== only) { keep.push(c); continue }
    if (!hasLeftovers(c)) continue
    const r = await undoCluster(c, deps)
    reports.push(r)
    if (r.left !== undefined) keep.push(r.left)
  }
  return { reports, left: keep.length > 0 ? { ...state, clusters: keep } : undefined }
}
