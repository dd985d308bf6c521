// The reload harness (issue #9 case 3): a process that owns a real
// ListenerManager and applies route-table changes on a timer while the load
// generators drive traffic through it. This is the control hook the `proxy`
// CLI does not have (its table is static); it lives in test code only.
//
//   node harness.js '{"a":{"host":"127.0.0.1","port":P},"b":{...}}'
//
// Listeners: `main` (plain L4, default upstream `main`) and `sni` (peeking,
// route a.test plus unrelated routes). Each change alternates the backends
// of `main` and of a.test, adds one unrelated route and removes another, and
// binds or removes an unrelated listener. `main` and `sni` must be kept in
// every apply, and their listening fds never change.

import { fileURLToPath } from 'node:url'
import { ListenerManager } from '../../../src/dataplane/listener-manager.js'
import { createLogger } from '../../../src/observe/logger.js'
import { Registry } from '../../../src/observe/metrics.js'
import type { Endpoint, HostRoute, ListenerSpec, RouteTable } from '../../../src/routing/types.js'
import { serveRpc } from './rpc.js'

interface HarnessConfig { a: Endpoint, b: Endpoint, options?: Record<string, unknown> }

const MAIN = '127.0.0.1:0'
const SNI = '127.0.0.2:0'

function table (cfg: HarnessConfig, i: number): RouteTable {
  const cycle = [[cfg.a], [cfg.b], [cfg.a, cfg.b]]
  const mainEps = cycle[i % 3] as Endpoint[]
  const routeEps = cycle[(i + 1) % 3] as Endpoint[]
  const routes: HostRoute[] = [{ names: ['a.test', '*.a.test'], upstream: { id: 'route-a', endpoints: routeEps } }]
  // Unrelated routes come and go: r<i>.test is added, r<i-1>.test is gone.
  if (i > 0) routes.push({ names: [`r${i}.test`], upstream: { id: `extra-${i}`, endpoints: [cfg.b] } })
  const listeners: ListenerSpec[] = [
    { host: '127.0.0.1', port: 0, routes: [], default: { id: 'main', endpoints: mainEps }, owner: 'soak/main' },
    { host: '127.0.0.2', port: 0, routes, default: { id: 'sni-default', endpoints: [cfg.b] }, owner: 'soak/sni' },
  ]
  // An unrelated listener bound on odd changes and removed on even ones.
  if (i % 2 === 1) listeners.push({ host: `127.0.0.${10 + (i % 16)}`, port: 0, routes: [], default: { id: `side-${i}`, endpoints: [cfg.a] }, owner: 'soak/side' })
  return { version: i + 1, listeners }
}

function fdOf (mgr: ListenerManager, key: string): number {
  const l = mgr.listeners.get(key)
  return (l?.server as unknown as { _handle?: { fd?: number } } | undefined)?._handle?.fd ?? -1
}

async function run (cfg: HarnessConfig): Promise<void> {
  const logger = createLogger({ level: 'warn' })
  const registry = new Registry()
  const mgr = new ListenerManager({ logger, metrics: registry, options: { accessLog: false, maxConnections: 60_000, maxConnectionsPerListener: 60_000, ...cfg.options } })
  const first = await mgr.apply(table(cfg, 0))
  if (first.failed.length > 0) throw new Error(JSON.stringify(first.failed))
  const port = (key: string): number => (mgr.listeners.get(key)?.port ?? 0)
  const fds0 = { main: fdOf(mgr, MAIN), sni: fdOf(mgr, SNI) }
  let version = 0

  serveRpc({
    fds: () => ({ main: fdOf(mgr, MAIN), sni: fdOf(mgr, SNI) }),
    metrics: () => ({ text: registry.render() }),
    snapshot: () => ({ snapshot: mgr.snapshot() }),
    reload: async (m) => {
      const count = Number(m.count)
      const intervalMs = Number(m.intervalMs)
      let applied = 0
      let failed = 0
      let notKept = 0
      let fdChanged = 0
      let bound = 0
      let removed = 0
      let maxApplyMs = 0
      const fails: string[] = []
      for (let k = 0; k < count; k++) {
        await new Promise((resolve) => setTimeout(resolve, intervalMs))
        version++
        const t0 = performance.now()
        const r = await mgr.apply(table(cfg, version))
        maxApplyMs = Math.max(maxApplyMs, performance.now() - t0)
        applied++
        failed += r.failed.length
        for (const f of r.failed) if (fails.length < 5) fails.push(`${f.key} ${f.code}`)
        bound += r.bound.length
        removed += r.removed.length
        if (!r.kept.includes(MAIN) || !r.kept.includes(SNI)) notKept++
        if (fdOf(mgr, MAIN) !== fds0.main || fdOf(mgr, SNI) !== fds0.sni) fdChanged++
      }
      return { applied, failed, fails, notKept, fdChanged, bound, removed, maxApplyMs, fds0, fds: { main: fdOf(mgr, MAIN), sni: fdOf(mgr, SNI) }, listeners: mgr.listeners.size }
    },
  })
  process.stdout.write(JSON.stringify({ event: 'ready', pid: process.pid, listening: [{ host: '127.0.0.1', port: port(MAIN) }, { host: '127.0.0.2', port: port(SNI) }], fds: fds0 }) + '\n')
}

const isMain = process.argv[1] === fileURLToPath(import.meta.url)
// Inert without a config (tap loads every file under dist/test).
if (isMain && process.argv[2] !== undefined && process.env.TAP !== '1') {
  await run(JSON.parse(process.argv[2]) as HarnessConfig)
}
