// native-bench: kind-tunnel against a direct connection and the native rivals,
// interleaved round by round on loopback. See `--help` and docs/benchmarks.md.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { lookup } from 'node:dns/promises';
import { buildImage, CERT_COMMAND, dockerReachable, TLS_PROTOCOLS, startDockerMapping, startHostBackends, startIperfServer, type DockerMapping, type HostBackends } from './backends.js';
import { ALL_CONTENDERS, type Contender, type Ctx, type Instance } from './contenders.js';
import type { BackendKind, ContenderInfo, Machine, Results, Sample, TlsMethod, WorkloadId } from './defs.js';
import { parseOptions, UsageError, USAGE, type Options } from './options.js';
import { WRK_SCRIPT } from './parse.js';
import { killAllSync, nofileLimit, pinPids, sleep, stop } from './proc.js';
import { writeDocs } from './report.js';
import { slowMain, SLOW_USAGE } from './slowpath.js';
import { relayMain, RELAY_USAGE } from './relaybench.js';
import { rng, shuffle } from './stats.js';
import { tlsErrors, WORKLOADS, type LoadSettings } from './workloads.js';

const execFileP = promisify(execFile);
const START_CONCURRENCY = 4;
const here = dirname(fileURLToPath(import.meta.url)); // native-bench/build/src
const benchDir = resolve(here, '../..');
const repoDir = resolve(benchDir, '..');
// autocannon: hoisted to the root node_modules by the root `npm ci` (native-bench is a workspace), or local.
const autocannonDir = [join(repoDir, 'node_modules/autocannon'), join(benchDir, 'node_modules/autocannon')].find((d) => existsSync(d)) ?? join(benchDir, 'node_modules/autocannon');

async function firstLineOf(cmd: string, args: string[], re?: RegExp): Promise<string> {
  try {
    const r = await execFileP(cmd, args, { timeout: 10_000 }).catch((e: { stdout?: string; stderr?: string }) => ({ stdout: e.stdout ?? '', stderr: e.stderr ?? '' }));
    const text = `${r.stdout}\n${r.stderr}`;
    const line = text.split('\n').find((l) => (re ? re.test(l) : l.trim().length > 0));
    return line?.trim() ?? 'unknown';
  } catch {
    return 'not installed';
  }
}

async function machineInfo(): Promise<Machine> {
  const autocannonPkg = join(autocannonDir, 'package.json');
  let commit = 'unknown';
  try {
    const head = (await execFileP('git', ['-C', repoDir, 'rev-parse', '--short', 'HEAD'], { timeout: 10_000 })).stdout.trim();
    const dirty = (await execFileP('git', ['-C', repoDir, 'status', '--porcelain', '--', 'src'], { timeout: 10_000 })).stdout.trim();
    commit = dirty.length > 0 ? `${head} with uncommitted changes in src/` : head;
  } catch {
    // not a git checkout
  }
  return {
    cpuModel: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    kernel: release(),
    node: process.version,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    loadAvgStart: loadavg().map((x) => Math.round(x * 100) / 100),
    loadAvgEnd: [],
    tools: {
      wrk: await firstLineOf('wrk', ['-v'], /^wrk /),
      iperf3: await firstLineOf('iperf3', ['--version']),
      haproxy: await firstLineOf('haproxy', ['-v'], /HAProxy version/),
      nginx: await firstLineOf('nginx', ['-v'], /nginx version/),
      socat: await firstLineOf('socat', ['-V'], /socat version/),
      docker: await firstLineOf('docker', ['version', '--format', 'server {{.Server.Version}}'], /server/),
      autocannon: existsSync(autocannonPkg) ? `autocannon ${(JSON.parse(readFileSync(autocannonPkg, 'utf8')) as { version: string }).version}` : 'not installed',
    },
    kindTunnelCommit: commit,
  };
}

/** A contender in front of one backend; bulk instances bring their own iperf3 server. */
async function startInstance(c: Contender, kind: BackendKind, ctx: Ctx): Promise<Instance> {
  if (kind !== 'bulk' || c.info.id === 'docker-mapping') return c.start(kind, ctx);
  const server = await startIperfServer();
  try {
    const inst = await c.start(kind, { ...ctx, backends: { ...ctx.backends, bulk: server.port } });
    return {
      port: inst.port,
      pids: () => inst.pids(),
      stop: async () => {
        await inst.stop();
        await stop(server.proc, 1000);
      },
    };
  } catch (err) {
    await stop(server.proc, 1000);
    throw err;
  }
}

/** Errors go into a table cell: one line, bounded, the alert rather than the banner. */
function oneLine(msg: string): string {
  const lines = msg.split('\n').map((l) => l.trim()).filter(Boolean);
  const alert = lines.find((l) => /ALERT|error|Error|EMFILE|refused|denied/.test(l));
  const text = lines.length <= 1 ? (lines[0] ?? 'failed') : `${lines[0]} ${alert !== undefined && alert !== lines[0] ? `... ${alert}` : ''}`;
  return text.replace(/\s+/g, ' ').trim().slice(0, 300);
}

/**
 * The SNI name of the TLS workload. wrk sends the URL's host as SNI, so the name has to
 * resolve to 127.0.0.1 without touching /etc/hosts: bench.localhost does where the resolver
 * maps *.localhost to loopback (RFC 6761 6.3 allows it, glibc alone does not), else localhost.
 */
async function tlsServerName(): Promise<string> {
  try {
    const a = await lookup('bench.localhost', { family: 4 });
    if (a.address === '127.0.0.1') return 'bench.localhost';
  } catch {
    // does not resolve here
  }
  return 'localhost';
}

function splitArgs(s: string | undefined): string[] {
  return (s ?? '').split(/\s+/).filter(Boolean);
}


function fmtMetrics(w: WorkloadId, m: Record<string, number>): string {
  const f = (x: number | undefined, d = 0): string => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));
  switch (w) {
    case 'idle':
      return m['rssPerConnKiB'] === undefined ? 'no proxy process' : `${f(m['rssPerConnKiB'], 1)} KiB/conn (PSS ${f(m['pssPerConnKiB'], 1)})`;
    case 'bulk1':
    case 'bulk4':
      return `${f(m['gbps'], 2)} Gbit/s${m['cpuSecPerGB'] !== undefined ? `, ${f(m['cpuSecPerGB'], 3)} CPU s/GB, ${f(m['cpuPct'])}% CPU` : ''}`;
    case 'wrk':
    case 'autocannon':
    case 'connclose':
    case 'tlsclose':
      return `${f(m['rps'])} /s  p50 ${f(m['p50'], 2)} ms  p99 ${f(m['p99'], 2)} ms  p99.9 ${f(m['p999'], 2)} ms${m['cpuPct'] !== undefined ? `  proxy ${f(m['cpuPct'])}% CPU` : ''}`;
    case 'ttfb':
      return `p50 ${f(m['p50'])} µs  p99 ${f(m['p99'])} µs`;
  }
}

function tlsMethod(serverName: string): TlsMethod {
  return {
    serverName,
    certificate: `self-signed ECDSA P-256, made at the start of the run: \`${CERT_COMMAND}\``,
    protocols: TLS_PROTOCOLS.replace(' ', ' and '),
    resumption: 'none: `ssl_session_tickets off; ssl_session_cache off;` on the server, and wrk starts every connection with a fresh session, so each is a full handshake with a ClientHello that carries the SNI',
  };
}

async function main(): Promise<number> {
  if (process.argv.includes('--relay')) {
    // issue 12: relay mode against the paths a kind user has, in the real Docker engine (src/relaybench.ts)
    if (process.argv.includes('--help') || process.argv.includes('-h')) {
      process.stdout.write(RELAY_USAGE);
      return 0;
    }
    const watchdog = setTimeout(() => {
      process.stderr.write('native-bench: --relay over its 30 min budget, stopping\n');
      killAllSync();
      process.exit(1);
    }, 30 * 60_000);
    watchdog.unref();
    try {
      return await relayMain(process.argv.slice(2), { repoDir, benchDir, buildDir: here, defaultDocsDir: join(repoDir, 'docs') });
    } finally {
      clearTimeout(watchdog);
    }
  }
  if (process.argv.includes('--slowpath')) {
    // a separate, bounded mode: warm pools over a slow connect path (src/slowpath.ts)
    if (process.argv.includes('--help') || process.argv.includes('-h')) {
      process.stdout.write(SLOW_USAGE);
      return 0;
    }
    const kt = splitArgs(process.env['KT_BIN']);
    if (kt.length === 0) kt.push(process.execPath, join(repoDir, 'dist/src/cli/main.js'));
    // bounded as a whole, like the main mode: every run has its own timeout, this caps the sum
    const watchdog = setTimeout(() => {
      process.stderr.write('native-bench: --slowpath over its 15 min budget, stopping\n');
      killAllSync();
      process.exit(1);
    }, 15 * 60_000);
    watchdog.unref();
    try {
      return await slowMain(process.argv.slice(2), { repoDir, benchDir, buildDir: here, ktArgv: kt, defaultDocsDir: join(repoDir, 'docs') });
    } finally {
      clearTimeout(watchdog);
    }
  }
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  let opts: Options;
  try {
    opts = parseOptions(process.argv.slice(2), join(repoDir, 'docs'));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`native-bench: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  const startedAt = new Date();
  const log = (s: string): void => void process.stdout.write(`${s}\n`);
  const notes: string[] = [];
  const machine = await machineInfo();
  // pinned: the load generator and the proxy each own a core; shared: the placement
  // perf-anchors.md set issue #8's targets in, where the proxy's CPU cost competes with the load's
  const pinned = opts.placement === 'pinned' && machine.cores >= 2;
  const loadCpu = pinned ? '0' : undefined;
  const proxyCpu = pinned ? '1' : undefined;
  if (opts.placement === 'pinned' && !pinned) notes.push('one CPU only: nothing was pinned');

  const ktArgv = splitArgs(process.env['KT_BIN']);
  if (ktArgv.length === 0) ktArgv.push(process.execPath, join(repoDir, 'dist/src/cli/main.js'));
  const ktMissing = ktArgv.length === 2 && ktArgv[0] === process.execPath && !existsSync(ktArgv[1]!) ? `${ktArgv[1]} is not built (npm run build in the repo root, or set KT_BIN)` : undefined;

  const tmp = mkdtempSync('/tmp/kt-bench-');
  const wrkScript = join(tmp, 'percentiles.lua');
  writeFileSync(wrkScript, WRK_SCRIPT);
  const autocannonBin = join(autocannonDir, 'autocannon.js');
  const tlsHost = await tlsServerName();
  const settings: LoadSettings = {
    durationS: opts.durationS,
    bulkOmitS: opts.bulkOmitS,
    wrkConnections: 50,
    idleConns: opts.idleConns,
    ttfbSamples: opts.ttfbSamples,
    loadCpu,
    routeHost: 'bench.localhost',
    tlsHost,
    wrkScript,
    buildDir: here,
    autocannonBin: existsSync(autocannonBin) ? autocannonBin : undefined,
  };
  const workloads = WORKLOADS.filter((w) => opts.workloads.includes(w.id));
  const chosen: Contender[] = ALL_CONTENDERS.filter((c) => opts.contenders.includes(c.info.id));
  const infos = new Map<string, ContenderInfo>(chosen.map((c) => [c.info.id, structuredClone(c.info)]));
  const runnable: Contender[] = [];
  let docker: DockerMapping | undefined;
  let backends: HostBackends | undefined;
  const samples: Sample[] = [];
  const order: string[][] = [];

  // The whole run is bounded: every run has its own timeout, and this caps the sum.
  const perRunS = opts.durationS + 8;
  const budgetS = 300 + opts.rounds * (chosen.length * workloads.length * perRunS + 60);
  const watchdog = setTimeout(() => {
    process.stderr.write(`native-bench: over the ${budgetS} s budget, stopping\n`);
    killAllSync();
    process.exit(1);
  }, budgetS * 1000);
  watchdog.unref();

  log(`native-bench ${opts.mode}: ${opts.rounds} rounds, ${opts.durationS} s per run, seed ${opts.seed}, placement ${opts.placement}${pinned ? ' (load generator CPU 0, proxies CPU 1)' : ' (nothing pinned)'}`);
  log(`machine: ${machine.cpuModel}, ${machine.cores} cores, Linux ${machine.kernel}, Node ${machine.node}, load ${machine.loadAvgStart.join(' ')}`);
  try {
    for (const c of chosen) {
      const i = infos.get(c.info.id)!;
      if (c.info.family === 'kind-tunnel' && ktMissing !== undefined) i.skipped = ktMissing;
      else if (c.info.id === 'docker-proxy' && !existsSync('/usr/sbin/docker-proxy')) i.skipped = '/usr/sbin/docker-proxy is not installed';
      else runnable.push(c);
    }
    if (runnable.some((c) => c.info.id === 'docker-mapping')) {
      const why = await dockerReachable();
      try {
        if (why !== null) throw new Error(why);
        log('docker: building the bench image and starting its container');
        docker = await startDockerMapping(await buildImage());
      } catch (err) {
        infos.get('docker-mapping')!.skipped = (err as Error).message.split('\n')[0] ?? 'docker failed';
        runnable.splice(runnable.findIndex((c) => c.info.id === 'docker-mapping'), 1);
      }
      if (docker !== undefined && docker.proxyPids(docker.ports.http!).length === 0) {
        infos.get('docker-mapping')!.notes.push('no docker-proxy process found: dockerd maps with iptables only (userland-proxy off)');
      }
    }
    for (const c of chosen) {
      const i = infos.get(c.info.id)!;
      if (i.skipped !== undefined) log(`skip ${c.info.id}: ${i.skipped}`);
      for (const w of workloads) {
        const why = c.unsupported[w.id];
        if (why !== undefined) i.notes.push(`${w.id}: not measured: ${why}`);
      }
    }

    backends = await startHostBackends(tmp, here);
    const ctx: Ctx = {
      tmp,
      buildDir: here,
      proxyCpu,
      nofile: nofileLimit(),
      backends: { ...backends.ports, bulk: 0 }, // bulk: set per instance below
      ktArgv,
      ktExtraArgs: splitArgs(process.env['KT_ARGS']),
      poolSize: opts.poolSize,
      routeHost: settings.routeHost,
      tlsHost,
      docker,
    };
    const random = rng(opts.seed);

    for (let round = 1; round <= opts.rounds; round++) {
      const roundStart = Date.now();
      const roundOrder = shuffle(runnable, random);
      order.push(roundOrder.map((c) => c.info.id));
      log(`\nround ${round}/${opts.rounds}: ${order.at(-1)!.join(' ')}`);
      // fresh processes each round, all started before any measurement
      const instances = new Map<string, Instance | Error>();
      const jobs = roundOrder.flatMap((c) => {
        const kinds = new Set<BackendKind>(workloads.filter((w) => c.unsupported[w.id] === undefined).map((w) => w.backend));
        return [...kinds].map((kind) => async (): Promise<void> => {
          try {
            instances.set(`${c.info.id}/${kind}`, await startInstance(c, kind, ctx));
          } catch (err) {
            instances.set(`${c.info.id}/${kind}`, err as Error);
          }
        });
      });
      // a few start-ups at a time: a dozen Node processes at once can take longer than READY_MS on 2 busy cores
      for (let i = 0; i < jobs.length; i += START_CONCURRENCY) await Promise.all(jobs.slice(i, i + START_CONCURRENCY).map((j) => j()));
      if (docker !== undefined && proxyCpu !== undefined) {
        await pinPids([...docker.proxyPids(docker.ports.http!), ...docker.proxyPids(docker.ports.bulk!)], proxyCpu);
      }
      await sleep(1000); // let start-up CPU die down
      try {
        for (const w of workloads) {
          for (const c of roundOrder) {
            if (c.unsupported[w.id] !== undefined) continue;
            const inst = instances.get(`${c.info.id}/${w.backend}`);
            const sample: Sample = { round, contender: c.info.id, workload: w.id, metrics: {} };
            const t0 = Date.now();
            if (inst === undefined || inst instanceof Error) {
              sample.error = `start failed: ${oneLine(inst?.message ?? 'unknown')}`;
            } else {
              try {
                sample.metrics = await w.run(inst, settings);
                const failedConns = sample.metrics['failedConnections'] ?? 0;
                if (failedConns > 0) {
                  sample.note = `${failedConns} of ${settings.idleConns} connections failed (file descriptors: RLIMIT_NOFILE ${nofileLimit()}); the figure is per opened connection`;
                }
                if (w.id === 'tlsclose') Object.assign(sample, tlsErrors(c.info.id, sample.metrics));
              } catch (err) {
                sample.error = oneLine((err as Error).message);
              }
            }
            samples.push(sample);
            log(`  ${((Date.now() - t0) / 1000).toFixed(1).padStart(4)}s ${w.id.padEnd(10)} ${c.info.id.padEnd(15)} ${sample.error !== undefined ? `ERROR ${sample.error}` : fmtMetrics(w.id, sample.metrics)}${sample.note !== undefined ? ` (${sample.note})` : ''}`);
            await sleep(w.id === 'connclose' || w.id === 'tlsclose' ? 300 : 50);
          }
        }
      } finally {
        await Promise.all([...instances.values()].map((i) => (i instanceof Error ? undefined : i.stop())));
      }
      log(`round ${round} took ${((Date.now() - roundStart) / 1000).toFixed(0)} s`);
    }
  } finally {
    await docker?.stop();
    if (backends !== undefined) await Promise.all(backends.procs.map((p) => stop(p)));
    rmSync(tmp, { recursive: true, force: true });
    clearTimeout(watchdog);
  }

  machine.loadAvgEnd = loadavg().map((x) => Math.round(x * 100) / 100);
  const results: Results = {
    schema: 1,
    mode: opts.mode,
    command: `cd native-bench && npm run bench --${process.argv.slice(2).map((a) => ` ${a}`).join('')}`,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    machine,
    method: {
      rounds: opts.rounds,
      durationS: opts.durationS,
      bulkOmitS: opts.bulkOmitS,
      idleConns: opts.idleConns,
      ttfbSamples: opts.ttfbSamples,
      wrkConnections: settings.wrkConnections,
      poolSize: opts.poolSize,
      nofile: nofileLimit(),
      placement: opts.placement,
      pinning: {
        loadGenerator: loadCpu === undefined ? 'unpinned' : `CPU ${loadCpu}`,
        proxy: proxyCpu === undefined ? 'unpinned' : `CPU ${proxyCpu}`,
        backend: 'unpinned',
      },
      seed: opts.seed,
      order,
      env: Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[0].startsWith('KT_') && e[1] !== undefined)),
      ...(workloads.some((w) => w.id === 'tlsclose') ? { tls: tlsMethod(tlsHost) } : {}),
    },
    contenders: [...infos.values()],
    workloads: workloads.map((w) => w.info(settings)),
    samples,
    notes,
  };
  const resultsDir = join(benchDir, 'results');
  mkdirSync(resultsDir, { recursive: true });
  // a shared run has its own names: latest.json stays the main (pinned) run's
  const suffix = opts.placement === 'shared' ? '-shared' : '';
  const out = opts.out ?? join(resultsDir, `${startedAt.toISOString().replace(/[:.]/g, '-')}-${opts.mode}${suffix}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  if (opts.out === undefined) writeFileSync(join(resultsDir, `latest${suffix}.json`), `${JSON.stringify(results, null, 2)}\n`);
  log(`\nresults: ${out}`);
  if (opts.docsDir !== undefined) {
    const written = writeDocs(results, opts.docsDir, out);
    log(`docs: ${written.join(', ')}`);
  }
  const failed = samples.filter((s) => s.error !== undefined).length;
  if (failed > 0) log(`${failed} of ${samples.length} runs failed (see the results file)`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`native-bench: ${(err as Error).message ?? String(err)}\n`);
    killAllSync();
    process.exitCode = 1;
  },
);
