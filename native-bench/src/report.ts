// Turns a results file into docs/benchmarks.md and docs/benchmarks.svg.
// Pure string building (no plotting dependency); writeDocs does the file I/O.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { METRICS, WORKLOAD_TITLES, type ContenderInfo, type MetricDef, type Results, type WorkloadId } from './defs.js';
import { roundRatios, summarize, type Summary } from './stats.js';
import { extractSlowSection, SLOW_START } from './slowpath.js';
import { extractRelaySection } from './relaybench.js';

export const TRIED_START = '<!-- what-was-tried:start -->';
export const TRIED_END = '<!-- what-was-tried:end -->';
/** The `--placement shared` run's section: each run keeps the other's (see writeDocs). */
export const SHARED_START = '<!-- shared:start -->';
export const SHARED_END = '<!-- shared:end -->';
const TRIED_PLACEHOLDER = `_The lead fills this in: each idea tried on the data plane, the figure it moved (ratio to docker-proxy in the same round), and whether it was kept. This section survives regeneration._`;

export interface Cell {
  value: Summary;
  /** value / direct, per round, summarized. */
  vsDirect: Summary;
  /** value / docker-proxy, per round, summarized. */
  vsDocker: Summary;
  errors: string[];
}

function byRound(r: Results, contender: string, def: MetricDef): Map<number, number> {
  const m = new Map<number, number>();
  for (const s of r.samples) {
    if (s.contender !== contender || s.workload !== def.workload || s.error !== undefined) continue;
    const v = s.metrics[def.metric];
    if (v !== undefined && Number.isFinite(v)) m.set(s.round, v);
  }
  return m;
}

export function cell(r: Results, contender: string, def: MetricDef): Cell {
  const values = byRound(r, contender, def);
  const errors = r.samples
    .filter((s) => s.contender === contender && s.workload === def.workload && s.error !== undefined)
    .map((s) => s.error!);
  return {
    value: summarize([...values.values()]),
    vsDirect: summarize(roundRatios(values, byRound(r, 'direct', def))),
    vsDocker: summarize(roundRatios(values, byRound(r, 'docker-proxy', def))),
    errors,
  };
}

// ---- number formatting -----------------------------------------------------

export function fmtNum(x: number, digits: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  if (digits === 0 && Math.abs(x) >= 10_000) return `${(x / 1000).toFixed(1)}k`;
  return x.toFixed(digits);
}

function fmtRange(s: Summary, digits: number): string {
  if (s.n === 0) return 'n/a';
  if (s.n === 1) return fmtNum(s.median, digits);
  return `${fmtNum(s.median, digits)} [${fmtNum(s.min, digits)}–${fmtNum(s.max, digits)}]`;
}

function fmtRatio(s: Summary): string {
  return s.n === 0 ? '–' : `${s.median.toFixed(2)}×`;
}

function mdEscape(s: string): string {
  return s.replace(/\|/g, '\\|');
}

function activeContenders(r: Results): ContenderInfo[] {
  return r.contenders.filter((c) => c.skipped === undefined);
}

function headline(): MetricDef[] {
  return METRICS.filter((m) => m.headline);
}

function has(r: Results, contender: string, def: MetricDef): boolean {
  return r.samples.some((s) => s.contender === contender && s.workload === def.workload);
}

// ---- routing cost (issue #3) -----------------------------------------------------

/** Routing may cost at most this share of the new-connection rate (issue #3). */
export const ROUTING_BUDGET = 0.1;

/** Proxy CPU per connection in µs, per round, from the run's CPU % and its rate. */
function cpuPerConn(r: Results, contender: string, workload: WorkloadId): Map<number, number> {
  const m = new Map<number, number>();
  for (const s of r.samples) {
    if (s.contender !== contender || s.workload !== workload || s.error !== undefined) continue;
    const cpu = s.metrics['cpuPct'];
    const rps = s.metrics['rps'];
    if (cpu !== undefined && rps !== undefined && Number.isFinite(cpu) && rps > 0) m.set(s.round, (cpu / 100) * (1e6 / rps));
  }
  return m;
}

function fmtSummary(s: Summary, digits: number): string {
  return s.n === 1 ? s.median.toFixed(digits) : `${s.median.toFixed(digits)} [${s.min.toFixed(digits)}–${s.max.toFixed(digits)}]`;
}

/**
 * Issue #3's figure, one line per new-connection workload: kt-routed ÷ kt-l4, taken
 * within each round (the two ran seconds apart), median [min–max] over rounds. connclose
 * is routed by HTTP Host, tlsclose by the TLS SNI. Empty when either contender is missing.
 */
export function routingCostLines(r: Results): string[] {
  const kinds: { w: WorkloadId; title: string }[] = [
    { w: 'connclose', title: 'New connections (`connclose`, plain HTTP, routed by Host)' },
    { w: 'tlsclose', title: 'New TLS connections (`tlsclose`, routed by SNI)' },
  ];
  const out: string[] = [];
  for (const { w, title } of kinds) {
    const rate = METRICS.find((d) => d.workload === w && d.metric === 'rps');
    if (rate === undefined || !r.workloads.some((x) => x.id === w)) continue;
    const routed = byRound(r, 'kt-routed', rate);
    const l4 = byRound(r, 'kt-l4', rate);
    const ratios = roundRatios(routed, l4);
    const failedRouted = r.samples.filter((s) => s.contender === 'kt-routed' && s.workload === w && s.error !== undefined).length;
    const failed = failedRouted > 0 ? ` kt-routed failed in ${failedRouted} of ${r.method.rounds} rounds (see Failures and gaps).` : '';
    if (ratios.length === 0) {
      // said only when both ran and none of their rounds pairs up (e.g. kt-routed failed throughout)
      const ran = (c: string): boolean => r.samples.some((s) => s.workload === w && s.contender === c);
      if (ran('kt-routed') && ran('kt-l4')) out.push(`- ${title}: no round with both kt-routed and kt-l4.${failed}`);
      continue;
    }
    const sum = summarize(ratios);
    const cost = 1 - sum.median;
    const verdict = cost <= ROUTING_BUDGET ? `within issue #3's ${ROUTING_BUDGET * 100}%` : `over issue #3's ${ROUTING_BUDGET * 100}%`;
    let line = `- ${title}: kt-routed ÷ kt-l4 = **${fmtSummary(sum, 2)}** (rounds: ${ratios.map((x) => x.toFixed(2)).join(', ')}): routing costs ${(cost * 100).toFixed(0)}% of the new-connection rate, ${verdict}.`;
    const cpuR = summarize([...cpuPerConn(r, 'kt-routed', w).values()]);
    const cpuL = summarize([...cpuPerConn(r, 'kt-l4', w).values()]);
    if (cpuR.n > 0 && cpuL.n > 0) line += ` Proxy CPU per connection: ${cpuR.median.toFixed(0)} µs routed, ${cpuL.median.toFixed(0)} µs L4.`;
    // When even L4 runs near direct, the ends (here: both sides of every handshake) set
    // the rate, and a rate ratio near 1 says little; the CPU per connection still does.
    const l4Direct = summarize(roundRatios(l4, byRound(r, 'direct', rate)));
    if (l4Direct.n > 0 && l4Direct.median >= 0.8) {
      line += ` kt-l4 reaches ${l4Direct.median.toFixed(2)}× direct here, so the client and the backend set the rate, not the proxy: read the CPU per connection too.`;
    }
    if (w === 'tlsclose') {
      const errs = r.samples
        .filter((s) => s.contender === 'kt-routed' && s.workload === w)
        .reduce((a, s) => a + (s.metrics['connectErrors'] ?? 0) + (s.metrics['readErrors'] ?? 0), 0);
      line += ` wrk connect + read errors through kt-routed: ${errs}.`;
    }
    out.push(line + failed);
  }
  return out;
}

function routingCostSection(r: Results): string[] {
  const lines = routingCostLines(r);
  if (lines.length === 0) return [];
  return [
    '## Routing cost (issue #3)',
    '',
    `**routing cost (issue #3)**: new connections per second through a routed listener (\`kt-routed\`, every connection peeked before it is spliced) against a plain L4 listener (\`kt-l4\`), the ratio taken within each round, median [min–max] over ${r.method.rounds} rounds. Issue #3 asks for routing to cost under ${ROUTING_BUDGET * 100}% (a ratio of at least ${(1 - ROUTING_BUDGET).toFixed(2)}).`,
    '',
    ...lines,
    '',
  ];
}

/** The TLS backend, for the Method section and the shared section. */
function tlsMethodLine(r: Results): string | undefined {
  const t = r.method.tls;
  if (t === undefined) return undefined;
  return `**TLS (new TLS conn/s)**: the same nginx serves HTTPS on its own 127.0.0.1 port, same 100-byte body and keep-alive; certificate ${t.certificate}; ${t.protocols} allowed; resumption ${t.resumption}. SNI name \`${t.serverName}\`${t.serverName === 'localhost' ? ' (bench.localhost does not resolve here without editing /etc/hosts, and wrk takes the SNI from the URL\'s host; kt-routed routes both names)' : ''}. The load generator is wrk (Debian's wrk links OpenSSL), not autocannon: on this machine autocannon is itself the bottleneck (/work/shared/perf-anchors.md: about a quarter of wrk's rate on the bare backend), so wrk is the client that ranks the proxies. Docker port mapping does not run it: its container serves no TLS, and its proxy is the docker-proxy of the standalone row.`;
}

// ---- markdown ----------------------------------------------------------------

export function extractTried(existing: string | undefined): string {
  if (existing === undefined) return TRIED_PLACEHOLDER;
  const a = existing.indexOf(TRIED_START);
  const b = existing.indexOf(TRIED_END);
  if (a < 0 || b < a) return TRIED_PLACEHOLDER;
  const inner = existing.slice(a + TRIED_START.length, b).trim();
  return inner.length > 0 ? inner : TRIED_PLACEHOLDER;
}

function ceilingNote(r: Results): string | undefined {
  const w = METRICS.find((m) => m.workload === 'wrk' && m.metric === 'rps')!;
  const a = METRICS.find((m) => m.workload === 'autocannon' && m.metric === 'rps')!;
  const dw = cell(r, 'direct', w).value;
  const da = cell(r, 'direct', a).value;
  if (dw.n === 0 || da.n === 0) return undefined;
  const ratio = da.median / dw.median;
  const who =
    ratio < 0.8
      ? `autocannon itself is the bottleneck: against the bare backend it reaches ${(ratio * 100).toFixed(0)}% of what wrk reaches, so autocannon's figures mostly measure autocannon. Rank the proxies by wrk.`
      : `autocannon is not far below wrk on the bare backend (${(ratio * 100).toFixed(0)}%), so both rank the proxies.`;
  return `On the direct connection wrk reached ${fmtNum(dw.median, 0)} req/s and autocannon ${fmtNum(da.median, 0)} req/s: ${who}`;
}

/** The exact command, with the KT_* environment it ran with. */
function commandLine(r: Results): string {
  const env = Object.entries(r.method.env ?? {}).map(([k, v]) => `${k}="${v}"`).join(' ');
  if (env.length === 0) return r.command;
  return r.command.includes('&& ') ? r.command.replace('&& ', () => `&& ${env} `) : `${env} ${r.command}`;
}

function placementOf(r: Results): 'pinned' | 'shared' {
  return r.method.placement ?? 'pinned'; // results from before the option were pinned
}

/** Who may use more than one core: the same in both placements, said in both sections. */
const THREADS_NOTE =
  'Each contender keeps its own configuration in both placements: HAProxy (`nbthread 1`) and nginx (one worker) are single-threaded by their own config; docker-proxy runs as shipped (Go, `GOMAXPROCS` unset) and kind-tunnel with its defaults (with the native addon, up to two splice engine threads besides the event loop), so those two may use more than one core wherever the placement lets them.';

function placementLine(r: Results): string {
  const pin = r.method.pinning;
  if (placementOf(r) === 'shared') {
    return `- **Placement: shared** (\`--placement shared\`). Nothing pinned: the load generator, the backends and the proxy are free on all ${r.machine.cores} cores, the placement /work/shared/perf-anchors.md set issue #8's targets in, so a proxy's CPU cost competes with the load generator's and the backend's. ${THREADS_NOTE}`;
  }
  const cores = pin.proxy === 'unpinned' ? ' (one core only, so nothing could be pinned)' : '';
  return `- **Placement: pinned**${cores}. Load generator on ${pin.loadGenerator}, proxy on ${pin.proxy} (\`taskset\`), backends ${pin.backend}: every proxy gets one core of its own. ${THREADS_NOTE} \`--placement shared\` runs the same with nothing pinned and writes its own section (Shared CPUs).`;
}

export function renderMarkdown(r: Results, opts: { resultsFile: string; tried: string }): string {
  const cs = activeContenders(r);
  const heads = headline().filter((d) => r.workloads.some((w) => w.id === d.workload));
  const L: string[] = [];
  const p = (s = ''): void => void L.push(s);
  p('# Benchmarks');
  p();
  p(`<!-- Generated by native-bench (native-bench/src/report.ts) from ${opts.resultsFile}. Everything except the "What was tried", "Shared CPUs" and "Slow connect path" sections is rewritten on every run. -->`);
  p();
  p("kind-tunnel's data plane against a direct connection and the proxies people put in front of kind today, measured side by side on one machine, in the same run, in interleaved rounds.");
  p();
  if (r.mode !== 'full') {
    p(`> **Provisional figures.** This is a \`${r.mode}\` run (${r.method.durationS} s per run, ${r.method.rounds} rounds) on a machine shared with other work, so absolute numbers are noisy. The ratios within a round (× direct, × docker-proxy) are the figures to read. The final numbers come from a full run on a quiet machine.`);
    p();
  }
  p('![Each workload as a ratio to docker-proxy in the same round](benchmarks.svg)');
  p();
  p('## Summary');
  p();
  p(`Median of ${r.method.rounds} rounds, [min–max]. Higher is better for throughput; lower is better for TTFB, memory and CPU. "n/a": not measured (see the notes below).`);
  p();
  p(`| contender | ${heads.map((d) => `${d.title} (${d.unit})`).join(' | ')} |`);
  p(`|---|${heads.map(() => '---').join('|')}|`);
  for (const c of cs) {
    p(`| ${c.label} | ${heads.map((d) => (has(r, c.id, d) ? fmtRange(cell(r, c.id, d).value, d.digits) : 'n/a')).join(' | ')} |`);
  }
  p();
  p('## Ratios');
  p();
  p('Each cell is **× direct / × docker-proxy**: the contender\'s figure divided by the reference\'s figure in the same round, median over rounds. Above 1 is better for throughput, below 1 is better for TTFB, memory and CPU.');
  p();
  p(`| contender | ${heads.map((d) => d.title).join(' | ')} |`);
  p(`|---|${heads.map(() => '---').join('|')}|`);
  for (const c of cs) {
    p(`| ${c.label} | ${heads.map((d) => { const x = cell(r, c.id, d); return x.value.n === 0 ? 'n/a' : `${fmtRatio(x.vsDirect)} / ${fmtRatio(x.vsDocker)}`; }).join(' | ')} |`);
  }
  p();
  for (const l of routingCostSection(r)) p(l);
  const lat = METRICS.filter((d) => !d.headline && r.workloads.some((w) => w.id === d.workload));
  if (lat.length > 0) {
    p('## Latency and the rest');
    p();
    p('Medians over rounds.');
    p();
    p(`| contender | ${lat.map((d) => `${d.title} (${d.unit})`).join(' | ')} |`);
    p(`|---|${lat.map(() => '---').join('|')}|`);
    for (const c of cs) p(`| ${c.label} | ${lat.map((d) => (has(r, c.id, d) ? fmtNum(cell(r, c.id, d).value.median, d.digits) : 'n/a')).join(' | ')} |`);
    p();
  }
  const ceiling = ceilingNote(r);
  if (ceiling !== undefined) {
    p('## Which load generator set the ceiling');
    p();
    p(ceiling);
    p();
  }
  p('## How to run');
  p();
  p('```sh');
  p('cd native-bench && npm install            # autocannon; the TypeScript compiler comes from the repo root');
  p('npm run bench                              # full: every contender, 3 rounds of 10 s runs');
  p('npm run bench -- --quick                   # about 3 minutes: 1 s runs, the quick contender set');
  p('KT_BIN="node /path/to/dist/src/cli/main.js" npm run bench -- --contenders direct,kt-l4,docker-proxy');
  p('npm run report -- results/latest.json      # regenerate these docs from a results file');
  p('```');
  p();
  p(`This page was generated from \`${commandLine(r)}\` (${r.startedAt} to ${r.finishedAt}). The raw results are in \`native-bench/${opts.resultsFile}\` (not committed).`);
  p();
  p('## Machine');
  p();
  const m = r.machine;
  p('| | |');
  p('|---|---|');
  p(`| CPU | ${m.cpuModel}, ${m.cores} cores |`);
  p(`| memory | ${m.memoryGiB} GiB |`);
  p(`| kernel | Linux ${m.kernel} |`);
  p(`| Node | ${m.node} |`);
  for (const [k, v] of Object.entries(m.tools)) p(`| ${k} | ${mdEscape(v)} |`);
  p(`| kind-tunnel | commit ${m.kindTunnelCommit} |`);
  p(`| load average | ${m.loadAvgStart.join(' ')} at the start, ${m.loadAvgEnd.join(' ')} at the end |`);
  p();
  p('## Method');
  p();
  p(`- **Interleaved rounds.** ${r.method.rounds} rounds. Each round starts fresh processes for every contender, then runs each workload against every contender in a shuffled order (A B C, then C A B, ...), so a ratio taken within a round compares runs made seconds apart. Seed ${r.method.seed}; the orders were: ${r.method.order.map((o, i) => `round ${i + 1}: ${o.join(', ')}`).join('; ')}.`);
  p(`- **Figures.** Median over rounds with [min–max]. Ratios are computed per round and their median is shown.`);
  p(placementLine(r));
  p(`- **Backends** on 127.0.0.1: nginx with one worker returning a 100-byte body (keep-alive unlimited), a fresh \`iperf3 -s -B 127.0.0.1\` per contender and round (one test at a time: a test left hanging behind one proxy cannot fail the next), and a Node echo server for idle connections. Every proxy and backend gets \`RLIMIT_NOFILE\` ${r.method.nofile}.`);
  p(`- **Runs.** ${r.method.durationS} s per throughput run (${r.method.bulkOmitS > 0 ? `iperf3 also omits the first ${r.method.bulkOmitS} s` : 'no iperf3 warm-up omitted'}), ${r.method.wrkConnections} connections for wrk and autocannon, ${r.method.ttfbSamples} sequential TTFB samples, ${r.method.idleConns} idle connections, warm pool size ${r.method.poolSize}.`);
  p('- **RSS per idle connection**: the proxy\'s VmRSS from `/proc/PID/status`, summed over its process tree, after every connection has sent one 42-byte message and received its echo, minus the same before the first connection, divided by the connections. PSS (`/proc/PID/smaps_rollup`) is shown too; it differs only for socat, whose forked children share pages. The kernel\'s socket memory is not included.');
  p('- **CPU per GB**: utime + stime of the proxy\'s process tree (children included, reaped ones through cutime/cstime) from `/proc/PID/stat` across the one-stream iperf3 run, divided by the bytes iperf3 sent, warm-up included. "proxy CPU, bulk" is the same CPU time over the wall time.');
  p(`- ${CPU_WRK_METHOD}`);
  const tls = tlsMethodLine(r);
  if (tls !== undefined) p(`- ${tls}`);
  p('- **TTFB**: one connection at a time: connect, send `GET /`, and time until the first response byte, in µs, measured by a Node client (its own overhead is in every row alike).');
  p();
  p('| contender | started as | notes |');
  p('|---|---|---|');
  for (const c of r.contenders) {
    const notes = [...c.notes, ...(c.skipped !== undefined ? [`**skipped**: ${c.skipped}`] : [])];
    p(`| ${c.label} (\`${c.id}\`) | \`${mdEscape(c.command)}\` | ${mdEscape(notes.join('; '))} |`);
  }
  p();
  p('| workload | load generator |');
  p('|---|---|');
  for (const w of r.workloads) p(`| ${WORKLOAD_TITLES[w.id]} | \`${mdEscape(w.command)}\` |`);
  p();
  const failed = new Map<string, number>();
  for (const s of r.samples) {
    if (s.error === undefined) continue;
    const label = r.contenders.find((c) => c.id === s.contender)?.label ?? s.contender;
    const k = `${label}, ${WORKLOAD_TITLES[s.workload]}: ${s.error}`;
    failed.set(k, (failed.get(k) ?? 0) + 1);
  }
  const caveats = new Map<string, number>();
  for (const s of r.samples) {
    if (s.note === undefined) continue;
    const label = r.contenders.find((c) => c.id === s.contender)?.label ?? s.contender;
    const k = `${label}, ${WORKLOAD_TITLES[s.workload]}: ${s.note}`;
    caveats.set(k, (caveats.get(k) ?? 0) + 1);
  }
  if (failed.size > 0 || caveats.size > 0 || r.notes.length > 0) {
    p('## Failures and gaps');
    p();
    for (const n of r.notes) p(`- ${n}`);
    for (const [k, n] of failed) p(`- ${mdEscape(k)} (${n} of ${r.method.rounds} rounds)`);
    for (const [k, n] of caveats) p(`- ${mdEscape(k)} (${n} of ${r.method.rounds} rounds; counted)`);
    p();
  }
  p('## What was tried');
  p();
  p(TRIED_START);
  p(opts.tried);
  p(TRIED_END);
  p();
  return L.join('\n');
}

const CPU_WRK_METHOD =
  '**Proxy CPU, keep-alive / new conns / new TLS conns**: the same utime + stime of the proxy\'s process tree across the wrk run (keep-alive, `Connection: close`, and `Connection: close` over TLS), over the run\'s wall time, in % of one core: above 100 the proxy used more than one core. At equal req/s it separates a proxy that is short of CPU from one that waits on wakeups. No figure for direct (no proxy).';

// ---- the shared-placement section ---------------------------------------------

/** Columns of the shared section: the headline figures, keep-alive p99 (target 2 of issue #8) and proxy CPU. */
function sharedColumns(r: Results): MetricDef[] {
  return METRICS.filter(
    (d) => r.workloads.some((w) => w.id === d.workload) && (d.headline || (d.workload === 'wrk' && d.metric === 'p99') || ((d.workload === 'wrk' || d.workload === 'connclose' || d.workload === 'tlsclose') && d.metric === 'cpuPct')),
  );
}

export function renderSharedSection(r: Results, resultsFile: string): string {
  const cs = activeContenders(r);
  const cols = sharedColumns(r);
  const m = r.machine;
  const L: string[] = [];
  const p = (s = ''): void => void L.push(s);
  p(SHARED_START);
  p('## Shared CPUs (nothing pinned)');
  p();
  p(`<!-- Generated by \`npm run bench -- --placement shared\` (native-bench/src/report.ts) from ${resultsFile}; the main run keeps this section as it is, and this run changes nothing else on the page. -->`);
  p();
  p(`The tables above pin the load generator to CPU 0 and each proxy to CPU 1. Here nothing is pinned: the load generator, the backends and the proxy share the ${m.cores} cores, the placement in which /work/shared/perf-anchors.md set issue #8's targets. Same contenders, same configs, same workloads; ${r.method.rounds} interleaved rounds of ${r.method.durationS} s runs, median [min–max] over rounds.${r.mode !== 'full' ? ` A \`${r.mode}\` run on a shared machine: read the ratios within a round rather than the absolute figures.` : ''}`);
  p();
  p('```sh');
  p(commandLine(r));
  p('```');
  p();
  p(`- machine: ${m.cpuModel}, ${m.cores} cores, Linux ${m.kernel}, Node ${m.node}; kind-tunnel commit ${m.kindTunnelCommit}; load ${m.loadAvgStart.join(' ')} at the start, ${m.loadAvgEnd.join(' ')} at the end; ${r.startedAt} to ${r.finishedAt}`);
  p();
  p(`| contender | ${cols.map((d) => `${d.title} (${d.unit})`).join(' | ')} |`);
  p(`|---|${cols.map(() => '---').join('|')}|`);
  for (const c of cs) p(`| ${c.label} | ${cols.map((d) => (has(r, c.id, d) ? fmtRange(cell(r, c.id, d).value, d.digits) : 'n/a')).join(' | ')} |`);
  p();
  p('**× direct / × docker-proxy**, per round, median over rounds (above 1 is better for throughput, below 1 for latency and CPU):');
  p();
  p(`| contender | ${cols.map((d) => d.title).join(' | ')} |`);
  p(`|---|${cols.map(() => '---').join('|')}|`);
  for (const c of cs) {
    p(`| ${c.label} | ${cols.map((d) => { const x = cell(r, c.id, d); return x.value.n === 0 ? 'n/a' : `${fmtRatio(x.vsDirect)} / ${fmtRatio(x.vsDocker)}`; }).join(' | ')} |`);
  }
  p();
  const cost = routingCostLines(r);
  if (cost.length > 0) {
    p('**routing cost (issue #3)**, kt-routed ÷ kt-l4 per round, median [min–max]:');
    p();
    for (const l of cost) p(l);
    p();
  }
  p(placementLine(r));
  if (cols.some((d) => d.metric === 'cpuPct')) p(`- ${CPU_WRK_METHOD}`);
  const tls = tlsMethodLine(r);
  if (tls !== undefined) p(`- ${tls}`);
  p(`- Seed ${r.method.seed}; the orders were: ${r.method.order.map((o, i) => `round ${i + 1}: ${o.join(', ')}`).join('; ')}. Backends and contender commands as in the Method section above; load generators: ${r.workloads.map((w) => `\`${mdEscape(w.command)}\``).join(', ')}.`);
  for (const n of r.notes) p(`- ${n}`);
  for (const c of r.contenders) if (c.skipped !== undefined) p(`- ${c.label}: **skipped**: ${mdEscape(c.skipped)}`);
  const failed = new Map<string, number>();
  for (const s of r.samples) {
    if (s.error === undefined) continue;
    const k = `${r.contenders.find((c) => c.id === s.contender)?.label ?? s.contender}, ${WORKLOAD_TITLES[s.workload]}: ${s.error}`;
    failed.set(k, (failed.get(k) ?? 0) + 1);
  }
  for (const [k, n] of failed) p(`- failed: ${mdEscape(k)} (${n} of ${r.method.rounds} rounds)`);
  p(SHARED_END);
  return L.join('\n');
}

/** The text from `<!-- NAME:start -->` to `<!-- NAME:end -->`, or undefined. */
function between(existing: string | undefined, name: string): string | undefined {
  if (existing === undefined) return undefined;
  const a = existing.indexOf(`<!-- ${name}:start -->`);
  const b = existing.indexOf(`<!-- ${name}:end -->`);
  if (a < 0 || b < a) return undefined;
  return existing.slice(a, b + `<!-- ${name}:end -->`.length);
}

/** The UDP section (`npm run bench:udp`, src/udp.ts), kept by a main run like the shared one. */
export function extractUdpSection(existing: string | undefined): string | undefined {
  return between(existing, 'udp');
}

/** UDP through the relay (`npm run bench:udp-relay`, src/udp-relay.ts), kept likewise. */
export function extractUdpRelaySection(existing: string | undefined): string | undefined {
  return between(existing, 'udp-relay');
}

/** The section from an existing benchmarks.md, or undefined. */
export function extractSharedSection(existing: string | undefined): string | undefined {
  if (existing === undefined) return undefined;
  const a = existing.indexOf(SHARED_START);
  const b = existing.indexOf(SHARED_END);
  if (a < 0 || b < a) return undefined;
  return existing.slice(a, b + SHARED_END.length);
}

/**
 * The page with the section put in: in place of the old one, else before the
 * slow-path section, else at the end. Everything else stays byte for byte.
 * (Slices, not String.replace: a `$` in the section would be a replacement pattern.)
 */
export function placeSharedSection(existing: string | undefined, section: string): string {
  if (existing === undefined) return `# Benchmarks\n\n${section}\n`;
  const old = extractSharedSection(existing);
  if (old !== undefined) {
    const a = existing.indexOf(old);
    return existing.slice(0, a) + section + existing.slice(a + old.length);
  }
  const slow = existing.indexOf(SLOW_START);
  if (slow >= 0) return `${existing.slice(0, slow)}${section}\n\n${existing.slice(slow)}`;
  return `${existing.replace(/\n*$/, '')}\n\n${section}\n`;
}

// ---- SVG -----------------------------------------------------------------------

const COLORS: Record<string, string> = {
  direct: '#9e9e9e',
  'kt-l4': '#1565c0',
  'kt-routed': '#42a5f5',
  'kt-pool': '#0d47a1',
  'kt-jsaccept': '#64b5f6',
  'kt-js': '#90caf9',
  'docker-proxy': '#e53935',
  'docker-mapping': '#ef9a9a',
  socat: '#8d6e63',
  haproxy: '#43a047',
  'nginx-stream': '#8e24aa',
  'naive-pipe': '#fb8c00',
};

export function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const CLIP = 3;
/** A white outline behind value labels keeps them legible where they cross the dashed line. */
const HALO = 'stroke="#fff" stroke-width="3" paint-order="stroke"';

interface Bar {
  label: string;
  color: string;
  ratio: number | undefined;
  text: string;
}

export function renderSvg(r: Results): string {
  const cs = activeContenders(r);
  const defs = headline().filter((d) => r.workloads.some((w) => w.id === d.workload));
  const panelW = 500;
  const labelW = 150;
  const barMax = 180;
  const rowH = 17;
  const headH = 40;
  const cols = 2;
  const panelH = headH + cs.length * rowH + 14;
  const top = 58;
  const width = cols * panelW + 20;
  const height = top + Math.ceil(defs.length / cols) * panelH + 10;
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`);
  o.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  const title = `kind-tunnel vs. the native proxies${r.mode !== 'full' ? ` (provisional ${r.mode} run)` : ''}`;
  o.push(`<text x="10" y="20" font-size="15" font-weight="bold">${xmlEscape(title)}</text>`);
  o.push(
    `<text x="10" y="38" fill="#444">${xmlEscape(`Bars: ratio to docker-proxy in the same round (dashed line = 1; » = clipped at ${CLIP}×), median of ${r.method.rounds} rounds; labels: the measured median and that ratio. ${r.machine.cores} cores, ${r.machine.cpuModel}.`)}</text>`,
  );
  defs.forEach((d, i) => {
    const x0 = 10 + (i % cols) * panelW;
    const y0 = top + Math.floor(i / cols) * panelH;
    const refId = cs.some((c) => c.id === 'docker-proxy') && cell(r, 'docker-proxy', d).value.n > 0 ? 'docker-proxy' : cell(r, 'direct', d).value.n > 0 ? 'direct' : undefined;
    const bars: Bar[] = cs.map((c) => {
      const x = cell(r, c.id, d);
      const ratioS = refId === 'docker-proxy' ? x.vsDocker : refId === 'direct' ? x.vsDirect : undefined;
      const ratio = ratioS !== undefined && ratioS.n > 0 ? ratioS.median : undefined;
      const noData = x.value.n === 0;
      const why = c.id === 'direct' && (d.workload === 'idle' || d.metric.startsWith('cpu')) ? 'no proxy' : x.errors.length > 0 ? 'failed' : 'not measured';
      return {
        label: c.label,
        color: COLORS[c.id] ?? '#607d8b',
        ratio: noData ? undefined : ratio,
        text: noData ? why : `${fmtNum(x.value.median, d.digits)} ${d.unit}${ratio !== undefined ? `  (${ratio.toFixed(2)}×)` : ''}`,
      };
    });
    // Clip at CLIP× so that direct (often 3-6× any proxy) does not squeeze the rest; the label keeps the true ratio.
    const maxRatio = Math.min(CLIP, Math.max(1, ...bars.map((b) => b.ratio ?? 0)));
    const scale = barMax / maxRatio;
    o.push(`<g transform="translate(${x0},${y0})">`);
    o.push(`<text x="0" y="16" font-size="13" font-weight="bold">${xmlEscape(d.title)}</text>`);
    o.push(`<text x="0" y="31" fill="#555">${xmlEscape(`${d.unit}, ${d.better} is better${refId === 'direct' ? '; ratio to direct (no docker-proxy figure)' : refId === undefined ? '; no reference' : ''}`)}</text>`);
    if (refId !== undefined) {
      // drawn first, so bars and labels sit on top of it
      const xr = (labelW + scale).toFixed(1);
      o.push(`<line x1="${xr}" y1="${headH - 2}" x2="${xr}" y2="${headH + cs.length * rowH}" stroke="#333" stroke-dasharray="3,3"/>`);
    }
    bars.forEach((b, j) => {
      const y = headH + j * rowH;
      o.push(`<text x="${labelW - 6}" y="${y + 12}" text-anchor="end">${xmlEscape(b.label)}</text>`);
      if (b.ratio !== undefined) {
        const clipped = b.ratio > maxRatio;
        const w = Math.max(1, Math.min(b.ratio, maxRatio) * scale);
        o.push(`<rect x="${labelW}" y="${y + 2}" width="${w.toFixed(1)}" height="${rowH - 5}" fill="${b.color}"/>`);
        if (clipped) o.push(`<text x="${(labelW + w - 3).toFixed(1)}" y="${y + 12}" fill="#fff" text-anchor="end" font-weight="bold">»</text>`);
        o.push(`<text x="${(labelW + w + 4).toFixed(1)}" y="${y + 12}" fill="#222" ${HALO}>${xmlEscape(b.text)}</text>`);
      } else {
        o.push(`<text x="${labelW + 4}" y="${y + 12}" fill="#999">${xmlEscape(b.text)}</text>`);
      }
    });
    o.push('</g>');
  });
  o.push('</svg>');
  return `${o.join('\n')}\n`;
}

/**
 * A pinned (main) run: write benchmarks.md, keeping its "What was tried", shared and
 * slow-path sections, and benchmarks.svg. A shared run: put its section into
 * benchmarks.md and touch nothing else (not the SVG either, which charts the main run).
 */
export function writeDocs(r: Results, docsDir: string, resultsPath: string): string[] {
  mkdirSync(docsDir, { recursive: true });
  const mdPath = join(docsDir, 'benchmarks.md');
  const svgPath = join(docsDir, 'benchmarks.svg');
  const existing = existsSync(mdPath) ? readFileSync(mdPath, 'utf8') : undefined;
  const resultsFile = `results/${basename(resultsPath)}`;
  if (placementOf(r) === 'shared') {
    writeFileSync(mdPath, placeSharedSection(existing, renderSharedSection(r, resultsFile)));
    return [mdPath];
  }
  // the shared, --slowpath, --udp and --relay sections come from their own runs: keep them, in that order
  const kept = [extractSharedSection(existing), extractSlowSection(existing), extractUdpSection(existing), extractUdpRelaySection(existing), extractRelaySection(existing)].filter((x): x is string => x !== undefined);
  const md = renderMarkdown(r, { resultsFile, tried: extractTried(existing) });
  writeFileSync(mdPath, `${[md.replace(/\n*$/, ''), ...kept].join('\n\n')}\n`);
  writeFileSync(svgPath, renderSvg(r));
  return [mdPath, svgPath];
}
