// The shape of a results file, and what each workload and metric means.
// The harness writes results/*.json; report.ts reads them. Keep both in step.

export type Family = 'direct' | 'kind-tunnel' | 'rival' | 'reference';
export type WorkloadId = 'idle' | 'bulk1' | 'bulk4' | 'wrk' | 'autocannon' | 'connclose' | 'tlsclose' | 'ttfb';
/** https: the same nginx serving TLS on its own port (the tlsclose workload, issue #3). */
export type BackendKind = 'http' | 'https' | 'bulk' | 'echo';
/** pinned: load generator on CPU 0, every proxy on CPU 1; shared: nothing pinned (issue #8). */
export type Placement = 'pinned' | 'shared';

export interface ContenderInfo {
  id: string;
  label: string;
  family: Family;
  /** Exactly how it was started, with the ports as P (listen) and Q (upstream). */
  command: string;
  notes: string[];
  /** Set when the contender could not run at all. */
  skipped?: string;
}

export interface WorkloadInfo {
  id: WorkloadId;
  label: string;
  backend: BackendKind;
  /** Exact command of the load generator, ports as P. */
  command: string;
}

export interface Sample {
  round: number;
  contender: string;
  workload: WorkloadId;
  metrics: Record<string, number>;
  error?: string;
  /** The run counted, with a caveat (e.g. connections that failed). */
  note?: string;
}

export interface Machine {
  cpuModel: string;
  cores: number;
  kernel: string;
  node: string;
  memoryGiB: number;
  loadAvgStart: number[];
  loadAvgEnd: number[];
  tools: Record<string, string>;
  kindTunnelCommit: string;
}

export interface Method {
  rounds: number;
  durationS: number;
  bulkOmitS: number;
  idleConns: number;
  ttfbSamples: number;
  wrkConnections: number;
  poolSize: number;
  /** RLIMIT_NOFILE of every proxy and backend. */
  nofile: number;
  /** Absent in results written before the option existed: those were pinned. */
  placement?: Placement;
  pinning: { loadGenerator: string; proxy: string; backend: string };
  seed: number;
  order: string[][];
  /** KT_* variables the run was started with (KT_BIN, KT_ARGS, KT_NATIVE_ADDON, ...). */
  env?: Record<string, string>;
  /** The TLS backend of the tlsclose workload; absent when it did not run. */
  tls?: TlsMethod;
}

export interface TlsMethod {
  /** The SNI name wrk sends (the URL's host): bench.localhost where it resolves, else localhost. */
  serverName: string;
  /** How the backend's certificate was made. */
  certificate: string;
  protocols: string;
  /** Why every connection is a full handshake. */
  resumption: string;
}

export interface Results {
  schema: 1;
  mode: 'quick' | 'full' | 'custom';
  command: string;
  startedAt: string;
  finishedAt: string;
  machine: Machine;
  method: Method;
  contenders: ContenderInfo[];
  workloads: WorkloadInfo[];
  samples: Sample[];
  notes: string[];
}

export interface MetricDef {
  workload: WorkloadId;
  metric: string;
  /** Short column title. */
  title: string;
  unit: string;
  better: 'higher' | 'lower';
  digits: number;
  /** Shown in the summary table and the chart. */
  headline: boolean;
}

export const METRICS: readonly MetricDef[] = [
  { workload: 'bulk1', metric: 'gbps', title: 'iperf3 1 stream', unit: 'Gbit/s', better: 'higher', digits: 2, headline: true },
  { workload: 'bulk4', metric: 'gbps', title: 'iperf3 -P4', unit: 'Gbit/s', better: 'higher', digits: 2, headline: true },
  { workload: 'wrk', metric: 'rps', title: 'wrk keep-alive', unit: 'req/s', better: 'higher', digits: 0, headline: true },
  { workload: 'wrk', metric: 'p50', title: 'wrk p50', unit: 'ms', better: 'lower', digits: 2, headline: false },
  { workload: 'wrk', metric: 'p99', title: 'wrk p99', unit: 'ms', better: 'lower', digits: 2, headline: false },
  { workload: 'wrk', metric: 'p999', title: 'wrk p99.9', unit: 'ms', better: 'lower', digits: 2, headline: false },
  { workload: 'wrk', metric: 'cpuPct', title: 'proxy CPU, keep-alive', unit: '% of a core', better: 'lower', digits: 0, headline: false },
  { workload: 'autocannon', metric: 'rps', title: 'autocannon keep-alive', unit: 'req/s', better: 'higher', digits: 0, headline: true },
  { workload: 'autocannon', metric: 'p50', title: 'autocannon p50', unit: 'ms', better: 'lower', digits: 2, headline: false },
  { workload: 'autocannon', metric: 'p99', title: 'autocannon p99', unit: 'ms', better: 'lower', digits: 2, headline: false },
  { workload: 'autocannon', metric: 'p999', title: 'autocannon p99.9', unit: 'ms', better: 'lower', digits: 2, headline: false },
  { workload: 'connclose', metric: 'rps', title: 'new conn/s', unit: 'conn/s', better: 'higher', digits: 0, headline: true },
  { workload: 'connclose', metric: 'p50', title: 'conn p50', unit: 'ms', better: 'lower', digits: 2, headline: false },
  { workload: 'connclose', metric: 'p99', title: 'conn p99', unit: 'ms', better: 'lower', digits: 2, headline: false },
  { workload: 'connclose', metric: 'p999', title: 'conn p99.9', unit: 'ms', better: 'lower', digits: 2, headline: false },
  { workload: 'connclose', metric: 'cpuPct', title: 'proxy CPU, new conns', unit: '% of a core', better: 'lower', digits: 0, headline: false },
  { workload: 'tlsclose', metric: 'rps', title: 'new TLS conn/s', unit: 'conn/s', better: 'higher', digits: 0, headline: true },
  { workload: 'tlsclose', metric: 'p50', title: 'TLS conn p50', unit: 'ms', better: 'lower', digits: 2, headline: false },
  { workload: 'tlsclose', metric: 'p99', title: 'TLS conn p99', unit: 'ms', better: 'lower', digits: 2, headline: false },
  { workload: 'tlsclose', metric: 'p999', title: 'TLS conn p99.9', unit: 'ms', better: 'lower', digits: 2, headline: false },
  { workload: 'tlsclose', metric: 'cpuPct', title: 'proxy CPU, new TLS conns', unit: '% of a core', better: 'lower', digits: 0, headline: false },
  { workload: 'ttfb', metric: 'p50', title: 'TTFB p50', unit: 'µs', better: 'lower', digits: 0, headline: true },
  { workload: 'ttfb', metric: 'p99', title: 'TTFB p99', unit: 'µs', better: 'lower', digits: 0, headline: false },
  { workload: 'idle', metric: 'rssPerConnKiB', title: 'RSS / idle conn', unit: 'KiB', better: 'lower', digits: 1, headline: true },
  { workload: 'idle', metric: 'pssPerConnKiB', title: 'PSS / idle conn', unit: 'KiB', better: 'lower', digits: 1, headline: false },
  { workload: 'bulk1', metric: 'cpuSecPerGB', title: 'proxy CPU per GB', unit: 'CPU s/GB', better: 'lower', digits: 3, headline: true },
  { workload: 'bulk1', metric: 'cpuPct', title: 'proxy CPU, bulk', unit: '% of a core', better: 'lower', digits: 0, headline: false },
];

export const WORKLOAD_TITLES: Record<WorkloadId, string> = {
  idle: 'Memory per idle connection',
  bulk1: 'Bulk, one stream (iperf3)',
  bulk4: 'Bulk, four streams (iperf3 -P4)',
  wrk: 'HTTP keep-alive (wrk)',
  autocannon: 'HTTP keep-alive (autocannon)',
  connclose: 'New connections (wrk, Connection: close)',
  tlsclose: 'New TLS connections, SNI-routed (wrk, Connection: close)',
  ttfb: 'Time to first byte of a fresh connection',
};

/** Workloads in the order they run within a round: idle first, on fresh processes. */
export const WORKLOAD_ORDER: readonly WorkloadId[] = ['idle', 'bulk1', 'bulk4', 'wrk', 'autocannon', 'connclose', 'tlsclose', 'ttfb'];
