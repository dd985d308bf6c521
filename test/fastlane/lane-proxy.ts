// Helper for the fast-lane tests: a ListenerManager with the native splicer and
// the native accept lane on (not a test file itself).
import { ListenerManager, type DataplaneOptions } from '../../src/dataplane/listener-manager.js'
import { loadNativeSplicer, nativeUnavailableReason, type NativeSplicer } from '../../src/dataplane/native/index.js'
import { laneBindingOf } from '../../src/dataplane/native/index.js'
import { Registry } from '../../src/observe/metrics.js'
import { pino } from 'pino'
import { listenerKey, type ListenerSpec } from '../../src/routing/types.js'
import { Writable } from 'node:stream'
import { nativeSkip } from '../support/native.js'

/** false when the lane can run here, else why the tests are skipped. */
export function laneSkip (): string | false {
  const s = loadNativeSplicer()
  if (s === undefined) return nativeSkip(`native addon unavailable: ${nativeUnavailableReason() ?? ''}`)
  const ok = laneBindingOf(s) !== undefined
  s.close()
  return nativeSkip(ok ? false : 'the native addon was built without the accept lane')
}

export interface LaneProxy {
  manager: ListenerManager
  registry: Registry
  splicer: NativeSplicer
  hosts: string[]
  ports: number[]
  /** Access-log records (parsed JSON lines) when accessLog is on. */
  logs: Array<Record<string, unknown>>
  close (drainMs?: number): Promise<void>
}

export async function startLaneProxy (listeners: ListenerSpec[], options: Partial<DataplaneOptions> = {}): Promise<LaneProxy> {
  const registry = new Registry()
  const splicer = loadNativeSplicer()
  if (splicer === undefined) throw new Error('native addon unavailable')
  const logs: Array<Record<string, unknown>> = []
  const sink = new Writable({
    write (chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line !== '') logs.push(JSON.parse(line) as Record<string, unknown>)
      cb()
    },
  })
  const logger = pino({ level: 'info' }, sink)
  const manager = new ListenerManager({ logger, metrics: registry, options: { accessLog: false, ...options }, splicer, nativeAccept: 'auto' })
  const res = await manager.apply({ version: 1, listeners })
  if (res.failed.length > 0) throw new Error(JSON.stringify(res.failed))
  const byKey = new Map(res.bound.map((b) => [b.key, b]))
  const bound = listeners.map((l) => byKey.get(listenerKey(l)) as { host: string, port: number })
  return {
    manager,
    registry,
    splicer,
    logs,
    hosts: bound.map((b) => b.host),
    ports: bound.map((b) => b.port),
    close: async (drainMs = 500) => { await manager.close(drainMs); splicer.close() },
  }
}
