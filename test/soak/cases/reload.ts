// Case 3: route-table changes under load. A harness process owns a real
// ListenerManager and applies `changes` tables on a timer (backends of a
// route swapped, unrelated routes and listeners added and removed) while
// churn runs through both kept listeners and idle connections are held.

import { runCase, type CaseResult } from '../lib/case.js'
import { byLabel, parseMetrics, sum } from '../lib/metrics.js'
import { listenInode, nofile as nofileLimit, startWorker } from '../lib/proc.js'
import { ms } from '../lib/stats.js'

export interface ReloadParams {
  /** Idle connections held through the two kept listeners (half each). */
  idle: number
  rate: number
  seconds: number
  changes: number
}

interface Latency { n: number, p50: number, p99: number, p999: number, max: number }
const HTTP_HEAD = 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n'

export function reloadUnderLoad (p: ReloadParams, log: (m: string) => void = () => {}): Promise<CaseResult> {
  return runCase('reload', `Reload under load: ${p.changes} route-table changes during ${p.rate}/s churn for ${p.seconds} s`, log, async (c) => {
    const nofile = nofileLimit()
    const backend = await startWorker('backend', { mode: 'line', count: 2 }, { nofile })
    c.defer(() => backend.stop())
    const [a, b] = backend.listening as [{ host: string, port: number }, { host: string, port: number }]
    const harness = await startWorker('harness', { a, b }, { nofile })
    c.defer(() => harness.stop())
    const [main, sni] = harness.listening as [{ host: string, port: number }, { host: string, port: number }]
    const ino0 = { main: listenInode(main.host, main.port), sni: listenInode(sni.host, sni.port) }
    const fds0 = await harness.rpc.call('fds')

    const idleGen = await startWorker('loadgen', {}, { nofile })
    c.defer(() => idleGen.stop())
    const half = Math.floor(p.idle / 2)
    const o1 = await idleGen.rpc.call('idle-open', { ...main, count: half, concurrency: 200 }, 120_000)
    const o2 = await idleGen.rpc.call('idle-open', { ...sni, count: p.idle - half, concurrency: 200, hello: HTTP_HEAD }, 120_000)
    c.check(`${p.idle} idle connections held through both kept listeners`, Number(o1.opened) + Number(o2.opened) === p.idle, `${String(o1.opened)} + ${String(o2.opened)}`)

    const churnGen = await startWorker('loadgen', {}, { nofile })
    c.defer(() => churnGen.stop())
    const mainRate = Math.round(p.rate * 0.7)
    const sniRate = p.rate - mainRate
    const budget = (p.seconds + 40) * 1000
    const [cm, cs, rl] = await Promise.all([
      churnGen.rpc.call('churn', { ...main, rate: mainRate, seconds: p.seconds, sources: ['127.0.0.1', '127.0.0.5'] }, budget),
      churnGen.rpc.call('churn', { ...sni, rate: sniRate, seconds: p.seconds, prefix: HTTP_HEAD, sources: ['127.0.0.6', '127.0.0.7'] }, budget),
      harness.rpc.call('reload', { count: p.changes, intervalMs: Math.floor((p.seconds * 1000 * 0.9) / p.changes) }, budget),
    ])
    const fds1 = await harness.rpc.call('fds')
    const ino1 = { main: listenInode(main.host, main.port), sni: listenInode(sni.host, sni.port) }
    const lm = cm.latency as Latency
    const ls = cs.latency as Latency
    c.figure('route-table changes applied', `${String(rl.applied)} (unrelated listeners bound ${String(rl.bound)}, removed ${String(rl.removed)}; slowest apply ${ms(Number(rl.maxApplyMs))})`)
    c.figure('churn through the L4 listener: attempted / failed', `${String(cm.attempted)} / ${String(cm.failed)} ${JSON.stringify(cm.errors)}`)
    c.figure('churn through the Host-routed listener: attempted / failed', `${String(cs.attempted)} / ${String(cs.failed)} ${JSON.stringify(cs.errors)}`)
    c.figure('connect-to-first-byte during reloads, L4 p50 / p99 / p99.9', `${ms(lm.p50)} / ${ms(lm.p99)} / ${ms(lm.p999)}`)
    c.figure('connect-to-first-byte during reloads, Host-routed p50 / p99 / p99.9', `${ms(ls.p50)} / ${ms(ls.p99)} / ${ms(ls.p999)}`)
    c.check(`all ${p.changes} changes applied without a failure`, rl.applied === p.changes && rl.failed === 0, `failed ${String(rl.failed)} ${JSON.stringify(rl.fails)}`)
    c.check('0 failed connects during reloads', cm.failed === 0 && cs.failed === 0, `${String(cm.failed)} + ${String(cs.failed)}`)
    c.check('the two unchanged listeners were kept by every apply', rl.notKept === 0, `${String(rl.notKept)} applies did not keep them`)
    c.check('their listening fds never changed', rl.fdChanged === 0 && JSON.stringify(fds0.main) === JSON.stringify(fds1.main) && JSON.stringify(fds0.sni) === JSON.stringify(fds1.sni), `fd main ${String(fds0.main)}→${String(fds1.main)}, sni ${String(fds0.sni)}→${String(fds1.sni)}`)
    c.check('and their socket inodes (ss -ltne) never changed', ino0.main !== 0 && ino0.main === ino1.main && ino0.sni === ino1.sni, `main ${ino0.main}→${ino1.main}, sni ${ino0.sni}→${ino1.sni}`)
    c.figure('listening fds (main, sni) before → after', `${String(fds0.main)}, ${String(fds0.sni)} → ${String(fds1.main)}, ${String(fds1.sni)}`)

    const check = await idleGen.rpc.call('idle-check', {}, 120_000)
    c.check('no established connection dropped: every idle one still echoes', check.ok === p.idle && check.dropped === 0, `ok ${String(check.ok)}/${p.idle}, dropped ${String(check.dropped)}`)
    const m = parseMetrics(String((await harness.rpc.call('metrics')).text))
    const outcomes = byLabel(m, 'kt_connections_total', 'outcome')
    c.figure('kt_connections_total by outcome', JSON.stringify(outcomes))
    c.check('no connection aborted by a reload', sum(m, 'kt_connections_total', { outcome: 'aborted' }) === 0 && sum(m, 'kt_connections_total', { outcome: 'connect_failed' }) === 0)
    await idleGen.rpc.call('idle-close')
  })
}
