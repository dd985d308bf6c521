// The state file: what a running `up` changed on this machine and in its
// clusters, written before each change takes effect, so that after a crash
// or `kill -9` the next `up` or `down` can undo what was left: loopback
// aliases, relay containers, Service statuses and finalizers.
//
// It also remembers which LB IP each Service was given (`allocations`), so
// the next `up` (after Ctrl-C, a crash, or a kubeconfig change) gives every
// Service back the address it had, even when the API server has cleared the
// Service's status in between. A clean stop keeps only that memory; `down`
// forgets it too.
//
// It holds no credentials: a kubeconfig is recorded by path (or as "found
// through Docker", to be read again), never by content.

import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { KtError } from '../errors.js'
import { parseIp } from '../routing/cidr.js'

/** 2 added `allocations`; a version-1 file (older kind-tunnel) is still read and undone. */
export const STATE_VERSION = 2
const READABLE_VERSIONS: readonly number[] = [1, 2]
export const STATE_FILE = 'state.json'
export const SOCKET_FILE = 'control.sock'

/** Where the cluster's kubeconfig came from, so a later `down` can reach the API again. */
export type KubeconfigSource =
  | { readonly kind: 'file', readonly path: string }
  | { readonly kind: 'docker' }
  /** `demo`: the API server lives and dies with the process; nothing to clean remotely. */
  | { readonly kind: 'ephemeral' }

export interface ClusterState {
  readonly name: string
  readonly mode: 'direct' | 'relay' | 'sidecar'
  readonly kubeconfig: KubeconfigSource
  readonly ipPool: string
  /** Where LB IPs are bound: `lo` (loopback, the platform backend) or an interface (sidecar). */
  readonly device: string
  /** Every LB IP `up` asked to be bound, in the order it asked. */
  readonly addresses: readonly string[]
  readonly relay?: { readonly name: string, readonly containerId: string }
  /** `namespace/name` → the LB IP the Service was given (ip and both modes), to give it back after a restart. */
  readonly allocations?: Readonly<Record<string, string>>
}

/** Whether the entry names something to undo (an address, a relay, statuses through the API), beyond remembered allocations. */
export function hasLeftovers (c: ClusterState): boolean {
  return c.addresses.length > 0 || c.relay !== undefined || c.kubeconfig.kind !== 'ephemeral'
}

/** The entry reduced to its remembered allocations (nothing to undo), or undefined when it remembers none. */
export function rememberedOnly (c: ClusterState): ClusterState | undefined {
  if (c.allocations === undefined || Object.keys(c.allocations).length === 0) return undefined
  return { name: c.name, mode: c.mode, kubeconfig: { kind: 'ephemeral' }, ipPool: c.ipPool, device: c.device, addresses: [], allocations: c.allocations }
}

/** How many Service addresses an entry remembers. */
export function allocationCount (c: ClusterState): number {
  return Object.keys(c.allocations ?? {}).length
}

/** The remembered allocations of an entry, for the controller's `allocations` option. */
export function allocationMap (c: ClusterState | undefined): Map<string, string> {
  return new Map(Object.entries(c?.allocations ?? {}))
}

export interface UpState {
  readonly v: number
  readonly pid: number
  readonly startedAt: string
  readonly controlSocket: string
  readonly clusters: readonly ClusterState[]
}

export interface StateDirOptions {
  readonly stateDir?: string | undefined
  readonly env?: Readonly<Record<string, string | undefined>>
  readonly platform?: string
}

/**
 * `--state-dir`, else KIND_TUNNEL_STATE_DIR, else the platform's per-user
 * state directory: $XDG_STATE_HOME/kind-tunnel or ~/.local/state/kind-tunnel
 * (XDG Base Directory spec), %LOCALAPPDATA%\kind-tunnel on Windows.
 */
export function resolveStateDir (opts: StateDirOptions = {}): string {
  if (opts.stateDir !== undefined && opts.stateDir !== '') return opts.stateDir
  const env = opts.env ?? process.env
  const fromEnv = env.KIND_TUNNEL_STATE_DIR
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv
  if ((opts.platform ?? process.platform) === 'win32') {
    return join(env.LOCALAPPDATA ?? join(homedir(), 'AppData', 'Local'), 'kind-tunnel')
  }
  const xdg = env.XDG_STATE_HOME
  if (xdg !== undefined && xdg.startsWith('/')) return join(xdg, 'kind-tunnel')
  return join(env.HOME ?? homedir(), '.local', 'state', 'kind-tunnel')
}

/** The control endpoint for a state dir: a unix socket inside it, or a named pipe on Windows. */
export function controlPath (stateDir: string, platform: string = process.platform): string {
  if (platform === 'win32') {
    // Named pipes live in their own namespace; derive a stable name from the dir.
    let h = 0
    for (const c of stateDir.toLowerCase()) h = (Math.imul(h, 31) + c.charCodeAt(0)) >>> 0
    return `\\\\.\\pipe\\kind-tunnel-${h.toString(16)}`
  }
  return join(stateDir, SOCKET_FILE)
}

export async function ensureStateDir (dir: string): Promise<void> {
  // 0700: the control socket in it can stop `up`, and only its user may.
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'UNKNOWN'
    throw new KtError('KT_ERR_STATE_FILE', `cannot create the state dir ${dir} (${code}); point --state-dir or KIND_TUNNEL_STATE_DIR at a writable folder`, { cause: err })
  }
}

function isStringArray (v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string')
}

function parseAllocations (v: unknown): Record<string, string> | null {
  if (v === undefined) return {}
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return null
  const out: Record<string, string> = {}
  for (const [k, ip] of Object.entries(v)) {
    if (typeof ip !== 'string' || parseIp(ip) === null || !/^[^/\s]+\/[^/\s]+$/.test(k)) return null
    out[k] = ip
  }
  return out
}

function parseCluster (c: unknown): ClusterState | null {
  if (c === null || typeof c !== 'object') return null
  const o = c as Record<string, unknown>
  if (typeof o.name !== 'string' || typeof o.ipPool !== 'string' || typeof o.device !== 'string' || !isStringArray(o.addresses)) return null
  if (o.mode !== 'direct' && o.mode !== 'relay' && o.mode !== 'sidecar') return null
  const k = o.kubeconfig as Record<string, unknown> | undefined
  let kubeconfig: KubeconfigSource
  if (k?.kind === 'file' && typeof k.path === 'string') kubeconfig = { kind: 'file', path: k.path }
  else if (k?.kind === 'docker') kubeconfig = { kind: 'docker' }
  else if (k?.kind === 'ephemeral') kubeconfig = { kind: 'ephemeral' }
  else return null
  const r = o.relay as Record<string, unknown> | undefined
  const relay = r !== undefined && typeof r.name === 'string' && typeof r.containerId === 'string' ? { name: r.name, containerId: r.containerId } : undefined
  const allocations = parseAllocations(o.allocations)
  if (allocations === null) return null
  return {
    name: o.name, mode: o.mode, kubeconfig, ipPool: o.ipPool, device: o.device, addresses: o.addresses,
    ...(relay !== undefined ? { relay } : {}),
    ...(Object.keys(allocations).length > 0 ? { allocations } : {}),
  }
}

/** The state file of `dir`, or undefined when there is none. Throws KT_ERR_STATE_FILE when it is unreadable. */
export async function readState (dir: string): Promise<UpState | undefined> {
  const path = join(dir, STATE_FILE)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new KtError('KT_ERR_STATE_FILE', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err })
  }
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new KtError('KT_ERR_STATE_FILE', `${path} is not JSON; remove it after checking \`kind-tunnel doctor\``, { cause: err })
  }
  const o = raw as Record<string, unknown>
  if (o !== null && typeof o === 'object' && typeof o.v === 'number' && Number.isInteger(o.v) && o.v > STATE_VERSION) {
    throw new KtError('KT_ERR_STATE_FILE', `${path} was written by a newer kind-tunnel (state version ${o.v}, this one reads up to ${STATE_VERSION}); undo with that version (\`kind-tunnel down\`), or remove the file after checking \`kind-tunnel doctor\``)
  }
  if (o === null || typeof o !== 'object' || !READABLE_VERSIONS.includes(o.v as number) || typeof o.pid !== 'number' || typeof o.controlSocket !== 'string' || !Array.isArray(o.clusters)) {
    throw new KtError('KT_ERR_STATE_FILE', `${path} is not a kind-tunnel state file (version ${READABLE_VERSIONS.join(' or ')}); remove it after checking \`kind-tunnel doctor\``)
  }
  const clusters: ClusterState[] = []
  for (const c of o.clusters) {
    const p = parseCluster(c)
    if (p === null) throw new KtError('KT_ERR_STATE_FILE', `${path} has a malformed cluster entry; remove it after checking \`kind-tunnel doctor\``)
    clusters.push(p)
  }
  return { v: STATE_VERSION, pid: o.pid, startedAt: typeof o.startedAt === 'string' ? o.startedAt : '', controlSocket: o.controlSocket, clusters }
}

/** Atomic replace: a reader (or a crash) never sees half a file. */
export async function writeState (dir: string, state: UpState): Promise<void> {
  const path = join(dir, STATE_FILE)
  const tmp = `${path}.${process.pid}.tmp`
  await writeFile(tmp, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 })
  await rename(tmp, path)
}

export async function removeState (dir: string): Promise<void> {
  await rm(join(dir, STATE_FILE), { force: true })
}

/** Whether a process with this pid exists (EPERM: it exists but is someone else's). */
export function pidAlive (pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * A serialised writer for one `up`: every change goes through `update`, and
 * writes happen one after another, so the file always reflects a prefix of
 * the changes in order.
 */
export class StateWriter {
  readonly dir: string
  #state: UpState
  #queue: Promise<void> = Promise.resolve()

  constructor (dir: string, initial: UpState) {
    this.dir = dir
    this.#state = initial
  }

  get state (): UpState {
    return this.#state
  }

  update (fn: (s: UpState) => UpState): Promise<void> {
    this.#state = fn(this.#state)
    const snapshot = this.#state
    const run = this.#queue.then(() => writeState(this.dir, snapshot))
    this.#queue = run.catch(() => {})
    return run
  }

  cluster (name: string, fn: (c: ClusterState) => ClusterState): Promise<void> {
    return this.update((s) => ({ ...s, clusters: s.clusters.map((c) => c.name === name ? fn(c) : c) }))
  }

  async flush (): Promise<void> {
    await this.#queue
  }
}
