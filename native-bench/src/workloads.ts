// The workloads. Each runs its load generator pinned to the load CPU against one
// contender instance and returns plain numbers. Every run is bounded in time.
import { join } from 'node:path';
import type { BackendKind, WorkloadId, WorkloadInfo } from './defs.js';
import type { Instance } from './contenders.js';
import { parseAutocannon, parseIperf, parseTtfb, parseWrk, type Metrics } from './parse.js';
import { cpuSeconds, pssKiB, rssKiB, run, sleep, start, stop, tail, waitForOutput } from './proc.js';

export interface LoadSettings {
  durationS: number;
  bulkOmitS: number;
  wrkConnections: number;
  idleConns: number;
  ttfbSamples: number;
  loadCpu: string | undefined;
  routeHost: string;
  /** The TLS workload's URL host, hence its SNI name (wrk sends the URL's host as SNI). */
  tlsHost: string;
  wrkScript: string;
  buildDir: string;
  /** Path to autocannon's CLI, or undefined when it is not installed. */
  autocannonBin: string | undefined;
}

export interface Workload {
  id: WorkloadId;
  backend: BackendKind;
  info(s: LoadSettings): WorkloadInfo;
  run(target: Instance, s: LoadSettings): Promise<Metrics>;
}

const MARGIN_MS = 20_000;

function iperfArgs(port: number, s: LoadSettings, parallel: number): string[] {
  const args = ['-c', '127.0.0.1', '-p', String(port), '-t', String(s.durationS), '-O', String(s.bulkOmitS), '--connect-timeout', '3000', '-J'];
  if (parallel > 1) args.push('-P', String(parallel));
  return args;
}

/** One retry after a pause: on a loaded machine an iperf3 control connection now and then resets. */
async function iperf(target: Instance, s: LoadSettings, parallel: number, measureCpu: boolean): Promise<Metrics> {
  try {
    return await iperfOnce(target, s, parallel, measureCpu);
  } catch (err) {
    await sleep(1000);
    try {
      return await iperfOnce(target, s, parallel, measureCpu);
    } catch {
      throw err;
    }
  }
}

async function iperfOnce(target: Instance, s: LoadSettings, parallel: number, measureCpu: boolean): Promise<Metrics> {
  const pids = measureCpu ? target.pids() : [];
  const cpu0 = cpuSeconds(pids);
  const t0 = process.hrtime.bigint();
  const r = await run('iperf3', 'iperf3', iperfArgs(target.port, s, parallel), {
    cpu: s.loadCpu,
    timeoutMs: (s.durationS + s.bulkOmitS) * 1000 + 10_000,
  });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  // read the CPU before anything else: the contender's children may exit soon
  const cpu = measureCpu ? cpuSeconds(target.pids().length > 0 ? target.pids() : pids) - cpu0 : Number.NaN;
  if (r.timedOut) throw new Error('iperf3 timed out');
  let m: Metrics;
  try {
    m = parseIperf(r.stdout);
  } catch (err) {
    throw new Error(`${(err as Error).message}${r.stderr ? `; ${tail(r.stderr, 200)}` : ''}`);
  }
  if (measureCpu && pids.length > 0) {
    // bytes include the omitted warm-up, which the CPU reading also covers
    m['cpuSecPerGB'] = cpu / ((m['bytesTotal'] ?? 0) / 1e9);
    m['cpuPct'] = (100 * cpu) / wall;
  }
  return m;
}

export function wrkArgs(port: number | 'P', s: Pick<LoadSettings, 'wrkConnections' | 'durationS' | 'wrkScript' | 'routeHost' | 'tlsHost'>, close: boolean, tls: boolean): string[] {
  const args = ['-t1', `-c${s.wrkConnections}`, `-d${s.durationS}s`, '--latency', '-s', s.wrkScript];
  // Over TLS the Host header is encrypted: the routed contender routes on the SNI, which
  // wrk takes from the URL's host, so the URL names it (it must resolve to 127.0.0.1).
  if (!tls) args.push('-H', `Host: ${s.routeHost}`);
  if (close) args.push('-H', 'Connection: close');
  args.push(tls ? `https://${s.tlsHost}:${port}/` : `http://127.0.0.1:${port}/`);
  return args;
}

async function wrk(target: Instance, s: LoadSettings, close: boolean, tls = false): Promise<Metrics> {
  const args = wrkArgs(target.port, s, close, tls);
  // The proxy's CPU over the run, as for bulk: two passes over /proc, none during the run.
  // At equal req/s it tells a proxy that saturates its core from one that waits on wakeups.
  const pids = target.pids();
  const cpu0 = cpuSeconds(pids);
  const t0 = process.hrtime.bigint();
  const r = await run('wrk', 'wrk', args, { cpu: s.loadCpu, timeoutMs: s.durationS * 1000 + MARGIN_MS });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const after = target.pids();
  const cpu = cpuSeconds(after.length > 0 ? after : pids) - cpu0;
  if (r.timedOut) throw new Error('wrk timed out');
  const m = parseWrk(r.stdout);
  if ((m['errors'] ?? 0) > (m['requests'] ?? 0) / 100) throw new Error(`wrk: ${m['errors']} errors in ${m['requests']} requests`);
  if (pids.length > 0) m['cpuPct'] = (100 * cpu) / wall;
  return m;
}

/**
 * tlsclose errors: a failed handshake is a wrk connect error, and a clean TLS close leaves
 * read errors at 0. For the routed contender either one means a connection went to the
 * plain-HTTP default route, i.e. SNI routing failed: its run does not count. Elsewhere the
 * count is recorded as a caveat.
 */
export function tlsErrors(contender: string, m: Record<string, number>): { error?: string; note?: string } {
  const connect = m['connectErrors'] ?? 0;
  const read = m['readErrors'] ?? 0;
  if (connect + read === 0) return {};
  const what = `wrk: ${connect} connect and ${read} read errors in ${m['requests'] ?? 0} requests`;
  if (contender === 'kt-routed') return { error: `${what}: TLS connections missed their SNI route (the default route is plain HTTP)` };
  return { note: `${what} (failed TLS handshakes)` };
}

export const WORKLOADS: readonly Workload[] = [
  {
    id: 'idle',
    backend: 'echo',
    info: (s) => ({
      id: 'idle',
      label: `RSS per idle connection at ${s.idleConns} connections`,
      backend: 'echo',
      command: `node native-bench/build/src/idle-client.js P ${s.idleConns} 200 (each sends a 42-byte request head and waits for its echo)`,
    }),
    run: async (target, s) => {
      const pids0 = target.pids();
      if (pids0.length === 0) return {};
      const rss0 = rssKiB(pids0);
      const pss0 = pssKiB(pids0);
      const client = start('idle client', process.execPath, [join(s.buildDir, 'idle-client.js'), String(target.port), String(s.idleConns), '200', '120000'], {
        cpu: s.loadCpu,
        stdinPipe: true,
      });
      try {
        const m = await waitForOutput(client, /^ready (\d+) (\d+)$/m, 90_000);
        const opened = Number(m[1]);
        const failed = Number(m[2]);
        // A proxy that runs out of file descriptors (docker-proxy holds 6 per connection) still
        // gets a figure, per connection it did open; the harness notes the shortfall.
        if (opened === 0) throw new Error(`no connection opened (${failed} failed)`);
        await sleep(500); // let the proxy's allocations settle
        const pids = target.pids();
        const rss = rssKiB(pids);
        const pss = pssKiB(pids);
        return {
          rssPerConnKiB: (rss - rss0) / opened,
          pssPerConnKiB: (pss - pss0) / opened,
          rssBaseKiB: rss0,
          connections: opened,
          failedConnections: failed,
          processes: pids.length,
        };
      } finally {
        client.child.stdin?.end();
        await stop(client, 5000);
      }
    },
  },
  {
    id: 'bulk1',
    backend: 'bulk',
    info: (s) => ({ id: 'bulk1', label: 'iperf3, one stream', backend: 'bulk', command: `iperf3 ${iperfArgs(0, s, 1).join(' ').replace('-p 0', '-p P')}` }),
    run: (target, s) => iperf(target, s, 1, true),
  },
  {
    id: 'bulk4',
    backend: 'bulk',
    info: (s) => ({ id: 'bulk4', label: 'iperf3, four streams', backend: 'bulk', command: `iperf3 ${iperfArgs(0, s, 4).join(' ').replace('-p 0', '-p P')}` }),
    run: (target, s) => iperf(target, s, 4, false),
  },
  {
    id: 'wrk',
    backend: 'http',
    info: (s) => ({
      id: 'wrk',
      label: 'HTTP keep-alive, wrk',
      backend: 'http',
      command: `wrk -t1 -c${s.wrkConnections} -d${s.durationS}s --latency -s percentiles.lua -H 'Host: ${s.routeHost}' http://127.0.0.1:P/`,
    }),
    run: (target, s) => wrk(target, s, false),
  },
  {
    id: 'autocannon',
    backend: 'http',
    info: (s) => ({
      id: 'autocannon',
      label: 'HTTP keep-alive, autocannon',
      backend: 'http',
      command: `autocannon -c ${s.wrkConnections} -d ${s.durationS} -j -H 'host=${s.routeHost}' http://127.0.0.1:P/`,
    }),
    run: async (target, s) => {
      if (s.autocannonBin === undefined) throw new Error('autocannon is not installed (npm ci in the repository root)');
      const args = [s.autocannonBin, '-c', String(s.wrkConnections), '-d', String(s.durationS), '-j', '-H', `host=${s.routeHost}`, `http://127.0.0.1:${target.port}/`];
      const r = await run('autocannon', process.execPath, args, { cpu: s.loadCpu, timeoutMs: s.durationS * 1000 + MARGIN_MS });
      if (r.timedOut) throw new Error('autocannon timed out');
      const m = parseAutocannon(r.stdout);
      if ((m['errors'] ?? 0) > (m['requests'] ?? 0) / 100) throw new Error(`autocannon: ${m['errors']} errors in ${m['requests']} requests`);
      return m;
    },
  },
  {
    id: 'connclose',
    backend: 'http',
    info: (s) => ({
      id: 'connclose',
      label: 'new connections per second',
      backend: 'http',
      command: `wrk -t1 -c${s.wrkConnections} -d${s.durationS}s --latency -s percentiles.lua -H 'Host: ${s.routeHost}' -H 'Connection: close' http://127.0.0.1:P/`,
    }),
    run: (target, s) => wrk(target, s, true),
  },
  {
    id: 'tlsclose',
    backend: 'https',
    info: (s) => ({
      id: 'tlsclose',
      label: 'new TLS connections per second, SNI set',
      backend: 'https',
      command: `wrk ${wrkArgs('P', { ...s, wrkScript: 'percentiles.lua' }, true, true).join(' ').replace('Connection: close', "'Connection: close'")}`,
    }),
    run: (target, s) => wrk(target, s, true, true),
  },
  {
    id: 'ttfb',
    backend: 'http',
    info: (s) => ({
      id: 'ttfb',
      label: 'time to first byte',
      backend: 'http',
      command: `node native-bench/build/src/ttfb-client.js P ${s.ttfbSamples} ${s.routeHost} (one connection at a time: connect, GET, first response byte)`,
    }),
    run: async (target, s) => {
      const limitMs = Math.max(5000, s.ttfbSamples * 20);
      const r = await run('ttfb client', process.execPath, [join(s.buildDir, 'ttfb-client.js'), String(target.port), String(s.ttfbSamples), s.routeHost, String(limitMs)], {
        cpu: s.loadCpu,
        timeoutMs: limitMs + MARGIN_MS,
      });
      if (r.timedOut) throw new Error('ttfb client timed out');
      return parseTtfb(r.stdout);
    },
  },
];
