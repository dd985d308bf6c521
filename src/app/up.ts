// `kind-tunnel up`: the whole flow of docs/architecture.md, in-process, so the
// CLI, `demo` and tests drive the same code.
//
//   state dir (refuse a second up; undo what a dead one left)
//   → control socket → data plane (one ListenerManager)
//   → clusters (Docker discovery or --kubeconfig) → mode per cluster (probe, log why)
//   → relay container + pooled dialer `relay:<cluster>` where needed
//   → one controller per cluster → its tables merged into one → apply
//   → ready; then wait for a signal or `down`
//   → stop: statuses and finalizers removed, connections drained, IPs
//     released, relays removed, state file deleted.
//
// Everything `up` changes is written to the state file BEFORE it happens.
//
// Over 500 lines: `up` is one ordered sequence with an undo for each step
// (state file first, then each change); split across files, the order and
// its undo would be read in two places.

import type { NativeSplicer } from '../dataplane/native/index.js'
import { readFile } from 'node:fs/promises'
import { errorCode, KtError } from '../errors.js'
import { ListenerManager, type ApplyResult } from '../dataplane/listener-manager.js'
import type { Dialer } from '../dataplane/dialer.js'
import type { Logger } from '../observe/logger.js'
import type { Registry } from '../observe/metrics.js'
import { startMetricsServer, type MetricsServer } from '../observe/metrics-server.js'
import type { KindCluster } from '../docker/discover.js'
import type { RelayInfo } from '../docker/relay-container.js'
import { RelayDialer } from '../relay/client.js'
import type { Addresses } from '../addresses/manager.js'
import { cidrSize, formatIp, parseCidr, type Cidr } from '../routing/cidr.js'
import { DEFAULT_IP_POOL, type RoutingOptions } from '../routing/compute.js'
import { mergeTables, type MergeConflict } from '../routing/merge.js'
import { listenerKey, type RouteTable } from '../routing/types.js'
import { openAddresses, sidecarNetwork, trackAddresses, type OpenAddressesOptions, type OpenedAddresses } from './addresses.js'
import type { UpConfig } from './config.js'
import { startControlServer, type ControlServer } from './control.js'
import type { ControllerHandle, ControllerModule } from './controller-port.js'
import type { DockerAccess } from './docker.js'
import {
  allocationMap, controlPath, ensureStateDir, hasLeftovers, readState, rememberedOnly, removeState, StateWriter, writeState, type ClusterState, type KubeconfigSource, type UpState,
  STATE_VERSION,
} from './state.js'
import { deriveServices, totals, type ClusterStatus, type UpStatus } from './status.js'
import { undoState, type ClusterUndo } from './undo.js'

export type UpEvent =
  | { type: 'recovering', pid: number }
  | { type: 'recovered', reports: ClusterUndo[] }
  | { type: 'cluster', name: string, mode: string, reason: string }
  | { type: 'relay', cluster: string, line: string }
  | { type: 'helper', argv: readonly string[] }
  | { type: 'listening', host: string, port: number, udp?: true }
  | { type: 'metrics', host: string, port: number }
  | { type: 'applied', version: number }
  | { type: 'synced', cluster: string }
  | { type: 'ready' }
  | { type: 'warn', message: string, code?: string }
  | { type: 'stopping', reason: string }
  | { type: 'cleaned', cluster: string }
  | { type: 'stopped', clean: boolean }

export interface UpDeps {
  readonly logger: Logger
  readonly registry: Registry
  /** Loads the controller starter (the real one pulls in the Kubernetes client). */
  readonly controller: () => Promise<ControllerModule>
  readonly docker: DockerAccess
  readonly openAddresses?: (o: OpenAddressesOptions) => OpenedAddresses
  readonly onEvent?: (e: UpEvent) => void
  /** Sidecar: the interfaces to look at (tests). */
  readonly interfaces?: Parameters<typeof sidecarNetwork>[1]
  /** The native splice fast path (absent: pure JS); the session loads it. */
  readonly splicer?: NativeSplicer | undefined
  /** The native accept lane for plain L4 listeners (ip mode); needs the splicer. */
  readonly nativeAccept?: 'auto' | 'off'
}

type ReachMode = 'direct' | 'relay' | 'sidecar'

interface ClusterPlan {
  readonly name: string
  readonly kubeconfig: string
  readonly source: KubeconfigSource
  readonly mode: ReachMode
  readonly reason: string
  readonly kind?: KindCluster
}

interface ClusterRun {
  readonly plan: ClusterPlan
  readonly pool: string
  readonly addresses: OpenedAddresses
  readonly forController: Addresses
  /** IPs whose release was put off until connections drained. */
  readonly deferred: string[]
  deferReleases: boolean
  controller?: ControllerHandle
  synced: boolean
  relay?: RelayInfo
  dialer?: RelayDialer
  error?: string
  stopped: boolean
  /** Stops watching the --kubeconfig file for changes. */
  unwatch?: () => void
}

const CONTEXT_RE = /^current-context:\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+))\s*$/m

/** The cluster a kubeconfig's current context names, without kind's `kind-` prefix. */
export function clusterFromKubeconfig (text: string): string | undefined {
  const m = CONTEXT_RE.exec(text)
  if (m === null) return undefined
  let name = m[1] !== undefined ? JSON.parse(`"${m[1]}"`) as string : (m[2] ?? m[3] ?? '')
  if (name.startsWith('kind-')) name = name.slice('kind-'.length)
  return name === '' ? undefined : name
}

/**
 * Cluster i of n gets block i of the pool split in 2^ceil(log2 n) equal parts,
 * so two clusters' controllers can never hand out the same IP. One cluster
 * keeps the whole pool.
 */
export function splitPool (pool: Cidr, n: number, i: number): string {
  if (n <= 1) return pool.text
  const bits = pool.family === 4 ? 32 : 128
  const extra = Math.ceil(Math.log2(n))
  const prefix = pool.prefix + extra
  if (prefix > bits - 2) throw new KtError('KT_ERR_IP_POOL_EXHAUSTED', `--ip-pool ${pool.text} is too small to split between ${n} clusters`)
  const size = cidrSize(pool) >> BigInt(extra)
  return `${formatIp(pool.family, pool.base + size * BigInt(i))}/${prefix}`
}

function withTimeout<T> (p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), ms) }),
  ])
}

export class UpRun {
  readonly cfg: UpConfig
  readonly deps: UpDeps
  readonly log: Logger
  readonly stateDir: string
  readonly startedAt = new Date().toISOString()
  readonly manager: ListenerManager
  readonly dialers = new Map<string, Dialer>()
  readonly clusters = new Map<string, ClusterRun>()
  readonly tables = new Map<string, RouteTable>()
  /** Resolves when everything is undone (or as far as it could be). */
  readonly done: Promise<void>
  state?: StateWriter
  control?: ControlServer
  metricsServer?: MetricsServer
  listenHost = '127.0.0.1'
  ready = false
  version = 0
  applied: RouteTable = { version: 0, listeners: [] }
  conflicts: MergeConflict[] = []
  private readonly reported = new Set<string>()
  private stopping: Promise<void> | undefined
  private starting: Promise<void> | undefined
  /** Fires when a stop is asked for while starting: long waits give up. */
  private readonly startAbort = new AbortController()
  private resolveDone!: () => void
  private clean = true
  /** `down` asked for the stop: forget the remembered allocations too. */
  private forget = false

  constructor (cfg: UpConfig, deps: UpDeps) {
    this.cfg = cfg
    this.deps = deps
    this.log = deps.logger.child({ module: 'up' })
    this.stateDir = cfg.stateDir
    this.manager = new ListenerManager({
      logger: deps.logger,
      metrics: deps.registry,
      options: cfg.dataplane,
      dialers: this.dialers,
      splicer: deps.splicer,
      nativeAccept: deps.nativeAccept ?? (deps.splicer === undefined ? 'off' : 'auto'),
    })
    this.done = new Promise((resolve) => { this.resolveDone = resolve })
  }

  private emit (e: UpEvent): void {
    try { this.deps.onEvent?.(e) } catch {}
  }

  private warn (message: string, fields: Record<string, unknown> = {}, code?: string): void {
    this.log.warn({ ...fields, ...(code !== undefined ? { code } : {}) }, message)
    this.emit({ type: 'warn', message, ...(code !== undefined ? { code } : {}) })
  }

  // ------------------------------------------------------------ start

  /** Runs until ready; throws (after undoing what it did) when it cannot start. */
  async start (): Promise<void> {
    this.starting = (async () => {
      await this.prepareStateDir()
      await this.startClusters()
    })()
    try {
      await this.starting
    } catch (err) {
      await this.stop(`start failed: ${errorCode(err)}`)
      throw err
    }
    if (this.startAbort.signal.aborted) throw new KtError('KT_ERR_NOT_READY', 'stopped while starting')
  }

  private async prepareStateDir (): Promise<void> {
    await ensureStateDir(this.stateDir)
    const socket = controlPath(this.stateDir)
    // The control socket is the proof of life: a state file whose socket does
    // not answer was left by a dead up (crash, kill -9, reboot).
    this.control = await startControlServer(socket, {
      status: () => this.status(),
      down: (cluster) => {
        if (cluster === undefined || (this.clusters.size === 1 && this.clusters.has(cluster))) void this.stop('down requested', { forget: true })
        else void this.stopCluster(cluster)
      },
    })
    const prev = await readState(this.stateDir)
    // What an earlier up remembered (allocations), kept for the clusters it names until `down`.
    const remembered = (prev?.clusters ?? []).flatMap((c) => rememberedOnly(c) ?? [])
    if (prev !== undefined && prev.pid !== process.pid && prev.clusters.some(hasLeftovers)) {
      this.emit({ type: 'recovering', pid: prev.pid })
      this.log.warn({ pid: prev.pid, clusters: prev.clusters.map((c) => c.name) }, 'undoing what a previous kind-tunnel up left behind')
      const { reports, left } = await undoState(prev, this.undoDeps())
      this.emit({ type: 'recovered', reports })
      if (left !== undefined) {
        await writeState(this.stateDir, { ...left, clusters: [...left.clusters, ...remembered.filter((m) => !left.clusters.some((c) => c.name === m.name))] })
        const what = reports.flatMap((r) => r.steps.filter((s) => !s.ok).map((s) => `${r.cluster} ${s.what}: ${s.detail}`))
        throw new KtError('KT_ERR_CLEANUP', `a previous kind-tunnel up left changes that could not be undone (${what.join('; ')}); fix them and run \`kind-tunnel down\``)
      }
    }
    const initial: UpState = { v: STATE_VERSION, pid: process.pid, startedAt: this.startedAt, controlSocket: socket, clusters: remembered }
    this.state = new StateWriter(this.stateDir, initial)
    await this.state.update((s) => s)
  }

  undoDeps () {
    return {
      logger: this.deps.logger,
      controller: this.deps.controller,
      docker: this.deps.docker,
      ...(this.deps.openAddresses !== undefined ? { openAddresses: this.deps.openAddresses } : {}),
    }
  }

  private async resolveClusters (): Promise<ClusterPlan[]> {
    const cfg = this.cfg
    const explicit = cfg.mode === 'auto' ? undefined : cfg.mode
    if (cfg.kubeconfigText !== undefined) {
      const name = cfg.cluster ?? clusterFromKubeconfig(cfg.kubeconfigText) ?? 'demo'
      return [{ name, kubeconfig: cfg.kubeconfigText, source: { kind: 'ephemeral' }, mode: explicit ?? 'direct', reason: explicit !== undefined ? `--mode ${explicit}` : 'the nodes are on this host' }]
    }
    if (cfg.kubeconfigPath !== undefined) {
      let text: string
      try {
        text = await readFile(cfg.kubeconfigPath, 'utf8')
      } catch (err) {
        throw new KtError('KT_ERR_KUBECONFIG', `cannot read --kubeconfig ${cfg.kubeconfigPath} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err })
      }
      const name = cfg.cluster ?? clusterFromKubeconfig(text) ?? 'default'
      const source: KubeconfigSource = { kind: 'file', path: cfg.kubeconfigPath }
      if (explicit === 'direct' || explicit === 'sidecar') return [{ name, kubeconfig: text, source, mode: explicit, reason: `--mode ${explicit}` }]
      // auto or relay: Docker tells where the nodes are, when it knows the cluster.
      let kind: KindCluster | undefined
      let why = ''
      if (cfg.docker) {
        try {
          kind = (await this.deps.docker.clusters()).find((c) => c.name === name)
          if (kind === undefined) why = `Docker has no kind cluster named ${name}`
        } catch (err) {
          why = `Docker is not reachable (${errorCode(err)})`
        }
      } else {
        why = '--no-docker'
      }
      if (kind === undefined) {
        if (explicit === 'relay') throw new KtError('KT_ERR_NO_CLUSTER', `--mode relay needs the kind cluster ${name} in Docker: ${why}`)
        return [{ name, kubeconfig: text, source, mode: 'direct', reason: `${why}; assuming the host reaches the nodes directly` }]
      }
      return [await this.pickMode({ name, kubeconfig: text, source, kind })]
    }
    if (!cfg.docker) throw new KtError('KT_ERR_KUBECONFIG', '--no-docker needs --kubeconfig FILE')
    let all = (await this.deps.docker.clusters()).filter((c) => c.nodes.some((n) => n.state === 'running'))
    if (cfg.cluster !== undefined) {
      const one = all.find((c) => c.name === cfg.cluster)
      if (one === undefined) throw new KtError('KT_ERR_NO_CLUSTER', `no running kind cluster named ${JSON.stringify(cfg.cluster)}${all.length > 0 ? ` (running: ${all.map((c) => c.name).join(', ')})` : ''}; create it with \`kind create cluster --name ${cfg.cluster}\``)
      all = [one]
    }
    if (all.length === 0) throw new KtError('KT_ERR_NO_CLUSTER', 'no running kind cluster found; create one with `kind create cluster`, or try `kind-tunnel demo`')
    const plans: ClusterPlan[] = []
    for (const kind of all) {
      const kubeconfig = await this.deps.docker.kubeconfig(kind.name, { internal: explicit === 'sidecar' })
      if (kubeconfig === undefined) continue
      plans.push(await this.pickMode({ name: kind.name, kubeconfig, source: { kind: 'docker' }, kind }))
    }
    return plans
  }

  /** cloud-provider-kind on the same cluster: say what will conflict (the controller then leaves its Services alone). */
  private async warnOtherController (cluster: string): Promise<void> {
    if (!this.cfg.docker || this.deps.docker.cloudProviderKind === undefined) return
    try {
      const running = (await this.deps.docker.cloudProviderKind()).filter((c) => c.cluster === cluster && c.state === 'running')
      if (running.length === 0) return
      this.warn(`cluster ${cluster}: cloud-provider-kind runs for it too (${running.length} container${running.length === 1 ? '' : 's'}); both claim every class-less LoadBalancer Service: kind-tunnel leaves each Service whose status cloud-provider-kind already wrote alone, and the two race for new ones. Run one of them, or give kind-tunnel's Services spec.loadBalancerClass: kind-tunnel.dev/lb`, { cluster, containers: running.map((c) => c.name) }, 'KT_ERR_LB_CONFLICT')
    } catch {}
  }

  private async pickMode (p: { name: string, kubeconfig: string, source: KubeconfigSource, kind: KindCluster }): Promise<ClusterPlan> {
    const m = this.cfg.mode
    if (m !== 'auto') return { ...p, mode: m, reason: `--mode ${m}` }
    const choice = await this.deps.docker.chooseMode(p.kind)
    return { ...p, mode: choice.mode, reason: choice.reason }
  }

  private routingFor (run: ClusterRun): RoutingOptions {
    const cfg = this.cfg
    return {
      mode: cfg.address,
      ipPool: run.pool,
      listenHost: this.listenHost,
      httpPort: cfg.httpPort,
      httpsPort: cfg.httpsPort,
      ...(run.plan.mode === 'relay' ? { dialer: `relay:${run.plan.name}` } : {}),
    }
  }

  private async startClusters (): Promise<void> {
    const cfg = this.cfg
    const state = this.state as StateWriter
    if (cfg.metrics !== undefined) {
      try {
        this.metricsServer = await startMetricsServer(this.deps.registry, cfg.metrics.host, cfg.metrics.port)
      } catch (err) {
        throw new KtError('KT_ERR_LISTEN', `cannot serve metrics on ${listenerKey(cfg.metrics)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err })
      }
      this.emit({ type: 'metrics', host: this.metricsServer.host, port: this.metricsServer.port })
    }

    const plans = await this.resolveClusters()
    let basePool = cfg.ipPool ?? DEFAULT_IP_POOL
    let device = 'lo'
    if (plans.some((p) => p.mode === 'sidecar')) {
      const net = sidecarNetwork(cfg.device, this.deps.interfaces)
      device = net.device
      if (cfg.ipPool === undefined) basePool = net.pool.text
      this.listenHost = cfg.listenHost ?? net.address
      this.log.info({ device, address: net.address, subnet: net.subnet.text, pool: basePool }, 'sidecar: LB IPs go on the container interface, from the top of its subnet')
    } else if (cfg.listenHost !== undefined) {
      this.listenHost = cfg.listenHost
    }
    const pool = parseCidr(basePool, { strict: true, what: '--ip-pool' })

    const startOne = async (plan: ClusterPlan, i: number): Promise<void> => {
      this.emit({ type: 'cluster', name: plan.name, mode: plan.mode, reason: plan.reason })
      this.log.info({ cluster: plan.name, mode: plan.mode, reason: plan.reason }, `cluster ${plan.name}: ${plan.mode} mode`)
      await this.warnOtherController(plan.name)
      const clusterPool = splitPool(pool, plans.length, i)
      const dev = plan.mode === 'sidecar' ? device : 'lo'
      const opened = (this.deps.openAddresses ?? openAddresses)({ pool: clusterPool, device: dev, onHelper: (argv) => this.emit({ type: 'helper', argv }) })
      const before = state.state.clusters.find((c) => c.name === plan.name)?.allocations
      const entry: ClusterState = { name: plan.name, mode: plan.mode, kubeconfig: plan.source, ipPool: clusterPool, device: dev, addresses: [], ...(before !== undefined ? { allocations: before } : {}) }
      await state.update((s) => ({ ...s, clusters: [...s.clusters.filter((c) => c.name !== plan.name), entry] }))
      const run: ClusterRun = {
        plan,
        pool: clusterPool,
        addresses: opened,
        deferred: [],
        deferReleases: false,
        forController: undefined as unknown as Addresses,
        synced: false,
        stopped: false,
      }
      const tracked = trackAddresses(opened.addresses, async (ip) => {
        const cur = state.state.clusters.find((c) => c.name === plan.name)
        if (cur === undefined || cur.addresses.includes(ip)) return
        await state.cluster(plan.name, (c) => ({ ...c, addresses: [...c.addresses, ip] }))
      })
      ;(run as { forController: Addresses }).forController = {
        ensure: (ip) => tracked.ensure(ip),
        // While connections drain, an address must stay: put its release off.
        release: async (ip) => {
          if (run.deferReleases) { run.deferred.push(ip); return { ip, changed: false } }
          return await tracked.release(ip)
        },
        list: () => tracked.list(),
      }
      this.clusters.set(plan.name, run)

      if (plan.mode === 'relay' && !this.startAbort.signal.aborted) {
        if (plan.kind === undefined) throw new KtError('KT_ERR_NO_CLUSTER', `relay mode needs the kind cluster ${plan.name} in Docker`)
        await state.cluster(plan.name, (c) => ({ ...c, relay: { name: `kind-tunnel-relay-${plan.name}`, containerId: '' } }))
        const info = await this.deps.docker.ensureRelay(plan.kind, {
          base: cfg.relayBase,
          onProgress: (line) => { this.emit({ type: 'relay', cluster: plan.name, line }); this.log.info({ cluster: plan.name }, line) },
        })
        run.relay = info
        await state.cluster(plan.name, (c) => ({ ...c, relay: { name: info.name, containerId: info.containerId } }))
        const dialer = new RelayDialer({ host: info.host, port: info.port, token: info.token, metrics: this.deps.registry, name: plan.name, ...(cfg.relayTransport !== undefined ? { transport: cfg.relayTransport } : {}) })
        run.dialer = dialer
        this.dialers.set(`relay:${plan.name}`, dialer)
      }

      if (this.startAbort.signal.aborted) return
      const { startController } = await this.deps.controller()
      if (this.startAbort.signal.aborted) return
      const options = (kubeconfig: string): Parameters<typeof startController>[0] => ({
        cluster: plan.name,
        kubeconfig,
        routing: this.routingFor(run),
        sink: { apply: (cluster, table) => this.applyFrom(cluster, table) },
        addresses: run.forController,
        logger: this.deps.logger.child({ cluster: plan.name }),
        metrics: this.deps.registry,
        // Each Service gets back the address it had (a restart, a crash, a new kubeconfig), whatever its status says now.
        allocations: allocationMap(state.state.clusters.find((c) => c.name === plan.name)),
        onAllocations: async (a) => {
          if (run.stopped) return
          const allocations = Object.fromEntries(a)
          await state.cluster(plan.name, (c) => {
            const { allocations: _old, ...rest } = c
            return Object.keys(allocations).length > 0 ? { ...rest, allocations } : rest
          })
        },
      })
      run.controller = await startController(options(plan.kubeconfig))
      if (plan.source.kind === 'file') {
        // A rotated token or a re-created cluster: start over with the new
        // file. The old controller stops without undoing anything; the new
        // one's first table is the same, so no listener closes.
        const { watchKubeconfigFile } = await import('../control/kubeconfig-file.js')
        run.unwatch = watchKubeconfigFile(plan.source.path, plan.kubeconfig, (text) => {
          if (run.stopped) return
          this.log.info({ cluster: plan.name, path: plan.source.kind === 'file' ? plan.source.path : '' }, `cluster ${plan.name}: the kubeconfig file changed; reconnecting with it`)
          const old = run.controller
          startController(options(text)).then(async (fresh) => {
            if (run.stopped) { await fresh.stop(); return }
            run.controller = fresh
            await old?.stop()
          }, (err: Error) => { this.warn(`cluster ${plan.name}: the changed kubeconfig is not usable: ${err.message}`, { cluster: plan.name }, errorCode(err)) })
        }, Number(process.env.KIND_TUNNEL_KUBECONFIG_POLL_MS ?? '') || 2000)
      }
    }

    const results = await Promise.allSettled(plans.map((p, i) => startOne(p, i)))
    const failed = results.flatMap((r, i) => r.status === 'rejected' ? [{ plan: plans[i] as ClusterPlan, err: r.reason as Error }] : [])
    for (const f of failed) {
      const run = this.clusters.get(f.plan.name)
      if (run !== undefined) run.error = `${errorCode(f.err)}: ${f.err.message}`
      this.warn(`cluster ${f.plan.name} could not start: ${f.err.message}`, { cluster: f.plan.name }, errorCode(f.err))
    }
    if (failed.length === plans.length && failed[0] !== undefined) throw failed[0].err

    // The table is shown once every controller has synced, or after the timeout.
    const started = [...this.clusters.values()].filter((r) => r.controller !== undefined)
    await Promise.all(started.map(async (r) => {
      const aborted = new Promise<'timeout'>((resolve) => this.startAbort.signal.addEventListener('abort', () => resolve('timeout'), { once: true }))
      const res = await Promise.race([withTimeout((r.controller as ControllerHandle).synced.then(() => 'ok' as const, (err: Error) => err), cfg.syncTimeoutMs), aborted])
      if (this.startAbort.signal.aborted) return
      if (res === 'ok') {
        r.synced = true
        this.emit({ type: 'synced', cluster: r.plan.name })
      } else if (res === 'timeout') {
        this.warn(`cluster ${r.plan.name} has not synced within ${cfg.syncTimeoutMs} ms; serving what is known and retrying`, { cluster: r.plan.name }, 'KT_ERR_NOT_READY')
      } else {
        r.error = `${errorCode(res)}: ${res.message}`
        this.warn(`cluster ${r.plan.name}: ${res.message}`, { cluster: r.plan.name }, errorCode(res))
      }
    }))
    if (this.startAbort.signal.aborted) return
    this.ready = true
    this.emit({ type: 'ready' })
  }

  // ------------------------------------------------------------ the sink

  /** A controller's new table: merge with the other clusters', apply, answer for this cluster's listeners. */
  async applyFrom (cluster: string, table: RouteTable): Promise<ApplyResult> {
    const before = this.tables.get(cluster)
    this.tables.set(cluster, table)
    const merged = mergeTables([...this.tables].map(([c, t]) => ({ cluster: c, table: t })), { version: ++this.version })
    for (const c of merged.conflicts) {
      const k = JSON.stringify([c.listener, c.kind, c.name, c.loser])
      if (this.reported.has(k)) continue
      this.reported.add(k)
      this.warn(c.message, { listener: c.listener, conflict: c.kind })
    }
    this.conflicts = merged.conflicts
    let res: ApplyResult
    try {
      res = await this.manager.apply(merged.table)
    } catch (err) {
      // The data plane is shutting down: nothing binds any more.
      return { version: table.version, bound: [], kept: [], removed: [], failed: table.listeners.map((l) => ({ key: listenerKey(l), code: errorCode(err), message: (err as Error).message })) }
    }
    this.applied = merged.table
    for (const b of res.bound) this.emit({ type: 'listening', host: b.host, port: b.port, ...(b.key.endsWith('/udp') ? { udp: true as const } : {}) })
    for (const f of res.failed) {
      const k = `fail ${f.key} ${f.code}`
      if (this.reported.has(k)) continue
      this.reported.add(k)
      // The data plane has logged the failure itself; add what to do about it.
      const hint = f.code === 'EACCES'
        ? 'ports below 1024 need root: run with sudo, lower net.ipv4.ip_unprivileged_port_start, or use --address hostname'
        : f.code === 'EADDRINUSE' ? 'the port is taken; `kind-tunnel doctor` shows by whom, or move with --http-port/--https-port'
          : f.code === 'EADDRNOTAVAIL' ? 'the address is not on this host; see `kind-tunnel doctor`' : undefined
      if (hint !== undefined) this.warn(`${f.key}: ${hint}`, { listener: f.key }, f.code)
    }
    this.emit({ type: 'applied', version: merged.table.version })
    const mine = new Set(table.listeners.map((l) => listenerKey(l)))
    const prev = before?.listeners.map((l) => listenerKey(l)) ?? []
    return {
      version: table.version,
      bound: res.bound.filter((b) => mine.has(b.key)),
      kept: res.kept.filter((k) => mine.has(k)),
      removed: prev.filter((k) => !mine.has(k)),
      failed: res.failed.filter((f) => mine.has(f.key)),
    }
  }

  // ------------------------------------------------------------ status

  status (): UpStatus {
    const snap = this.manager.snapshot()
    const clusters: ClusterStatus[] = [...this.clusters.values()].map((r) => {
      let controller: { apiProblem?: { message: string } } | undefined
      try { controller = r.controller?.snapshot() } catch {}
      const error = r.error ?? controller?.apiProblem?.message
      return {
        name: r.plan.name,
        mode: r.plan.mode,
        reason: r.plan.reason,
        synced: r.synced,
        ...(r.relay !== undefined ? { relay: { name: r.relay.name, port: r.relay.port, pool: r.dialer?.stats() } } : {}),
        ...(controller !== undefined ? { controller } : {}),
        ...(error !== undefined ? { error } : {}),
      }
    })
    return {
      pid: process.pid,
      startedAt: this.startedAt,
      stateDir: this.stateDir,
      address: this.cfg.address,
      listenHost: this.listenHost,
      ready: this.ready,
      version: this.applied.version,
      clusters,
      services: deriveServices(this.applied, snap, { listenHost: this.listenHost, httpsPort: this.cfg.httpsPort }),
      listeners: snap.listeners,
      conflicts: this.conflicts,
      totals: totals(snap, this.deps.registry.render()),
    }
  }

  // ------------------------------------------------------------ stop

  /** Undo one cluster's part (down --cluster) and keep serving the others. */
  async stopCluster (name: string): Promise<void> {
    const run = this.clusters.get(name)
    if (run === undefined || run.stopped) return
    run.stopped = true
    run.unwatch?.()
    this.emit({ type: 'stopping', reason: `down --cluster ${name}` })
    const ok = await this.undoRun(run, true)
    this.clusters.delete(name)
    if (ok) await this.state?.update((s) => ({ ...s, clusters: s.clusters.filter((c) => c.name !== name) }))
    this.emit({ type: 'cleaned', cluster: name })
    if (this.clusters.size === 0) await this.stop('no cluster left')
  }

  /** Cleanup of one cluster. `alone`: drain its listeners now (other clusters keep running). */
  private async undoRun (run: ClusterRun, alone: boolean): Promise<boolean> {
    const name = run.plan.name
    let ok = true
    run.deferReleases = true
    if (run.controller !== undefined) {
      const r = await withTimeout(run.controller.cleanup().then(() => 'ok' as const, (err: Error) => err), 30_000)
      if (r !== 'ok') {
        ok = false
        this.log.error({ cluster: name, code: r === 'timeout' ? 'KT_ERR_CLEANUP' : errorCode(r) }, `cluster ${name}: removing statuses and finalizers failed: ${r === 'timeout' ? 'timed out' : r.message}`)
      }
      await run.controller.stop().catch((err: Error) => this.log.error({ cluster: name }, `stopping the controller: ${err.message}`))
      if (ok) await this.state?.cluster(name, (c) => ({ ...c, kubeconfig: { kind: 'ephemeral' } }))
    }
    if (alone) {
      this.tables.delete(name)
      const merged = mergeTables([...this.tables].map(([c, t]) => ({ cluster: c, table: t })), { version: ++this.version })
      await this.manager.apply(merged.table).then((res) => { this.applied = merged.table; return res }, () => undefined)
    }
    return ok && await this.releaseRun(run, alone)
  }

  /** After the drain: put off releases, any address still recorded, the relay, the helper. */
  private async releaseRun (run: ClusterRun, drainFirst: boolean): Promise<boolean> {
    const name = run.plan.name
    let ok = true
    if (drainFirst) await new Promise((resolve) => setTimeout(resolve, Math.min(this.cfg.drainMs, 2000)))
    const recorded = this.state?.state.clusters.find((c) => c.name === name)?.addresses ?? []
    const left: string[] = []
    for (const ip of new Set([...run.deferred, ...recorded])) {
      try {
        await run.addresses.addresses.release(ip)
      } catch (err) {
        ok = false
        left.push(ip)
        this.log.error({ cluster: name, ip, code: errorCode(err) }, `releasing ${ip}: ${(err as Error).message}`)
      }
    }
    await run.addresses.close().catch(() => {})
    await this.state?.cluster(name, (c) => ({ ...c, addresses: left }))
    if (run.dialer !== undefined) {
      run.dialer.close()
      this.dialers.delete(`relay:${name}`)
    }
    if (run.plan.mode === 'relay' && run.relay !== undefined) {
      try {
        await this.deps.docker.removeRelay(name)
        await this.state?.cluster(name, (c) => { const { relay: _r, ...rest } = c; return rest })
      } catch (err) {
        ok = false
        this.log.error({ cluster: name, code: errorCode(err) }, `removing the relay container: ${(err as Error).message}`)
      }
    }
    return ok
  }

  /**
   * Drain and undo everything. Idempotent; resolves when done. The state file
   * keeps the allocations of clusters reached through a kubeconfig file or
   * Docker, for the next up, unless `forget` (`down`).
   */
  stop (reason: string, opts: { forget?: boolean } = {}): Promise<void> {
    if (opts.forget === true) this.forget = true
    this.stopping ??= this.stopNow(reason)
    return this.stopping
  }

  private async stopNow (reason: string): Promise<void> {
    this.emit({ type: 'stopping', reason })
    this.startAbort.abort()
    // Let a start in progress reach a checkpoint, so nothing it starts is missed below.
    await this.starting?.catch(() => {})
    // A start that failed before any cluster began has nothing to undo: say little.
    const level = this.clusters.size > 0 ? 'info' : 'debug'
    this.log[level]({ reason, active: this.manager.connectionCount }, 'stopping: removing statuses, draining connections')
    const runs = [...this.clusters.values()].filter((r) => !r.stopped)
    for (const r of runs) { r.stopped = true; r.unwatch?.() }
    // 1. Statuses and finalizers first, so nobody is sent to an address that is going away.
    const apiOk = await Promise.all(runs.map(async (r) => {
      r.deferReleases = true
      if (r.controller === undefined) return true
      const res = await withTimeout(r.controller.cleanup().then(() => 'ok' as const, (err: Error) => err), 30_000)
      await r.controller.stop().catch(() => {})
      if (res === 'ok') {
        // Nothing left to undo through the API ('ephemeral': no API work for `down`).
        await this.state?.cluster(r.plan.name, (c) => ({ ...c, kubeconfig: { kind: 'ephemeral' } }))
        return true
      }
      this.log.error({ cluster: r.plan.name, code: res === 'timeout' ? 'KT_ERR_CLEANUP' : errorCode(res) }, `cluster ${r.plan.name}: removing statuses and finalizers failed: ${res === 'timeout' ? 'timed out' : res.message}`)
      return false
    }))
    // 2. Drain.
    await this.manager.close(this.cfg.drainMs).catch((err: Error) => this.log.error({}, `closing the data plane: ${err.message}`))
    // 3. Addresses, relays, helper.
    const restOk = await Promise.all(runs.map((r) => this.releaseRun(r, false)))
    for (const [i, r] of runs.entries()) {
      if (apiOk[i] === true && restOk[i] === true) this.emit({ type: 'cleaned', cluster: r.plan.name })
      else this.clean = false
    }
    await this.metricsServer?.close().catch(() => {})
    if (this.state !== undefined) {
      await this.state.flush()
      // `demo`'s API server dies with the process: nothing to remember for it.
      const ephemeral = new Set(runs.filter((r) => r.plan.source.kind === 'ephemeral').map((r) => r.plan.name))
      const keep = (c: ClusterState): ClusterState | undefined => {
        const remember = !this.forget && !ephemeral.has(c.name)
        if (!this.clean && hasLeftovers(c)) return remember ? c : withoutAllocations(c)
        return remember ? rememberedOnly(c) : undefined
      }
      const kept = this.state.state.clusters.flatMap((c) => keep(c) ?? [])
      if (kept.length === 0) {
        await removeState(this.stateDir)
      } else {
        // What is left for `kind-tunnel down` (no process answers for it any
        // more), and the addresses to give back at the next up.
        await this.state.update((s) => ({ ...s, clusters: kept }))
        await this.state.flush()
      }
    }
    await this.control?.close().catch(() => {})
    this.emit({ type: 'stopped', clean: this.clean })
    this.resolveDone()
  }

  get cleanExit (): boolean {
    return this.clean
  }
}

function withoutAllocations (c: ClusterState): ClusterState {
  const { allocations: _a, ...rest } = c
  return rest
}

/** Start `up`; resolves once it is ready (every cluster synced or timed out). */
export async function startUp (cfg: UpConfig, deps: UpDeps): Promise<UpRun> {
  const run = new UpRun(cfg, deps)
  await run.start()
  return run
}
