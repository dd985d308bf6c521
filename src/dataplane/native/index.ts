// The optional native splice fast path (issue #8). JS keeps the control plane
// (accept, peek, route, connect); once both sockets are connected it hands them
// to an N-API addon whose worker thread moves the bytes with splice(2), or with
// a read/write loop in mode 'rw'. perf-anchors.md ("Levers measured side by
// side"): this is what beats docker-proxy on bulk and keep-alive, where pure-JS
// tuning stays at about 0.5-0.7x.
//
// The addon is optional. loadNativeSplicer() returns undefined when it is not
// built (build-addon.mjs never fails an install), fails to load, the platform
// is not Linux, or KT_NATIVE=0; the caller then uses the pure-JS splice.

import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import type { Socket } from 'node:net'
import { availableParallelism } from 'node:os'
import { InvalidArgumentError, KtError } from '../../errors.js'
import { locateAddon, nativeRequired, platformTag } from './locate.js'

import { SPLICE_CAUSES, VOCAB_HASH, type SpliceCause } from '../vocab.js'
export type { SpliceCause }

export interface SpliceResult {
  /** Bytes written to b: headAtoB, then what JS had buffered from a, then what native read from a. */
  aToB: number
  /** Bytes written to a, likewise. */
  bToA: number
  /**
   * eof: both directions ended cleanly (each EOF passed on as a FIN).
   * reset-a / reset-b: that side failed with ECONNRESET or EPIPE; the other side was reset.
   * idle-timeout: no byte moved either way for the timeout; both sides were reset (as the pure-JS path does).
   * error: any other failure (errno says which); both sides were reset.
   * aborted: abort() or close(); both sides were reset, so a cut transfer never looks complete.
   */
  cause: SpliceCause
  /** The errno name (ECONNRESET, EPIPE, ETIMEDOUT, EMFILE, ...) when an error ended the pair. */
  errno?: string
}

export interface SpliceOptions {
  /** No byte in either direction for this long ends the pair (0: never). */
  idleTimeoutMs: number
  /** Written to b before anything else (peeked bytes), ahead of what a's JS buffer holds. */
  headAtoB?: Buffer
  /** Once one direction has ended, quiet for this long ends the pair (default 30 s, as anchors.md; 0: off). */
  halfCloseTimeoutMs?: number
}

export interface SpliceHandle {
  /** Stop the pair now: both sides reset, cause 'aborted'. Safe to call at any time, any number of times. */
  abort (): void
}

export interface NativeSplicer {
  readonly mode: 'splice' | 'rw'
  /**
   * Hand two connected TCP sockets to the native thread. Preconditions the caller guarantees:
   * both sockets are paused (client accepted with pauseOnConnect, or paused after peeking) and JS has
   * nothing pending to write on either. Bytes already buffered inside the JS sockets (readableLength)
   * are moved across: they are read here and written by native first, after headAtoB.
   * Returns a handle whose abort() stops the pair (cause 'aborted', used for drain timeouts/reloads).
   *
   * Either it throws a KtError synchronously (KT_ERR_NATIVE_FD, KT_ERR_NATIVE_HANDOFF,
   * KT_ERR_NATIVE_CLOSED, KT_ERR_NATIVE_SPLICE, KT_ERR_INVALID_ARG), and the caller still owns both
   * sockets with nothing lost (any bytes taken from their buffers are unshifted back), or `done`
   * runs exactly once, on the JS thread, after native has let go of the sockets. `done` must then
   * destroy both sockets with plain destroy(): a reset was already sent where the cause calls for one.
   * After the handoff JS must not read, write, pause/resume or time out either socket.
   */
  splice (a: Socket, b: Socket, opts: SpliceOptions, done: (r: SpliceResult) => void): SpliceHandle
  stats (): SplicerStats
  /** Abort every pair (each still gets its done, cause 'aborted') and stop the worker thread. */
  close (): void
}

export interface SplicerStats {
  /** Pairs handed over and not yet reported done. */
  pairs: number
  /** Empty pipes kept for reuse (mode 'splice'). */
  pipesPooled: number
  /** Chunks carried through a buffer because no pipe could be created (EMFILE/ENFILE), since start. */
  pipeFallbacks: number
}

export interface LoadOptions {
  /** Overrides KT_NATIVE_MODE (splice | rw). */
  mode?: 'splice' | 'rw'
  /** Pipe capacity in bytes for mode 'splice' (F_SETPIPE_SZ; default 256 KiB); 0 keeps the kernel's default (64 KiB). */
  pipeSize?: number
  /** Path of kt_splice.node; otherwise KT_NATIVE_ADDON, then the build folder beside the sources. */
  addonPath?: string
  /**
   * Worker threads, each with its own epoll set; a new pair goes to the least busy (at most 64).
   * Default min(2, available CPUs): on 2 cores shared with the load, a second thread served
   * keep-alive traffic 1.0-1.45x docker-proxy against 0.75-1.3x for one (one bulk stream gains nothing).
   */
  threads?: number
}

const MAX_TIMER_MS = 2 ** 31 - 1
// Measured on 2 shared cores, bulk through a 256 KiB pipe ran 1.0-1.4x the
// kernel's 64 KiB default at 10-20% less CPU per byte: fewer splices per byte.
// The pages are the socket's own (splice moves references), so it adds no copy.
const DEFAULT_PIPE_SIZE = 256 * 1024

type OnDone = (id: number, aToB: number, bToA: number, cause: number, errno: string | undefined) => void

interface Binding {
  createEngine (mode: 0 | 1, pipeSize: number, onDone: OnDone): object
  add (engine: object, id: number, fdA: number, fdB: number, idleMs: number,
    headAtoB: Buffer | undefined, headBtoA: Buffer | undefined, halfCloseMs: number): void
  abort (engine: object, id: number): void
  stats (engine: object): [number, number, number]
  ref (engine: object, on: boolean): void
  close (engine: object): void
}

/** The native accept+connect lane's entry points (kt_lane_napi.c); fastlane.ts is their only user. */
export interface LaneBinding {
  /** connectBuckets: the connect-latency histogram's bounds in seconds (ascending); without them nothing is timed. */
  createLane (engines: object[], onEvents: (records: Float64Array) => void, connectBuckets?: readonly number[]): object
  /** start false: accept only after laneStart, once the ranges and backends are pushed. */
  laneListen (lane: object, id: number, fd: number, start?: boolean): object
  /** Begin accepting on a listener created with start false. */
  laneStart (l: object): void
  laneConfigure (l: object, maxConns: number, connectMs: number, idleMs: number, halfMs: number, attempts: number, policy: number, log: number): void
  /** The backends in rotation of upstream group `group` (0 when omitted: the default on an L4 listener). */
  laneSetBackends (l: object, ids: number[], hosts: string[], ports: number[], group?: number): void
  /**
   * Routed listeners (issue #3): whether to peek, the hostname routes (names
   * normalised and deduplicated as HostMatcher does; `wild` 1 for `*.suffix`,
   * the name then being the suffix), each to a group, the default group (-1:
   * none), the peek deadline and the number of groups; then the source
   * ranges: each route's set in aclSets (-1: everyone), the listener's own.
   */
  laneSetRoutes (l: object, routed: number, names: string[], wild: number[], groups: number[], defaultGroup: number, peekMs: number, nGroups: number,
    acls: number[], listenerAcl: number, aclSets: string[][]): void
  laneStop (l: object): void
  laneDupFd (l: object): number
  laneAbort (l: object): void
  laneStats (l: object, out: Float64Array): void
  laneBackendActive (lane: object, id: number): number
  /** Whether no lane pair holds the id's slot (JS then may give it to another backend; it pushes the id nowhere any more). */
  laneBackendFree (lane: object, id: number): boolean
  laneSetCap (lane: object, n: number): void
  laneRef (lane: object, on: boolean): void
  laneClose (lane: object): void
  /**
   * A backend's lane connect latencies so far: out[0] the sum in seconds,
   * out[1..n+1] the count per bucket of createLane's bounds (the last one past
   * every bound). false when nothing was ever pushed for that id.
   */
  laneConnectStats (lane: object, id: number, out: Float64Array): boolean
  /** A relay listener (kt_relay_napi.c; relay/native-lane.ts): configure it before laneStart, read RELAY_STATS, end its header phases. */
  laneRelay (l: object, token: Buffer, windowMs: number, headerMs: number, idleMs: number, info: number, allow: readonly string[], portMin: number, portMax: number, extra: readonly number[], mux?: boolean): void
  laneRelayStats (l: object, out: Float64Array): void
  laneRelayQuiet (l: object): void
}

/**
 * The lane binding and the engines (worker threads) of a splicer loaded here
 * (undefined for another NativeSplicer). The addon is built from this tree
 * (its vocabulary is checked when it loads), so it always has the lane. The
 * lane runs on the splicer's own threads: accepted pairs are spliced without a thread hop.
 */
export function laneBindingOf (s: NativeSplicer): { binding: LaneBinding, engines: object[] } | undefined {
  if (!(s instanceof Splicer)) return undefined
  return { binding: s.binding as unknown as LaneBinding, engines: s.engineHandles() }
}

/** The C first-flight parser and matcher (kt_peek.c), for the differential tests only. */
export interface NativePeekHooks {
  /** [kind, reason, proto, name, decidedAt]: feeds buf cut at `cuts` (growing lengths), then whole. */
  peekParse (buf: Buffer, cuts?: number[]): [number, number, number, string | undefined, number]
  /** Index of the entry the name matches (HostMatcher semantics), or -1. Entries normalised, wildcards without `*.`. */
  peekMatch (names: string[], wild: number[], name: string): number
}

/** The test hooks of the addon loaded as loadNativeSplicer() would, or undefined. */
export function nativePeekHooks (addonPath?: string): NativePeekHooks | undefined {
  if (process.env['KT_NATIVE'] === '0' || process.platform !== 'linux') return undefined
  const b = loadBinding(addonPath) as Partial<NativePeekHooks> | undefined
  if (b === undefined || typeof b.peekParse !== 'function' || typeof b.peekMatch !== 'function') return undefined
  return b as NativePeekHooks
}

let loadError: string | undefined

/** Why the last loadNativeSplicer() returned undefined (for `doctor` and logs), or undefined if it did not. */
export function nativeUnavailableReason (): string | undefined {
  return loadError
}

let cachedBinding: Binding | undefined
let cachedHow: string | undefined

function requireAddon (file: string): Binding {
  const binding = createRequire(import.meta.url)(file) as Binding & { vocabHash?: unknown }
  if (typeof binding.createEngine !== 'function') throw new Error('not the kind-tunnel splice addon')
  // Outcomes, causes, the record and stats layouts and error codes are
  // generated for both sides from src/dataplane/vocab.json: an addon built
  // from another definition would be read wrong, so it is not used.
  if (binding.vocabHash !== VOCAB_HASH) {
    throw new Error(`built from another vocabulary (addon ${String(binding.vocabHash)}, this tree ${VOCAB_HASH}): rebuild it (npm run build)`)
  }
  return binding
}

/** KT_REQUIRE_NATIVE=1 turns "no addon" into an error (CI): a broken build must never fall back silently. */
function unavailable (why: string, explicit: string | undefined): undefined {
  loadError = why
  if (explicit === undefined && nativeRequired()) throw new KtError('KT_ERR_NATIVE_UNAVAILABLE', `KT_REQUIRE_NATIVE=1: ${why}`)
  return undefined
}

function loadBinding (explicit: string | undefined): Binding | undefined {
  if (explicit === undefined && cachedBinding !== undefined) return cachedBinding
  let file: string
  let how: string
  if (explicit !== undefined) {
    if (!existsSync(explicit)) return unavailable(`the native addon is not built (${explicit})`, explicit)
    file = explicit
    how = explicit
  } else {
    const found = locateAddon()
    if (found.pick === undefined) return unavailable(found.notes.join('; ') || 'the native addon is not built (npm run build)', explicit)
    file = found.pick.file
    how = found.pick.how
  }
  try {
    const binding = requireAddon(file)
    if (explicit === undefined) {
      cachedBinding = binding
      cachedHow = how
    }
    return binding
  } catch (err) {
    return unavailable(`the native addon ${file} failed to load: ${(err as Error).message.split('\n')[0] ?? ''}`, explicit)
  }
}

/**
 * The data path this process gets, for `doctor` and logs: native with how the
 * addon was found (`prebuilt linux-x64`, `local build`, ...), or pure JS with why.
 * Loads the addon (a broken one reports its load error) but starts no thread.
 */
export function nativeDataPath (): { native: true, how: string } | { native: false, why: string } {
  loadError = undefined
  if (process.env['KT_NATIVE'] === '0') return { native: false, why: 'disabled by KT_NATIVE=0' }
  try {
    if (loadBinding(undefined) !== undefined) return { native: true, how: cachedHow ?? 'loaded' }
  } catch (err) {
    return { native: false, why: (err as Error).message }
  }
  return { native: false, why: loadError ?? 'unknown' }
}

/** undefined when the addon is not built, fails to load, the platform is unsupported, or KT_NATIVE=0. */
export function loadNativeSplicer (opts: LoadOptions = {}): NativeSplicer | undefined {
  loadError = undefined
  if (process.env['KT_NATIVE'] === '0') {
    loadError = 'disabled by KT_NATIVE=0'
    return undefined
  }
  const envMode = process.env['KT_NATIVE_MODE']
  const mode = opts.mode ?? (envMode === 'rw' ? 'rw' : 'splice')
  const pipeSize = opts.pipeSize ?? DEFAULT_PIPE_SIZE
  if (!Number.isInteger(pipeSize) || pipeSize < 0 || pipeSize > 2 ** 30) {
    throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `pipeSize must be an integer from 0 to 2^30, got ${String(opts.pipeSize)}`)
  }
  const threads = opts.threads ?? Math.min(2, availableParallelism())
  if (!Number.isInteger(threads) || threads < 1 || threads > 64) {
    throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `threads must be an integer from 1 to 64, got ${String(opts.threads)}`)
  }
  // The worker uses epoll and splice(2); macOS/Windows would need kqueue/IOCP ports of the 'rw' loop.
  if (process.platform !== 'linux') return unavailable(`no addon for ${platformTag()}; the native data plane is Linux only`, opts.addonPath)
  const binding = loadBinding(opts.addonPath)
  if (binding === undefined) return undefined
  try {
    return new Splicer(binding, mode, pipeSize, threads)
  } catch (err) {
    return unavailable(`the native splicer could not start: ${(err as Error).message}`, opts.addonPath)
  }
}

interface NodeHandle { fd?: unknown, reading?: boolean, readStop?: () => number, readStart?: () => number }

function handleOf (s: Socket): NodeHandle | undefined {
  return (s as unknown as { _handle?: NodeHandle | null })._handle ?? undefined
}

function fdOf (s: Socket, which: string): number {
  // A TLS socket's bytes on the wire are not its plaintext: only raw TCP splices.
  if ((s as { encrypted?: unknown }).encrypted === true) {
    throw new KtError('KT_ERR_NATIVE_FD', `socket ${which} is a TLS socket; only raw TCP sockets can be spliced`)
  }
  const fd = handleOf(s)?.fd
  // Linux exposes the descriptor on the TCP handle; a TLS socket, a pipe or a
  // closed socket has none, and those cannot be spliced.
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) {
    throw new KtError('KT_ERR_NATIVE_FD', `socket ${which} has no usable file descriptor`)
  }
  return fd
}

function checkHandoff (s: Socket, which: string): void {
  if (s.destroyed || s.connecting) {
    throw new KtError('KT_ERR_NATIVE_HANDOFF', `socket ${which} is ${s.destroyed ? 'destroyed' : 'still connecting'}`)
  }
  if (s.writableLength > 0) {
    throw new KtError('KT_ERR_NATIVE_HANDOFF', `socket ${which} has ${s.writableLength} bytes queued by JS`)
  }
  // Native passes each EOF on itself; a FIN JS already sent would make its writes fail.
  if (s.writableEnded) {
    throw new KtError('KT_ERR_NATIVE_HANDOFF', `socket ${which} was already ended by JS`)
  }
}

// Make libuv stop reading the fd so that from here on only the native thread
// does; this is what Node itself does when push() reports a full buffer
// (onStreamRead). A socket that is merely pause()d keeps reading until its
// highWaterMark, which would strand bytes in JS.
function stopReading (s: Socket): boolean {
  const h = handleOf(s)
  if (h !== undefined && h.reading === true && typeof h.readStop === 'function') {
    h.reading = false
    h.readStop()
    return true
  }
  return false
}

// A refused handoff gives the socket back reading as it was: the stream may
// still count a read in progress (state.reading), and then resume() would not
// start one, so the socket would never read again.
function restartReading (s: Socket): void {
  const h = handleOf(s)
  if (h !== undefined && h.reading === false && typeof h.readStart === 'function') {
    h.reading = true
    h.readStart()
  }
}

// Take whatever JS already holds from this socket. read() may call readStart()
// when the buffer is below its highWaterMark; that only arms the poll watcher
// (no read happens until the loop polls), so stopping again right after is safe.
function takeBuffered (s: Socket): Buffer | undefined {
  if (s.readableLength === 0) return undefined
  if (s.readableFlowing === true) s.pause()
  // read() also emits 'data' with what it returns: a leftover peek listener must
  // not see bytes that now belong to native.
  const listeners = s.rawListeners('data') as Array<(...args: unknown[]) => void>
  s.removeAllListeners('data')
  let chunk: unknown
  try {
    chunk = s.read()
  } finally {
    for (const l of listeners) s.on('data', l)
  }
  stopReading(s)
  if (chunk === null || chunk === undefined) return undefined
  return typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk as Buffer
}

function noRead (): void {}

// From here JS no longer drives the socket. Node itself would otherwise start
// reading again: afterConnect() calls read(0) right after emitting 'connect'
// (so a handoff from a 'connect' listener would lose the next 64 KiB to JS),
// and any read()/resume() would re-arm libuv. Nor may Node end the socket
// (allowHalfOpen false ends the writable side on 'end') or time it out.
function handOver (s: Socket): void {
  s.pause()
  ;(s as unknown as { _read: () => void })._read = noRead
  s.allowHalfOpen = true
  s.setTimeout(0)
}

interface Engine {
  readonly handle: object
  /** Pairs handed to this engine and not yet reported done. */
  live: number
  refd: boolean
}

interface Pending {
  readonly done: (r: SpliceResult) => void
  readonly engine: Engine
}

class Splicer implements NativeSplicer {
  readonly mode: 'splice' | 'rw'
  readonly #binding: Binding
  readonly #engines: Engine[] = []
  /** @internal for laneBindingOf */
  get binding (): Binding { return this.#binding }
  /** @internal for laneBindingOf */
  engineHandles (): object[] { return this.#engines.map((e) => e.handle) }
  readonly #pending = new Map<number, Pending>()
  #nextId = 1
  #closed = false

  constructor (binding: Binding, mode: 'splice' | 'rw', pipeSize: number, threads: number) {
    this.mode = mode
    this.#binding = binding
    try {
      for (let i = 0; i < threads; i++) {
        this.#engines.push({ handle: binding.createEngine(mode === 'rw' ? 1 : 0, pipeSize, this.#onDone), live: 0, refd: false })
      }
    } catch (err) {
      for (const e of this.#engines) binding.close(e.handle)
      throw err
    }
  }

  // Runs on the JS thread, called by an engine's threadsafe function.
  readonly #onDone: OnDone = (id, aToB, bToA, cause, errno) => {
    const p = this.#pending.get(id)
    if (p === undefined) return
    this.#pending.delete(id)
    if (--p.engine.live === 0) this.#setRef(p.engine, false)
    const r: SpliceResult = { aToB, bToA, cause: SPLICE_CAUSES[cause] ?? 'error' }
    if (errno !== undefined) r.errno = errno
    p.done(r)
  }

  #setRef (e: Engine, on: boolean): void {
    if (e.refd === on || this.#closed) return
    e.refd = on
    this.#binding.ref(e.handle, on)
  }

  splice (a: Socket, b: Socket, opts: SpliceOptions, done: (r: SpliceResult) => void): SpliceHandle {
    if (this.#closed) throw new KtError('KT_ERR_NATIVE_CLOSED', 'the native splicer is closed')
    const idle = opts.idleTimeoutMs
    const half = opts.halfCloseTimeoutMs ?? 30_000
    for (const [name, v] of [['idleTimeoutMs', idle], ['halfCloseTimeoutMs', half]] as const) {
      if (!Number.isInteger(v) || v < 0 || v > MAX_TIMER_MS) {
        throw new InvalidArgumentError('KT_ERR_INVALID_ARG', `${name} must be an integer from 0 to ${MAX_TIMER_MS}, got ${String(v)}`)
      }
    }
    if (typeof done !== 'function') throw new InvalidArgumentError('KT_ERR_INVALID_ARG', 'done must be a function')
    const fdA = fdOf(a, 'a')
    const fdB = fdOf(b, 'b')
    if (fdA === fdB) throw new KtError('KT_ERR_NATIVE_HANDOFF', 'a and b are the same socket')
    checkHandoff(a, 'a')
    checkHandoff(b, 'b')

    const wasReading = [stopReading(a), stopReading(b)]
    const restA = takeBuffered(a)
    const restB = takeBuffered(b)
    let headAtoB = opts.headAtoB
    if (restA !== undefined) headAtoB = headAtoB === undefined || headAtoB.length === 0 ? restA : Buffer.concat([headAtoB, restA])
    const id = this.#nextId++
    // The least busy worker thread takes the pair.
    let engine = this.#engines[0]!
    for (const e of this.#engines) if (e.live < engine.live) engine = e
    try {
      this.#binding.add(engine.handle, id, fdA, fdB, idle, headAtoB, restB, half)
    } catch (err) {
      // Give the sockets back as they were: nothing taken from them is lost.
      if (restA !== undefined) a.unshift(restA)
      if (restB !== undefined) b.unshift(restB)
      if (wasReading[0] === true || restA !== undefined) restartReading(a)
      if (wasReading[1] === true || restB !== undefined) restartReading(b)
      const code = (err as { code?: unknown }).code
      throw new KtError('KT_ERR_NATIVE_SPLICE', `the native splicer refused the pair (${typeof code === 'string' ? code : 'unknown'})`, { cause: err })
    }
    handOver(a)
    handOver(b)
    this.#pending.set(id, { done, engine })
    // A paused socket does not keep the event loop alive; the pending done must.
    if (engine.live++ === 0) this.#setRef(engine, true)
    return { abort: () => { if (!this.#closed && this.#pending.has(id)) this.#binding.abort(engine.handle, id) } }
  }

  stats (): SplicerStats {
    const out: SplicerStats = { pairs: 0, pipesPooled: 0, pipeFallbacks: 0 }
    for (const e of this.#engines) {
      const [pairs, pipesPooled, pipeFallbacks] = this.#binding.stats(e.handle)
      out.pairs += pairs
      out.pipesPooled += pipesPooled
      out.pipeFallbacks += pipeFallbacks
    }
    if (this.#closed) out.pairs = this.#pending.size
    return out
  }

  close (): void {
    if (this.#closed) return
    // Completions for the aborted pairs are still delivered after this.
    for (const e of this.#engines) this.#setRef(e, e.live > 0)
    this.#closed = true
    for (const e of this.#engines) this.#binding.close(e.handle)
  }
}
