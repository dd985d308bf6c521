// Case 4: backend faults while traffic flows: kill -9 mid-transfer, a
// black-holed backend, a lossy and slow path, a backend that never reads.

import { execFileSync } from 'node:child_process'
import { createNetns, netnsAvailable } from '../../support/netns.js'
import { runCase, type CaseResult } from '../lib/case.js'
import { byLabel, scrape, sum } from '../lib/metrics.js'
import { alive, nofile as nofileLimit, rssSampler, settledRss, sleep, startProxyCli, startWorker } from '../lib/proc.js'
import { kib, ms, summarize } from '../lib/stats.js'

interface StreamResult { client: number, backend: string | undefined, written: number, received: number, exact: boolean, error: string | undefined, cleanEnd: boolean, ms: number }

export interface Kill9Params { clients: number, bytes: number, rateBytesPerSec: number, killAfterMs: number }

/** kill -9 of one backend mid-transfer: its clients see a reset, the others finish byte-exact. */
export function kill9MidTransfer (p: Kill9Params, log: (m: string) => void = () => {}): Promise<CaseResult> {
  return runCase('fault-kill9', 'Backend killed with kill -9 mid-transfer', log, async (c) => {
    const a = await startWorker('backend', { mode: 'stream', banner: 'A' })
    c.defer(() => { if (alive(a.pid)) process.kill(a.pid, 'SIGKILL') })
    const b = await startWorker('backend', { mode: 'stream', banner: 'B' })
    c.defer(() => b.stop())
    const ea = a.listening[0] as { host: string, port: number }
    const eb = b.listening[0] as { host: string, port: number }
    const px = await startProxyCli(['--listen', '127.0.0.1:0', '--backend', `${ea.host}:${ea.port},${eb.host}:${eb.port}`, '--metrics', '127.0.0.1:0'])
    c.defer(() => px.stop('SIGKILL'))
    const lp = px.listening[0] as { host: string, port: number }
    const gen = await startWorker('loadgen', {})
    c.defer(() => gen.stop())
    const started = Date.now()
    const run = gen.rpc.call('stream', { ...lp, clients: p.clients, bytes: p.bytes, rateBytesPerSec: p.rateBytesPerSec, banner: true, timeoutMs: 60_000 }, 90_000)
    await sleep(p.killAfterMs)
    process.kill(a.pid, 'SIGKILL')
    const killedAt = Date.now() - started
    const results = (await run).results as StreamResult[]
    const onA = results.filter((r) => r.backend === 'A')
    const onB = results.filter((r) => r.backend === 'B')
    c.figure('transfers in flight at the kill', `${results.length} (${onA.length} on the killed backend, ${onB.length} on the other), ${(p.bytes / 1048576).toFixed(0)} MiB each at ${(p.rateBytesPerSec / 1048576).toFixed(0)} MiB/s`)
    c.figure('killed at', `${killedAt} ms into the transfers`)
    c.figure('clients of the killed backend', onA.map((r) => `${r.error ?? (r.cleanEnd ? 'clean end' : 'closed')} after ${(r.received / 1048576).toFixed(1)} MiB`).join('; '))
    // A client still uploading sees the proxy's RST as EPIPE on its next write, one reading sees ECONNRESET.
    c.check('every client of the killed backend saw a reset (not a clean end)', onA.length > 0 && onA.every((r) => (r.error === 'ECONNRESET' || r.error === 'EPIPE') && !r.exact), onA.map((r) => r.error ?? 'none').join(','))
    c.check('every client of the other backend finished byte-exact', onB.length > 0 && onB.every((r) => r.exact), onB.map((r) => `${r.exact ? 'exact' : 'NOT exact'} ${r.error ?? ''}`).join(','))
    c.check('all clients were placed on one of the two backends', onA.length + onB.length === p.clients)
    // New clients afterwards: served (a refused connect to the dead backend is retried before any byte).
    const after = (await gen.rpc.call('stream', { ...lp, clients: 4, bytes: 1_048_576, banner: true }, 60_000)).results as StreamResult[]
    c.check('clients after the kill are all served byte-exact by the survivor', after.every((r) => r.exact && r.backend === 'B'), after.map((r) => `${r.backend ?? '?'}:${r.exact ? 'exact' : r.error ?? 'short'}`).join(','))
    const m = await scrape((px.metrics as { host: string }).host, (px.metrics as { port: number }).port)
    c.figure('kt_connections_total by outcome', JSON.stringify(byLabel(m, 'kt_connections_total', 'outcome')))
    c.check('the kill is counted as reset_upstream', sum(m, 'kt_connections_total', { outcome: 'reset_upstream' }) === onA.length)
    c.check('the proxy is still running', px.child.exitCode === null)
  })
}

export interface BlackholeParams { connectTimeoutMs: number, rate: number, seconds: number }

/** A black-holed backend (netns + iptables DROP): the connect times out at the setting, the retry goes elsewhere. */
export function blackholedBackend (p: BlackholeParams, log: (m: string) => void = () => {}): Promise<CaseResult> {
  return runCase('fault-blackhole', `Black-holed backend, --connect-timeout ${p.connectTimeoutMs}`, log, async (c) => {
    if (!netnsAvailable()) { c.note('skipped: needs ip netns (root)'); return }
    const ns = createNetns()
    c.defer(() => ns.remove())
    ns.exec(['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '9', '-j', 'DROP'])
    const good = await startWorker('backend', { mode: 'line' })
    c.defer(() => good.stop())
    const eg = good.listening[0] as { host: string, port: number }
    const px = await startProxyCli(['--listen', '127.0.0.1:0', '--backend', `${ns.nsIp}:9,${eg.host}:${eg.port}`, '--connect-timeout', String(p.connectTimeoutMs), '--metrics', '127.0.0.1:0'])
    c.defer(() => px.stop('SIGKILL'))
    const lp = px.listening[0] as { host: string, port: number }
    const gen = await startWorker('loadgen', {})
    c.defer(() => gen.stop())
    const r = await gen.rpc.call('churn', { ...lp, rate: p.rate, seconds: p.seconds, raw: true, timeoutMs: p.connectTimeoutMs * 4 + 5000 }, (p.seconds + 30) * 1000)
    const raw = r.raw as number[]
    const slow = raw.filter((v) => v > p.connectTimeoutMs / 2)
    const s = summarize(slow)
    const m = await scrape((px.metrics as { host: string }).host, (px.metrics as { port: number }).port)
    const timeouts = sum(m, 'kt_upstream_connect_errors_total', { code: 'KT_ERR_CONNECT_TIMEOUT' })
    c.figure('connections while a backend is black-holed', `${String(r.attempted)} at ${p.rate}/s, ${String(r.failed)} failed`)
    c.figure('connects that hit the black hole (then retried)', `${slow.length}; their connect-to-first-byte min / p50 / max: ${ms(s.min)} / ${ms(s.p50)} / ${ms(s.max)}`)
    c.figure('kt_upstream_connect_errors_total{code=KT_ERR_CONNECT_TIMEOUT}', timeouts)
    c.figure('other connections, p50 / p99', (() => { const f = summarize(raw.filter((v) => v <= p.connectTimeoutMs / 2)); return `${ms(f.p50)} / ${ms(f.p99)}` })())
    c.check('at least one connect hit the black hole', slow.length >= 1 && timeouts >= 1)
    c.check('every such connect timed out within ±10% of the setting, then was served elsewhere', slow.every((v) => v >= p.connectTimeoutMs * 0.9 && v <= p.connectTimeoutMs * 1.1), `${ms(s.min)}..${ms(s.max)} for ${p.connectTimeoutMs} ms`)
    c.check('the timeouts counted match the slow connects', timeouts === slow.length, `${timeouts} counted, ${slow.length} slow`)
    c.check('no client failed (the retry went to the other backend)', r.failed === 0, JSON.stringify(r.errors))
  })
}

export interface LossyParams { clients: number, bytes: number, lossPct: number, delayMs: number }

/** 5% loss (iptables statistic in a netns) + 50 ms delay (a userspace forwarder): transfers byte-exact. */
export function lossyPath (p: LossyParams, log: (m: string) => void = () => {}): Promise<CaseResult> {
  return runCase('fault-lossy', `Lossy, slow path: ${p.lossPct}% loss each way + ${p.delayMs} ms delay each way`, log, async (c) => {
    if (!netnsAvailable()) { c.note('skipped: needs ip netns (root)'); return }
    const ns = createNetns()
    c.defer(() => ns.remove())
    // veth hands over 64 KiB GSO super-packets; one segment per packet makes
    // "5% of packets" mean 5% of MTU-sized TCP segments, as on a real link.
    const id = ns.name.slice('kt-test-'.length)
    execFileSync('ip', ['link', 'set', 'dev', `ktv${id}a`, 'gso_max_segs', '1'])
    ns.exec(['ip', 'link', 'set', 'dev', `ktv${id}b`, 'gso_max_segs', '1'])
    const prob = String(p.lossPct / 100)
    for (const chain of ['INPUT', 'OUTPUT']) {
      // The first rule only counts (no target); the second drops at random.
      ns.exec(['iptables', '-A', chain, '-p', 'tcp'])
      ns.exec(['iptables', '-A', chain, '-p', 'tcp', '-m', 'statistic', '--mode', 'random', '--probability', prob, '-j', 'DROP'])
    }
    const echo = await startWorker('backend', { mode: 'stream', host: ns.nsIp }, { wrap: ['ip', 'netns', 'exec', ns.name] })
    c.defer(() => echo.stop())
    const ee = echo.listening[0] as { host: string, port: number }
    const fwd = await startWorker('backend', { mode: 'delay', target: ee, delayMs: p.delayMs })
    c.defer(() => fwd.stop())
    const ef = fwd.listening[0] as { host: string, port: number }
    const px = await startProxyCli(['--listen', '127.0.0.1:0', '--backend', `${ef.host}:${ef.port}`])
    c.defer(() => px.stop('SIGKILL'))
    const lp = px.listening[0] as { host: string, port: number }
    const gen = await startWorker('loadgen', {})
    c.defer(() => gen.stop())
    const t0 = Date.now()
    const results = (await gen.rpc.call('stream', { ...lp, clients: p.clients, bytes: p.bytes, timeoutMs: 240_000 }, 260_000)).results as StreamResult[]
    const secs = (Date.now() - t0) / 1000
    const counters = (chain: string): { seen: number, dropped: number } => {
      const out = ns.exec(['iptables', '-L', chain, '-v', '-n', '-x'])
      const rows = out.split('\n').filter((l) => /^\s*\d+\s+\d+/.test(l)).map((l) => Number(l.trim().split(/\s+/)[0]))
      return { seen: rows[0] ?? 0, dropped: rows[1] ?? 0 }
    }
    const i = counters('INPUT')
    const o = counters('OUTPUT')
    const exact = results.filter((r) => r.exact).length
    c.figure('transfers', `${p.clients} × ${(p.bytes / 1048576).toFixed(2)} MiB echoed (both ways) in ${secs.toFixed(1)} s`)
    c.figure('packets dropped by iptables (into / out of the backend netns)', `${i.dropped} of ${i.seen} (${((100 * i.dropped) / Math.max(1, i.seen)).toFixed(1)}%) / ${o.dropped} of ${o.seen} (${((100 * o.dropped) / Math.max(1, o.seen)).toFixed(1)}%)`)
    c.figure('byte-exact transfers', `${exact} / ${p.clients}`)
    c.check('packets were really dropped', i.dropped > 0 && o.dropped > 0)
    c.check('every transfer byte-exact (sha256 of what was sent = what came back)', exact === p.clients, results.filter((r) => !r.exact).map((r) => `${r.received}/${r.written} ${r.error ?? ''}`).join(','))
  })
}

export interface StallParams { clients: number, seconds: number, perConnBudgetKiB: number }

/** A backend that accepts and never reads: backpressure holds, proxy memory stays bounded. */
export function neverReadingBackend (p: StallParams, log: (m: string) => void = () => {}): Promise<CaseResult> {
  return runCase('fault-stall', `Backend that accepts and never reads (${p.clients} clients pushing for ${p.seconds} s)`, log, async (c) => {
    const stall = await startWorker('backend', { mode: 'stall' }, { nofile: nofileLimit() })
    c.defer(() => stall.stop())
    const es = stall.listening[0] as { host: string, port: number }
    const px = await startProxyCli(['--listen', '127.0.0.1:0', '--backend', `${es.host}:${es.port}`])
    c.defer(() => px.stop('SIGKILL'))
    const lp = px.listening[0] as { host: string, port: number }
    const gen = await startWorker('loadgen', {})
    c.defer(() => gen.stop())
    const rss0 = await settledRss(px.pid)
    const sampler = rssSampler(px.pid, 250)
    const r = await gen.rpc.call('stall', { ...lp, clients: p.clients, seconds: p.seconds }, (p.seconds + 20) * 1000)
    const { peak, samples } = sampler.stop()
    const half = samples.slice(Math.floor(samples.length / 2))
    const lateGrowth = Math.max(...half) - (half[0] ?? 0)
    const acc = r.acceptedBytes as { p50: number, max: number }
    c.figure('proxy RSS before / peak while pushing', `${kib(rss0)} / ${kib(peak)} (+${kib(peak - rss0)}, ${kib((peak - rss0) / p.clients)} per stalled connection)`)
    c.figure('growth over the second half of the push', kib(lateGrowth))
    c.figure('bytes each client got accepted before backpressure stopped it (p50 / max)', `${(acc.p50 / 1048576).toFixed(1)} MiB / ${(acc.max / 1048576).toFixed(1)} MiB (almost all in kernel socket buffers)`)
    c.check(`proxy RSS growth < ${p.perConnBudgetKiB} KiB per stalled connection`, peak - rss0 < p.clients * p.perConnBudgetKiB, `${kib((peak - rss0) / p.clients)}`)
    c.check('RSS flat once buffers are full (second-half growth < 4 MiB)', lateGrowth < 4096, kib(lateGrowth))
    c.check('the proxy is still running', px.child.exitCode === null)
  })
}
