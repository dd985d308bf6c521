// Cases 1 and 2: idle connections held through the `proxy` CLI (RSS per
// connection, every one still usable), then churn at a fixed rate while they
// are held (connect-to-first-byte percentiles, errors).

import { runCase, type CaseResult } from '../lib/case.js'
import { scrape, byLabel, sum } from '../lib/metrics.js'
import { cpuSeconds, fdCount, hardFdLimit, nofile as nofileLimit, rssSampler, settledRss, sleep, startProxyCli, startWorker } from '../lib/proc.js'
import { kib, ms } from '../lib/stats.js'

export interface IdleChurnParams {
  idle: number
  /** Churn after the idle set is open; 0 skips case 2. */
  churnRate: number
  churnSeconds: number
  /** Target: RSS per idle connection, KiB. */
  rssTargetKiB: number
  /**
   * false: the pure-JS data plane (KT_NATIVE=0). true: the defaults, which
   * use the native addon (accept lane, splicer) when it is built.
   */
  native: boolean
}

interface Latency { n: number, p50: number, p99: number, p999: number, max: number, mean: number }

export function idleChurn (p: IdleChurnParams, log: (m: string) => void = () => {}): Promise<CaseResult> {
  const splice = p.native ? 'defaults (the native accept lane and splicer, when built)' : 'pure-JS data plane (KT_NATIVE=0)'
  const title = p.churnRate > 0 ? `Idle connections and churn (${p.churnRate}/s for ${p.churnSeconds} s), ${splice}` : `Idle connections, ${splice}`
  return runCase(p.native ? 'idle-churn-default' : 'idle-churn-js', title, log, async (c) => {
    const nofile = nofileLimit()
    const env = p.native ? {} : { KT_NATIVE: '0' }
    const backend = await startWorker('backend', { mode: 'line', count: 1 }, { nofile })
    c.defer(() => backend.stop())
    const be = backend.listening[0] as { host: string, port: number }
    const px = await startProxyCli(['--listen', '127.0.0.1:0', '--backend', `${be.host}:${be.port}`, '--max-connections', '50000', '--metrics', '127.0.0.1:0'], { nofile, env })
    c.defer(() => px.stop('SIGKILL'))
    const lp = px.listening[0] as { host: string, port: number }
    const mp = px.metrics as { host: string, port: number }
    const idleGen = await startWorker('loadgen', {}, { nofile })
    c.defer(() => idleGen.stop())

    // Warm up the code paths once so the baseline includes JIT'd code, not just startup.
    const fdBase = fdCount(px.pid)
    const warm = await idleGen.rpc.call('idle-open', { ...lp, count: 50, concurrency: 50 })
    await sleep(200)
    // fds each proxied connection holds: the hard fd limit then caps how many one proxy can hold.
    const fdPer = Math.max(2, Math.round((fdCount(px.pid) - fdBase) / 50))
    await idleGen.rpc.call('idle-close')
    c.check('warm-up connections served', warm.opened === 50, `${String(warm.opened)}/50`)
    // 2,000 fds of headroom: churn connections in flight need theirs too (a
    // stall on this shared machine can put hundreds in flight at once).
    const fdCap = Math.floor((hardFdLimit() - 2000) / fdPer)
    const idle = Math.min(p.idle, fdCap)
    if (idle < p.idle) c.note(`${idle} idle connections instead of ${p.idle}: the hard fd limit here is ${hardFdLimit()} (raising it needs CAP_SYS_RESOURCE, which this machine does not grant), and each proxied connection holds ${fdPer} fds in the proxy.`)
    await sleep(500)
    const rss0 = await settledRss(px.pid)
    const fd0 = fdCount(px.pid)
    log(`proxy baseline RSS ${rss0} KiB, ${fd0} fds; opening ${idle} idle connections`)
    // Open in steps and fit RSS against the count (least squares): one
    // before/after difference is at the mercy of when V8 last grew its heap.
    // The first step is warm-up (V8's young generation and the allocator's
    // arenas grow once, whatever the count); the slope over the later steps
    // is the marginal cost of one more connection.
    const steps = 5
    const points: Array<[number, number]> = []
    let openedTotal = 0
    const openErrors: Record<string, number> = {}
    const tOpen = Date.now()
    for (let k = 1; k <= steps; k++) {
      const want = Math.round((idle * k) / steps) - openedTotal
      const r = await idleGen.rpc.call('idle-open', { ...lp, count: want, concurrency: 256 }, 180_000)
      openedTotal += Number(r.opened)
      for (const [code, n] of Object.entries(r.errors as Record<string, number>)) openErrors[code] = (openErrors[code] ?? 0) + n
      await sleep(500)
      points.push([openedTotal, await settledRss(px.pid)])
    }
    c.check(`all ${idle} idle connections opened and echoed through the proxy`, openedTotal === idle, `opened ${openedTotal} in ${Date.now() - tOpen} ms, errors ${JSON.stringify(openErrors)}`)
    const rss1 = (points[points.length - 1] as [number, number])[1]
    const fd1 = fdCount(px.pid)
    const perConn = slope(points)
    c.figure('idle connections held', idle)
    c.figure('proxy RSS before / with idle set', `${kib(rss0)} / ${kib(rss1)} (connections→KiB: ${points.map(([n, r]) => `${n}→${r}`).join(', ')})`)
    c.figure('RSS per idle connection (client + upstream socket; least-squares slope after the first step)', perConn < 0.5 ? `${kib(perConn)}: below what RSS can resolve here (V8 returned more memory than the connections added)` : kib(perConn))
    c.figure('RSS per idle connection, whole set ((with − before) / count)', kib((rss1 - rss0) / idle))
    c.figure('fds per proxied connection', fdPer)
    c.figure('proxy fds with idle set', `${fd1} (${((fd1 - fd0) / idle).toFixed(2)} per connection)`)
    c.check(`RSS per idle connection < ${p.rssTargetKiB} KiB`, perConn < p.rssTargetKiB, kib(perConn))

    if (p.churnRate > 0) {
      const churnGen = await startWorker('loadgen', {}, { nofile })
      c.defer(() => churnGen.stop())
      const cpu0 = cpuSeconds(px.pid)
      const sampler = rssSampler(px.pid, 500)
      const t0 = Date.now()
      const churn = await churnGen.rpc.call('churn', { ...lp, rate: p.churnRate, seconds: p.churnSeconds, sources: ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4'], timeoutMs: 10_000 }, (p.churnSeconds + 30) * 1000)
      const wall = (Date.now() - t0) / 1000
      const cpu = cpuSeconds(px.pid) - cpu0
      const rssPeak = sampler.stop().peak
      const lat = churn.latency as Latency
      c.figure('churn connections attempted / ok', `${String(churn.attempted)} / ${String(churn.ok)} at ${Number(churn.achievedRate).toFixed(0)}/s`)
      c.figure('churn connect-to-first-byte p50 / p99 / p99.9 / max', `${ms(lat.p50)} / ${ms(lat.p99)} / ${ms(lat.p999)} / ${ms(lat.max)}`)
      c.figure('churn errors', Object.keys(churn.errors as object).length === 0 ? '0' : JSON.stringify(churn.errors))
      c.figure('proxy CPU during churn', `${((cpu / wall) * 100).toFixed(0)}% of one core`)
      c.figure('proxy peak RSS during churn', kib(rssPeak))
      c.check('churn: 0 errors', churn.failed === 0, JSON.stringify(churn.errors))
      const m = await scrape(mp.host, mp.port)
      c.figure('kt_connections_total by outcome after churn', JSON.stringify(byLabel(m, 'kt_connections_total', 'outcome')))
      const ce = byLabel(m, 'kt_upstream_connect_errors_total', 'code')
      if (Object.keys(ce).length > 0) c.figure('upstream connect errors by code (retried)', JSON.stringify(ce))
      c.check('churn: every connection counted at close', sum(m, 'kt_connections_total') === 50 + Number(churn.attempted), `${sum(m, 'kt_connections_total')} counted, ${50 + Number(churn.attempted)} made`)
      await sleep(1000)
      const rss2 = await settledRss(px.pid)
      c.figure('proxy RSS after churn (idle set still held)', kib(rss2))
    }

    const check = await idleGen.rpc.call('idle-check', { concurrency: 500 }, 180_000)
    c.check(`every idle connection still usable at the end (echo through each)`, check.ok === idle && check.dropped === 0, `ok ${String(check.ok)}, dropped ${String(check.dropped)}, errors ${JSON.stringify(check.errors)}`)
    c.figure('idle connections usable at the end', `${String(check.ok)} / ${idle}`)
    await idleGen.rpc.call('idle-close')
    const stop = await px.stop('SIGTERM')
    c.check('proxy drains and exits 0 on SIGTERM', stop.code === 0, `exit ${String(stop.code ?? stop.signal)}`)
  })
}

/** Least-squares slope of y over x. */
function slope (pts: ReadonlyArray<readonly [number, number]>): number {
  const n = pts.length
  let sx = 0, sy = 0, sxx = 0, sxy = 0
  for (const [x, y] of pts) { sx += x; sy += y; sxx += x * x; sxy += x * y }
  return (n * sxy - sx * sy) / (n * sxx - sx * sx)
}
