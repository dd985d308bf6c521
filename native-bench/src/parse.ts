// Parsers for the load generators' output. Pure, so they are table-tested.

export type Metrics = Record<string, number>;

/**
 * wrk's summary comes from our Lua `done()` hook (WRK_SCRIPT), one line
 * starting with KTBENCH, because `--latency` prints no 99.9th percentile.
 */
export const WRK_SCRIPT = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('KTBENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
`;

export function parseWrk(stdout: string): Metrics {
  const line = stdout.split('\n').find((l) => l.startsWith('KTBENCH '));
  if (line === undefined) throw new Error('wrk printed no summary');
  const j = JSON.parse(line.slice('KTBENCH '.length)) as Record<string, number>;
  const requests = j['requests'] ?? 0;
  const seconds = (j['duration_us'] ?? 0) / 1e6;
  if (requests <= 0 || seconds <= 0) {
    // over TLS a failed handshake is a connect error: say how many, it is the diagnosis
    const connect = j['connect'] ?? 0;
    throw new Error(`wrk completed no request${connect > 0 ? ` (${connect} connect errors)` : ''}`);
  }
  return {
    rps: requests / seconds,
    p50: (j['p50_us'] ?? Number.NaN) / 1000,
    p99: (j['p99_us'] ?? Number.NaN) / 1000,
    p999: (j['p999_us'] ?? Number.NaN) / 1000,
    // a read error after `Connection: close` is how wrk sees the server's close: not a failure
    errors: (j['connect'] ?? 0) + (j['write'] ?? 0) + (j['status'] ?? 0) + (j['timeout'] ?? 0),
    // kept apart: a failed TLS handshake counts as a connect error, and over TLS a clean
    // close_notify leaves read at 0, so tlsclose can hold both to zero (a mis-route shows)
    connectErrors: j['connect'] ?? 0,
    readErrors: j['read'] ?? 0,
    requests,
  };
}

interface IperfSum {
  bytes?: number;
  bits_per_second?: number;
}
interface IperfJson {
  error?: string;
  intervals?: { sum?: IperfSum & { omitted?: boolean } }[];
  end?: { sum_received?: IperfSum; sum_sent?: IperfSum };
}

/** Receiver rate (Gbit/s) and the bytes moved including the omitted warm-up. */
export function parseIperf(stdout: string): Metrics {
  const j = JSON.parse(stdout) as IperfJson;
  if (typeof j.error === 'string' && j.error.length > 0) throw new Error(`iperf3: ${j.error}`);
  const bps = j.end?.sum_received?.bits_per_second;
  if (typeof bps !== 'number' || bps <= 0) throw new Error('iperf3 reported no received rate');
  let total = 0;
  for (const iv of j.intervals ?? []) total += iv.sum?.bytes ?? 0;
  return {
    gbps: bps / 1e9,
    bytesReceived: j.end?.sum_received?.bytes ?? 0,
    bytesTotal: Math.max(total, j.end?.sum_received?.bytes ?? 0),
  };
}

interface AutocannonJson {
  requests?: { average?: number; total?: number };
  latency?: Record<string, number>;
  errors?: number;
  timeouts?: number;
  non2xx?: number;
  duration?: number;
}

export function parseAutocannon(stdout: string): Metrics {
  const start = stdout.indexOf('{');
  if (start < 0) throw new Error('autocannon printed no JSON');
  const j = JSON.parse(stdout.slice(start)) as AutocannonJson;
  const total = j.requests?.total ?? 0;
  const seconds = j.duration ?? 0;
  if (total <= 0 || seconds <= 0) throw new Error('autocannon completed no request');
  const lat = j.latency ?? {};
  return {
    rps: total / seconds,
    p50: lat['p50'] ?? Number.NaN,
    p99: lat['p99'] ?? Number.NaN,
    p999: lat['p99_9'] ?? Number.NaN,
    errors: (j.errors ?? 0) + (j.timeouts ?? 0) + (j.non2xx ?? 0),
    requests: total,
  };
}

/** The ttfb client's one JSON line (microseconds). */
export function parseTtfb(stdout: string): Metrics {
  const line = stdout.trim().split('\n').at(-1) ?? '';
  const j = JSON.parse(line) as Record<string, number | null>;
  const n = j['samples'] ?? 0;
  if (n === null || n <= 0) throw new Error('ttfb: no successful sample');
  return {
    p50: j['p50'] ?? Number.NaN,
    p90: j['p90'] ?? Number.NaN,
    p99: j['p99'] ?? Number.NaN,
    samples: n,
    errors: j['errors'] ?? 0,
  };
}
