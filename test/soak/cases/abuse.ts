// Case 5: abuse. Slowloris on an SNI listener, a flood of random bytes and
// truncated hellos, connections over --max-connections, and a run under
// `ulimit -n 64`.

import { runCase, type CaseResult } from '../lib/case.js'
import { byLabel, scrape, sum, type Sample } from '../lib/metrics.js'
import { nofile as nofileLimit, rssSampler, settledRss, sleep, startProxyCli, startWorker, waitFor, type ProxyProcess } from '../lib/proc.js'
import { kib, ms } from '../lib/stats.js'

interface Latency { n: number, p50: number, p99: number, max: number }

function metricsOf (px: ProxyProcess): Promise<Sample[]> {
  const m = px.metrics as { host: string, port: number }
  return scrape(m.host, m.port)
}

export interface SlowlorisParams { count: number, peekTimeoutMs: number, normalN: number, perConnBudgetKiB: number }

export function slowloris (p: SlowlorisParams, log: (m: string) => void = () => {}): Promise<CaseResult> {
  return runCase('abuse-slowloris', `${p.count} slowloris clients on an SNI listener (--peek-timeout ${p.peekTimeoutMs})`, log, async (c) => {
    const nofile = nofileLimit()
    const tls = await startWorker('backend', { mode: 'tls', cn: 'a.test' })
    c.defer(() => tls.stop())
    const et = tls.listening[0] as { host: string, port: number }
    const px = await startProxyCli(['--listen', '127.0.0.1:0', '--route', `a.test=${et.host}:${et.port}`, '--peek-timeout', String(p.peekTimeoutMs), '--metrics', '127.0.0.1:0'], { nofile })
    c.defer(() => px.stop('SIGKILL'))
    const lp = px.listening[0] as { host: string, port: number }
    const normal = await startWorker('loadgen', {})
    c.defer(() => normal.stop())
    const slow = await startWorker('loadgen', {}, { nofile })
    c.defer(() => slow.stop())
    // The normal clients' window must close before the slowloris are cut.
    const windowMs = Math.max(1000, p.peekTimeoutMs - 3000)
    const gapMs = Math.max(0, Math.floor(windowMs / p.normalN) - 15)
    const base = await normal.rpc.call('latency', { ...lp, n: p.normalN, servername: 'a.test', gapMs, budgetMs: windowMs }, 60_000)
    const rss0 = await settledRss(px.pid)
    const sampler = rssSampler(px.pid, 250)
    const t0 = Date.now()
    const slowRun = slow.rpc.call('slowloris', { ...lp, count: p.count, intervalMs: 500, budgetMs: p.peekTimeoutMs * 3 + 10_000, sources: ['127.0.0.1', '127.0.0.2'] }, p.peekTimeoutMs * 3 + 20_000)
    await sleep(1500)
    const loaded = await normal.rpc.call('latency', { ...lp, n: p.normalN, servername: 'a.test', gapMs, budgetMs: Math.max(500, p.peekTimeoutMs - 1500 - (Date.now() - t0)) }, 60_000)
    const loadedEnd = Date.now() - t0
    const s = await slowRun
    const { peak } = sampler.stop()
    const m = await metricsOf(px)
    const life = s.lifetime as { n: number, min: number, p50: number, max: number }
    const bl = base.latency as Latency
    const ll = loaded.latency as Latency
    const ratio = ll.p99 / Math.max(0.001, bl.p99)
    c.figure('slowloris clients connected / cut', `${String(s.connected)} / ${String(s.closed)} (${JSON.stringify(s.kinds)})`)
    c.figure('slowloris lifetime min / p50 / max', `${ms(life.min)} / ${ms(life.p50)} / ${ms(life.max)} for a ${p.peekTimeoutMs} ms deadline`)
    c.figure('proxy RSS before / peak with the slowloris set', `${kib(rss0)} / ${kib(peak)} (${kib((peak - rss0) / p.count)} per slowloris connection)`)
    c.figure('normal TLS clients (SNI a.test), p50 / p99 unloaded', `${ms(bl.p50)} / ${ms(bl.p99)} (n=${bl.n})`)
    c.figure('normal TLS clients, p50 / p99 during the slowloris', `${ms(ll.p50)} / ${ms(ll.p99)} (n=${ll.n}, ${(ratio).toFixed(2)}× the unloaded p99; window ended ${loadedEnd} ms in)`)
    c.figure('kt_route_decisions_total by outcome', JSON.stringify(byLabel(m, 'kt_route_decisions_total', 'outcome')))
    c.check(`all ${p.count} slowloris clients cut`, s.connected === p.count && s.closed === p.count, `${String(s.closed)}/${p.count}`)
    c.check('each cut at the peek deadline (within -5% / +10%)', life.min >= p.peekTimeoutMs * 0.95 && life.max <= p.peekTimeoutMs * 1.1, `${ms(life.min)}..${ms(life.max)}`)
    c.check('each counted as peek_timeout, in both counters', sum(m, 'kt_route_decisions_total', { outcome: 'peek_timeout' }) === p.count && sum(m, 'kt_connections_total', { outcome: 'peek_timeout' }) === p.count)
    c.check(`memory bounded: < ${p.perConnBudgetKiB} KiB per slowloris connection (the 16 KiB peek cap plus the connection's own state)`, peak - rss0 < p.count * p.perConnBudgetKiB, kib((peak - rss0) / p.count))
    c.check('normal clients all served', Number(loaded.ok) === ll.n && ll.n > 0 && Object.keys(loaded.errors as object).length === 0, JSON.stringify(loaded.errors))
    c.check('normal clients keep p99 within 2× their unloaded value', ratio <= 2, `${ratio.toFixed(2)}×`)
    c.check('the normal window ran while the slowloris were all open', loadedEnd < p.peekTimeoutMs)
  })
}

export interface FloodParams { n: number, rstN: number }

export function flood (p: FloodParams, log: (m: string) => void = () => {}): Promise<CaseResult> {
  return runCase('abuse-flood', `Flood of random bytes and truncated hellos (${p.n + p.rstN} connections)`, log, async (c) => {
    const be = await startWorker('backend', { mode: 'line' })
    c.defer(() => be.stop())
    const eb = be.listening[0] as { host: string, port: number }
    const px = await startProxyCli(['--listen', '127.0.0.1:0', '--route', `a.test=${eb.host}:${eb.port}`, '--backend', `${eb.host}:${eb.port}`, '--peek-timeout', '2000', '--metrics', '127.0.0.1:0'], { nofile: nofileLimit() })
    c.defer(() => px.stop('SIGKILL'))
    const lp = px.listening[0] as { host: string, port: number }
    const gen = await startWorker('loadgen', {})
    c.defer(() => gen.stop())
    // Batch 1: every client half-closes after its flight, so every one reaches a routing decision.
    const f1 = await gen.rpc.call('flood', { ...lp, n: p.n, rstShare: 0, concurrency: 100 }, 300_000)
    await waitFor(async () => sum(await metricsOf(px), 'kt_connections_total') >= p.n, 'every connection counted', 10_000, { everyMs: 100 }).catch(() => undefined) // the figures below show a shortfall
    const m1 = await metricsOf(px)
    c.figure('batch 1 (FIN after the flight): flights sent', JSON.stringify(f1.byKind))
    c.figure('batch 1 kt_route_decisions_total by outcome', JSON.stringify(byLabel(m1, 'kt_route_decisions_total', 'outcome')))
    c.figure('batch 1 kt_connections_total by outcome', JSON.stringify(byLabel(m1, 'kt_connections_total', 'outcome')))
    c.check('batch 1: accepted = connections made', sum(m1, 'kt_connections_accepted_total') === p.n, `${sum(m1, 'kt_connections_accepted_total')} / ${p.n}`)
    c.check('batch 1: kt_connections_total sums to the connections made', sum(m1, 'kt_connections_total') === p.n, `${sum(m1, 'kt_connections_total')} / ${p.n}`)
    c.check('batch 1: kt_route_decisions_total sums to the connections made', sum(m1, 'kt_route_decisions_total') === p.n, `${sum(m1, 'kt_route_decisions_total')} / ${p.n}`)
    c.check('batch 1: no client hung', f1.timeouts === 0)
    // Batch 2: some clients reset right after their flight, possibly before any decision.
    if (p.rstN > 0) {
      const f2 = await gen.rpc.call('flood', { ...lp, n: p.rstN, rstShare: 0.5, concurrency: 100 }, 300_000)
      const total = p.n + p.rstN
      await waitFor(async () => sum(await metricsOf(px), 'kt_connections_total') >= total, 'every connection counted', 10_000, { everyMs: 100 }).catch(() => undefined) // the figures below show a shortfall
      const m2 = await metricsOf(px)
      const resets = (f2.byEnd as Record<string, number>).rst ?? 0
      const decisions = sum(m2, 'kt_route_decisions_total')
      c.figure('batch 2 (half reset right after the flight): clients / resets', `${p.rstN} / ${resets}`)
      c.figure('after both batches, kt_connections_total by outcome', JSON.stringify(byLabel(m2, 'kt_connections_total', 'outcome')))
      c.figure('after both batches, kt_connections_accepted_total', `${sum(m2, 'kt_connections_accepted_total')} of ${total} made`)
      c.check('batch 2: kt_connections_total still sums to every connection made', sum(m2, 'kt_connections_total') === total, `${sum(m2, 'kt_connections_total')} / ${total}`)
      c.check('batch 2: a decision for every connection that did not reset first', decisions >= total - resets && decisions <= total, `${decisions} in [${total - resets}, ${total}]`)
    }
    c.check('the proxy is still running, no fatal log line', px.child.exitCode === null && !px.warnings.some((l) => l.includes('"level":60')))
    const after = await gen.rpc.call('churn', { ...lp, rate: 50, seconds: 1, prefix: 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n' }, 30_000)
    c.check('normal clients served after the flood', after.failed === 0, JSON.stringify(after.errors))
  })
}

export interface MaxConnParams { max: number, over: number }

export function maxConnections (p: MaxConnParams, log: (m: string) => void = () => {}): Promise<CaseResult> {
  return runCase('abuse-max-connections', `Connections over --max-connections ${p.max}`, log, async (c) => {
    const be = await startWorker('backend', { mode: 'line' })
    c.defer(() => be.stop())
    const eb = be.listening[0] as { host: string, port: number }
    const px = await startProxyCli(['--listen', '127.0.0.1:0', '--backend', `${eb.host}:${eb.port}`, '--max-connections', String(p.max), '--metrics', '127.0.0.1:0'], { nofile: nofileLimit() })
    c.defer(() => px.stop('SIGKILL'))
    const lp = px.listening[0] as { host: string, port: number }
    const gen = await startWorker('loadgen', {})
    c.defer(() => gen.stop())
    const first = await gen.rpc.call('idle-open', { ...lp, count: p.max, concurrency: 100 }, 120_000)
    const over = await gen.rpc.call('idle-open', { ...lp, count: p.over, concurrency: 100, timeoutMs: 2000 }, 120_000)
    const m = await metricsOf(px)
    c.figure('held / refused over the cap', `${String(first.opened)} / ${String(over.failed)} (client saw ${JSON.stringify(over.errors)})`)
    c.figure('kt_connections_total{outcome=max_connections}', sum(m, 'kt_connections_total', { outcome: 'max_connections' }))
    c.check(`${p.max} held`, first.opened === p.max)
    c.check(`every one of the ${p.over} over the cap closed`, over.opened === 0 && over.failed === p.over)
    c.check('and each counted as max_connections', sum(m, 'kt_connections_total', { outcome: 'max_connections' }) === p.over)
    const check = await gen.rpc.call('idle-check', {}, 120_000)
    c.check('the held ones are undisturbed', check.ok === p.max, `${String(check.ok)}/${p.max}`)
    await gen.rpc.call('idle-close')
    const ok = await waitFor(async () => sum(await metricsOf(px), 'kt_active_connections') === 0, 'no active connection', 10_000, { everyMs: 100 }).then(() => true, () => false)
    const again = await gen.rpc.call('idle-open', { ...lp, count: 50, concurrency: 50 }, 60_000)
    c.check('served again once below the cap', ok && again.opened === 50, `${String(again.opened)}/50`)
    await gen.rpc.call('idle-close')
  })
}

export interface Ulimit64Params {
  attempts: number
  /** false: KT_NATIVE=0 (pure-JS splice); true: the default. */
  native: boolean
}

export function ulimit64 (p: Ulimit64Params, log: (m: string) => void = () => {}): Promise<CaseResult> {
  const which = p.native ? 'defaults (native lanes when built)' : 'pure-JS data plane (KT_NATIVE=0)'
  return runCase(p.native ? 'abuse-ulimit64-default' : 'abuse-ulimit64-js', `A proxy under ulimit -n 64, ${which}`, log, async (c) => {
    const be = await startWorker('backend', { mode: 'line' })
    c.defer(() => be.stop())
    const eb = be.listening[0] as { host: string, port: number }
    // --max-connections far above what 64 fds allow, so the fd limit (not the cap) is what is hit.
    const px = await startProxyCli(['--listen', '127.0.0.1:0', '--backend', `${eb.host}:${eb.port}`, '--max-connections', '1000', '--metrics', '127.0.0.1:0'], { nofile: 64, env: p.native ? {} : { KT_NATIVE: '0' } })
    c.defer(() => px.stop('SIGKILL'))
    const lp = px.listening[0] as { host: string, port: number }
    const gen = await startWorker('loadgen', {})
    c.defer(() => gen.stop())
    const flood = await gen.rpc.call('idle-open', { ...lp, count: p.attempts, concurrency: 20, timeoutMs: 1000 }, 120_000)
    await sleep(300)
    c.figure('connections attempted / held at once / failed', `${p.attempts} / ${String(flood.opened)} / ${String(flood.failed)} (${JSON.stringify(flood.errors)})`)
    c.check('the proxy is still running while out of fds', px.child.exitCode === null)
    const held = await gen.rpc.call('idle-check', {}, 60_000)
    c.check('the connections it holds still work', held.ok === flood.opened, `${String(held.ok)}/${String(flood.opened)}`)
    await gen.rpc.call('idle-close')
    const t0 = Date.now()
    let recovered = false
    for (let i = 0; i < 50 && !recovered; i++) {
      const r = await gen.rpc.call('idle-open', { ...lp, count: 10, concurrency: 10 }, 30_000)
      await gen.rpc.call('idle-close')
      recovered = r.opened === 10
      if (!recovered) await sleep(100)
    }
    const took = Date.now() - t0
    c.check('service recovers once fds free up', recovered, `${took} ms`)
    c.figure('time to recover after the clients closed', `${took} ms`)
    const m = await metricsOf(px)
    c.figure('kt_accept_errors_total by code', JSON.stringify(byLabel(m, 'kt_accept_errors_total', 'code')))
    c.figure('kt_upstream_connect_errors_total by code', JSON.stringify(byLabel(m, 'kt_upstream_connect_errors_total', 'code')))
    c.figure('kt_connections_total by outcome', JSON.stringify(byLabel(m, 'kt_connections_total', 'outcome')))
    const fallbacks = sum(m, 'kt_native_fallbacks_total')
    if (fallbacks > 0) c.figure('kt_native_fallbacks_total', fallbacks)
    const counted = sum(m, 'kt_accept_errors_total') + sum(m, 'kt_upstream_connect_errors_total') + sum(m, 'kt_connections_total') - sum(m, 'kt_connections_total', { outcome: 'eof' })
    c.figure('failed clients / failures visible in /metrics (accept errors + outcomes other than eof; one client may count more than once)', `${String(flood.failed)} / ${counted}`)
    const warned = px.warnings.some((l) => l.includes('"level":40') && (l.includes('EMFILE') || l.includes('ENFILE')))
    c.figure('EMFILE warning logged', warned ? 'yes' : 'no')
    if (counted === 0) {
      c.note('None of the connections refused for want of fds is counted: when accept() hits EMFILE, libuv closes its reserve fd, accepts the pending connections and closes them at once, and reports nothing to Node (uv__emfile_trick), so the proxy never sees them. The defence is the default --max-connections, derived from the fd limit, which refuses (and counts) before the limit is reached; this run sets --max-connections 1000 on purpose to reach the fd limit.')
    }
    const stop = await px.stop('SIGTERM')
    c.check('and it still drains and exits 0', stop.code === 0, String(stop.code ?? stop.signal))
  })
}
