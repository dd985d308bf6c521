// The contenders: how each is started on 127.0.0.1, pinned to the proxy CPU (pinned placement),
// in front of one backend, and which processes to charge for CPU and memory.
// Commands follow /work/shared/perf-anchors.md "How to reproduce".
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BackendKind, ContenderInfo, Family, WorkloadId } from './defs.js';
import type { DockerMapping } from './backends.js';
import { installPackedPackage, type InstalledPackage } from './installed.js';
import { freePort, pinPids, processTree, start, stop, waitForOutput, waitForPort, type Proc } from './proc.js';

export interface Ctx {
  tmp: string;
  /** Compiled helper scripts (naive-pipe.js, ...). */
  buildDir: string;
  /** taskset CPU list for proxies, or undefined to leave them unpinned. */
  proxyCpu: string | undefined;
  nofile: number;
  backends: Record<BackendKind, number>;
  /** argv of kind-tunnel (KT_BIN, split on spaces), before `proxy`. */
  ktArgv: string[];
  /** Extra args for every kind-tunnel contender (KT_ARGS). */
  ktExtraArgs: string[];
  poolSize: number;
  /** Host name the HTTP load carries and the routed contender routes on. */
  routeHost: string;
  /** SNI name the TLS load sends (the URL's host in wrk); routed too when it differs from routeHost. */
  tlsHost: string;
  docker: DockerMapping | undefined;
}

export interface Instance {
  port: number;
  /** Processes charged for CPU and memory; empty for direct. */
  pids(): number[];
  stop(): Promise<void>;
}

export interface Contender {
  info: ContenderInfo;
  /** Workloads it cannot run, with the reason (shown in the notes). */
  unsupported: Partial<Record<WorkloadId, string>>;
  start(kind: BackendKind, ctx: Ctx): Promise<Instance>;
}

const READY_MS = 30_000;

/** Start a proxy process and wait until it accepts (or prints `listening`). */
async function startProxy(
  name: string,
  argv: string[],
  port: number,
  ctx: Ctx,
  opts: { readyLine?: boolean; fd3DevNull?: boolean; cwd?: string } = {},
): Promise<Instance> {
  const p: Proc = start(name, argv[0]!, argv.slice(1), {
    nofile: ctx.nofile,
    fd3DevNull: opts.fd3DevNull,
    cwd: opts.cwd,
  });
  try {
    if (opts.readyLine === true) await waitForOutput(p, new RegExp(`^listening 127\\.0\\.0\\.1:${port}$`, 'm'), READY_MS);
    else await waitForPort(port, READY_MS, p);
    await pinPids(processTree(p.pid), ctx.proxyCpu);
  } catch (err) {
    await stop(p);
    throw err;
  }
  // Shutdown is not measured: a second for a graceful exit, then SIGKILL (kind-tunnel would drain for up to 10 s).
  return { port, pids: () => (p.hasExited ? [] : processTree(p.pid)), stop: () => stop(p, 1000) };
}

function info(id: string, label: string, family: Family, command: string, notes: string[] = []): ContenderInfo {
  return { id, label, family, command, notes };
}

const direct: Contender = {
  info: info('direct', 'direct (no proxy)', 'direct', 'the client connects to the backend itself'),
  unsupported: {},
  start: async (kind, ctx) => ({ port: ctx.backends[kind], pids: () => [], stop: async () => undefined }),
};

function ktContender(
  id: string,
  label: string,
  notes: string[],
  extra: (kind: BackendKind, ctx: Ctx) => string[],
  commandExtra: string,
  /** The --backend (default route) port; the backend of the workload unless given. */
  defaultBackend: (kind: BackendKind, ctx: Ctx) => number = (kind, ctx) => ctx.backends[kind],
): Contender {
  return {
    info: info(id, label, 'kind-tunnel', `$KT_BIN proxy --listen 127.0.0.1:P --backend 127.0.0.1:Q${commandExtra} $KT_ARGS`, notes),
    unsupported: {},
    start: async (kind, ctx) => {
      const port = await freePort();
      const argv = [
        ...ctx.ktArgv,
        'proxy',
        '--listen',
        `127.0.0.1:${port}`,
        '--backend',
        `127.0.0.1:${defaultBackend(kind, ctx)}`,
        ...extra(kind, ctx),
        ...ctx.ktExtraArgs,
      ];
      return startProxy(id, argv, port, ctx, { readyLine: true });
    },
  };
}

const ktL4 = ktContender(
  'kt-l4',
  'kind-tunnel L4',
  ['no route on the listener: no peek, straight splice; `--native auto` (the default) uses the native splice addon when it is built'],
  () => [],
  '',
);

const ktRouted = ktContender(
  'kt-routed',
  'kind-tunnel routed',
  [
    'a `--route bench.localhost=...` on the listener, so every connection is peeked before it is spliced',
    'HTTP workloads and the idle workload send `Host: bench.localhost` and are routed by Host',
    'new TLS connections (tlsclose) are routed by SNI: `--route bench.localhost=127.0.0.1:Q` and, where bench.localhost does not resolve and wrk sends `localhost`, `--route localhost=127.0.0.1:Q` too, Q being the TLS port; its `--backend` is then the plain HTTP port, so a connection routed by default fails its handshake and shows up as a wrk connect error instead of passing unnoticed',
    'iperf3 (bulk) sends no HTTP: its first bytes fall to the default route (`--backend`) once the peek gives up on them',
    'for bulk the named route points at nginx, not at iperf3: the build measured holds idle pre-connected sockets to a route\'s backend, and iperf3 -s, which serves one test at a time, takes such a socket as a test\'s control connection and stalls',
  ],
  (kind, ctx) => {
    // see the last note: the route's idle upstream sockets must not land on iperf3 -s
    const routed = kind === 'bulk' ? ctx.backends.http : ctx.backends[kind];
    const names = kind === 'https' && ctx.tlsHost !== ctx.routeHost ? [ctx.routeHost, ctx.tlsHost] : [ctx.routeHost];
    return names.flatMap((n) => ['--route', `${n}=127.0.0.1:${routed}`]);
  },
  ' --route bench.localhost=127.0.0.1:Q',
  // TLS: only SNI may reach the TLS port; the default route is plain HTTP, where a TLS
  // ClientHello gets a 400 and no ServerHello, so a mis-route is an error, not a pass
  (kind, ctx) => (kind === 'https' ? ctx.backends.http : ctx.backends[kind]),
);

const ktPool = ktContender(
  'kt-pool',
  'kind-tunnel warm pool',
  [
    'L4 with `--pool-size N` (N in the method): pre-connected upstream sockets, each used once',
    'bulk runs without the pool: iperf3 -s serves one test at a time and would take an idle pooled connection as a test\'s control connection',
  ],
  (kind, ctx) => (kind === 'bulk' ? [] : ['--pool-size', String(ctx.poolSize)]),
  ' --pool-size N',
);

const ktJsAccept = ktContender(
  'kt-jsaccept',
  'kind-tunnel L4, JS accept',
  ['L4 with `--native-accept off`: JS accepts and connects, the native addon splices; the same per-connection path a routed listener takes, minus the peek, so kt-routed against this one is the cost of routing'],
  () => ['--native-accept', 'off'],
  ' --native-accept off',
);

const ktJs = ktContender(
  'kt-js',
  'kind-tunnel L4, pure JS',
  ['L4 with `--native off`: the pure-JS data plane, the fallback where the native splice addon is not built (macOS, Windows, no compiler)'],
  () => ['--native', 'off'],
  ' --native off',
);

let installedBin: InstalledPackage | undefined;

/** What `npm install -g kind-tunnel-*.tgz` gives a user, once per run, under the run's tmp (installed.ts). */
function installedKindTunnel(ctx: Ctx): InstalledPackage {
  installedBin ??= installPackedPackage(ctx.tmp);
  return installedBin;
}

const ktInstalled: Contender = {
  info: info('installed', 'kind-tunnel L4, npm-installed', 'kind-tunnel', 'npm pack; npm install -g --prefix PREFIX kind-tunnel-*.tgz; PATH=PREFIX/bin:<node only> kind-tunnel proxy --listen 127.0.0.1:P --backend 127.0.0.1:Q $KT_ARGS', [
    'kt-l4 as a user gets it: the packed tarball installed into an empty prefix, run with no C compiler on PATH, so the native path comes from the tarball\'s prebuild (or KT_INSTALLED=path/to/kind-tunnel)',
  ]),
  unsupported: {},
  start: async (kind, ctx) => {
    const inst = installedKindTunnel(ctx);
    const port = await freePort();
    const argv = ['env', `PATH=${inst.path}`, inst.bin, 'proxy', '--listen', `127.0.0.1:${port}`, '--backend', `127.0.0.1:${ctx.backends[kind]}`, ...ctx.ktExtraArgs];
    return startProxy('installed', argv, port, ctx, { readyLine: true });
  },
};

const dockerProxy: Contender = {
  info: info(
    'docker-proxy',
    'docker-proxy',
    'rival',
    'docker-proxy -proto tcp -host-ip 127.0.0.1 -host-port P -container-ip 127.0.0.1 -container-port Q 3>/dev/null',
    [
      'standalone, the userland proxy behind every `docker run -p 127.0.0.1:...`; fd 3 must stay open or it closes its listener',
      'it holds 6 file descriptors per connection (two sockets, two splice pipes), so it runs out first under the same RLIMIT_NOFILE',
    ],
  ),
  unsupported: {},
  start: async (kind, ctx) => {
    const port = await freePort();
    const argv = [
      '/usr/sbin/docker-proxy',
      '-proto', 'tcp',
      '-host-ip', '127.0.0.1',
      '-host-port', String(port),
      '-container-ip', '127.0.0.1',
      '-container-port', String(ctx.backends[kind]),
    ];
    return startProxy('docker-proxy', argv, port, ctx, { fd3DevNull: true });
  },
};

const dockerMapping: Contender = {
  info: info(
    'docker-mapping',
    'Docker port mapping',
    'rival',
    'docker run -p 127.0.0.1::80 -p 127.0.0.1::5201 kind-tunnel-bench:<hash> (nginx and iperf3 -s inside)',
    [
      'a real container: dockerd\'s own docker-proxy on 127.0.0.1, then the bridge into the container; the backends run inside it (same nginx config, same iperf3)',
      'its docker-proxy is started by dockerd; the pinned placement pins it to the proxy CPU after the container starts; the container itself is never pinned',
    ],
  ),
  unsupported: {
    idle: 'no echo server in the container; the proxy is the same docker-proxy binary as the standalone row',
    tlsclose: 'the container serves no TLS; the proxy is the same docker-proxy binary as the standalone row',
  },
  start: async (kind, ctx) => {
    const d = ctx.docker;
    const port = d?.ports[kind];
    if (d === undefined || port === undefined) throw new Error('the container is not running');
    return { port, pids: () => d.proxyPids(port), stop: async () => undefined };
  },
};

const socat: Contender = {
  info: info('socat', 'socat', 'rival', 'socat TCP-LISTEN:P,bind=127.0.0.1,fork,reuseaddr,backlog=4096 TCP:127.0.0.1:Q', [
    'forks one process per connection: its CPU and memory are summed over the whole process tree',
    'its RSS counts the pages every child shares once per child; the PSS column (shared pages split among sharers) is the fairer memory figure',
  ]),
  unsupported: {},
  start: async (kind, ctx) => {
    const port = await freePort();
    const argv = ['socat', `TCP-LISTEN:${port},bind=127.0.0.1,fork,reuseaddr,backlog=4096`, `TCP:127.0.0.1:${ctx.backends[kind]}`];
    return startProxy('socat', argv, port, ctx);
  },
};

const haproxy: Contender = {
  info: info('haproxy', 'HAProxy 2.6 splice-auto', 'rival', 'haproxy -db -f haproxy.cfg (mode tcp, nbthread 1, maxconn 7000, option splice-auto)', [
    'one thread, `option splice-auto`: bulk moves through splice(2) and never reaches user space',
  ]),
  unsupported: {},
  start: async (kind, ctx) => {
    const port = await freePort();
    const dir = join(ctx.tmp, `haproxy-${port}`);
    mkdirSync(dir, { recursive: true });
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(
      cfg,
      `global
  nbthread 1
  maxconn 7000
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  option splice-auto
listen bench
  bind 127.0.0.1:${port}
  server backend 127.0.0.1:${ctx.backends[kind]}
`,
    );
    return startProxy('haproxy', ['haproxy', '-db', '-f', cfg], port, ctx);
  },
};

const nginxStream: Contender = {
  info: info('nginx-stream', 'nginx stream', 'rival', 'nginx: load_module ngx_stream_module.so; stream { server { listen 127.0.0.1:P; proxy_pass 127.0.0.1:Q; } }', [
    'one worker (`master_process off`: a single process)',
  ]),
  unsupported: {},
  start: async (kind, ctx) => {
    const port = await freePort();
    const dir = join(ctx.tmp, `nginx-stream-${port}`);
    mkdirSync(dir, { recursive: true });
    const conf = join(dir, 'nginx.conf');
    writeFileSync(
      conf,
      `load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log crit;
worker_rlimit_nofile ${ctx.nofile};
events { worker_connections 16384; }
stream {
  server {
    listen 127.0.0.1:${port} backlog=4096;
    proxy_pass 127.0.0.1:${ctx.backends[kind]};
  }
}
`,
    );
    return startProxy('nginx stream', ['nginx', '-p', dir, '-c', conf], port, ctx);
  },
};

const naivePipe: Contender = {
  info: info('naive-pipe', 'Node a.pipe(b).pipe(a)', 'reference', 'node native-bench/build/src/naive-pipe.js P Q', [
    'the reference from issue #2: what a first Node proxy looks like, with no tuning',
  ]),
  unsupported: {},
  start: async (kind, ctx) => {
    const port = await freePort();
    const argv = [process.execPath, join(ctx.buildDir, 'naive-pipe.js'), String(port), String(ctx.backends[kind])];
    return startProxy('naive-pipe', argv, port, ctx, { readyLine: true });
  },
};

export const ALL_CONTENDERS: readonly Contender[] = [
  direct,
  ktL4,
  ktRouted,
  ktPool,
  ktJsAccept,
  ktJs,
  ktInstalled,
  dockerProxy,
  dockerMapping,
  socat,
  haproxy,
  nginxStream,
  naivePipe,
];

/** The quick set: the product, its references, and the strongest rivals. */
export const QUICK_CONTENDERS: readonly string[] = ['direct', 'kt-l4', 'kt-jsaccept', 'kt-routed', 'kt-pool', 'docker-proxy', 'haproxy', 'naive-pipe'];
