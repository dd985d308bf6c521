// `kind-tunnel down`: undo everything `up` did. A running `up` is asked over
// its control socket (it drains and cleans up itself); a dead one's leftovers
// are undone from the state file.

import { rm } from 'node:fs/promises'
import { KtError } from '../errors.js'
import type { Logger } from '../observe/logger.js'
import { controlRequest } from './control.js'
import type { ControllerModule } from './controller-port.js'
import type { DockerAccess } from './docker.js'
import type { OpenAddressesOptions, OpenedAddresses } from './addresses.js'
import { allocationCount, controlPath, hasLeftovers, pidAlive, readState, removeState, writeState } from './state.js'
import { undoState } from './undo.js'

export interface DownOptions {
  readonly stateDir: string
  readonly cluster?: string | undefined
  /** Undo from the state file even though its pid is alive (pid reuse after a reboot). */
  readonly force?: boolean
  /** How long to wait for a running `up` to finish (default 90 s). */
  readonly timeoutMs?: number
  readonly logger: Logger
  readonly controller: () => Promise<ControllerModule>
  readonly docker: DockerAccess
  readonly openAddresses?: (o: OpenAddressesOptions) => OpenedAddresses
  readonly print: (line: string) => void
}

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/** Returns the exit status: 0 when nothing is left, 1 when something could not be undone. */
export async function runDown (o: DownOptions): Promise<number> {
  const socket = controlPath(o.stateDir)
  const state = await readState(o.stateDir)
  let running = false
  let pid: number | undefined
  try {
    const ping = await controlRequest(state?.controlSocket ?? socket, 'GET', '/ping', 2000)
    running = true
    pid = typeof ping.pid === 'number' ? ping.pid : undefined
  } catch (err) {
    if ((err as KtError).code !== 'KT_ERR_NOT_RUNNING') throw err
  }

  if (running) {
    const q = o.cluster !== undefined ? `?cluster=${encodeURIComponent(o.cluster)}` : ''
    await controlRequest(state?.controlSocket ?? socket, 'POST', `/down${q}`, 5000)
    o.print(`asked kind-tunnel up (pid ${pid ?? '?'}) to stop${o.cluster !== undefined ? ` serving ${o.cluster}` : ''}; waiting for it to drain and clean up`)
    const deadline = Date.now() + (o.timeoutMs ?? 90_000)
    // Bounded: polls every 100 ms until the deadline.
    for (let i = 0; Date.now() < deadline && i < 10_000; i++) {
      await sleep(100)
      if (o.cluster !== undefined) {
        const s = await readState(o.stateDir).catch(() => undefined)
        if (s === undefined || !s.clusters.some((c) => c.name === o.cluster)) break
        continue
      }
      const gone = pid !== undefined ? !pidAlive(pid) : (await readState(o.stateDir).catch(() => undefined)) === undefined
      if (gone) break
    }
    const after = await readState(o.stateDir)
    const stillRunning = pid !== undefined && pidAlive(pid)
    if (o.cluster === undefined && stillRunning) {
      throw new KtError('KT_ERR_CLEANUP', `kind-tunnel up (pid ${pid ?? '?'}) did not stop within ${o.timeoutMs ?? 90_000} ms`)
    }
    const left = after?.clusters.filter((c) => o.cluster === undefined || c.name === o.cluster) ?? []
    if (left.length === 0 || stillRunning) {
      o.print(o.cluster !== undefined ? `cluster ${o.cluster}: everything undone` : 'stopped; everything undone')
      return 0
    }
    o.print('kind-tunnel up stopped but left changes; undoing them from the state file')
  }

  const current = await readState(o.stateDir)
  if (current === undefined) {
    o.print('nothing to undo: no kind-tunnel up is running and no state file is left')
    return 0
  }
  const mine = current.clusters.filter((c) => o.cluster === undefined || c.name === o.cluster)
  if (!running && current.pid !== process.pid && pidAlive(current.pid) && mine.some(hasLeftovers) && o.force !== true) {
    throw new KtError('KT_ERR_ALREADY_RUNNING', `process ${current.pid} from the state file is alive but its control socket does not answer; stop it first (kill ${current.pid}), or pass --force if that pid is not kind-tunnel`)
  }
  if (o.cluster !== undefined && !current.clusters.some((c) => c.name === o.cluster)) {
    o.print(`nothing to undo for cluster ${o.cluster}`)
    return 0
  }
  const { reports, left } = await undoState(current, {
    logger: o.logger,
    controller: o.controller,
    docker: o.docker,
    ...(o.openAddresses !== undefined ? { openAddresses: o.openAddresses } : {}),
  }, o.cluster)
  for (const r of reports) {
    for (const s of r.steps) o.print(`${s.ok ? 'ok  ' : 'FAIL'} ${r.cluster}: ${s.what}: ${s.detail}`)
  }
  // `down` releases the addresses a stopped up kept for its Services.
  for (const c of mine) {
    const n = allocationCount(c)
    if (n > 0) o.print(`ok   ${c.name}: forgot the LB IPs of ${n} Service${n === 1 ? '' : 's'} kept for the next up`)
  }
  if (!running && process.platform !== 'win32') {
    // The dead up's socket file: nothing answers on it any more.
    await rm(current.controlSocket, { force: true }).catch(() => {})
  }
  if (left === undefined) {
    await removeState(o.stateDir)
    if (reports.length > 0) o.print(`undone what kind-tunnel up (pid ${current.pid}) left behind`)
    return 0
  }
  const forgotten = left.clusters.map((c) => (o.cluster === undefined || c.name === o.cluster) && c.allocations !== undefined ? (({ allocations: _a, ...rest }) => rest)(c) : c)
  await writeState(o.stateDir, { ...left, clusters: forgotten, controlSocket: current.controlSocket })
  const failed = reports.some((r) => r.left !== undefined)
  if (!failed) return 0
  o.print('some changes could not be undone; fix the failures above and run `kind-tunnel down` again')
  return 1
}
