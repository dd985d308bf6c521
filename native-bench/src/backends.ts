// Backends every contender forwards to, started once per run on 127.0.0.1:
// nginx (one worker, 100-byte body) for HTTP, iperf3 -s for bulk (one per
// contender instance), a Node echo server for idle connections. Plus the container that the "real Docker port
// mapping" contender publishes: the same nginx and iperf3, copied into an image
// built locally with `docker import` (no registry is reachable).
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { BackendKind } from './defs.js';
import { findProcesses, freePort, nofileLimit, offCleanup, onCleanup, sleep, start, stop, waitForOutput, waitForPort, type Proc } from './proc.js';

const execFileP = promisify(execFile);

/** The 100-byte response body (perf-anchors.md: nginx, one worker, 100-byte body). */
export const BODY = 'x'.repeat(99) + '\n';

/** The backend's certificate: ECDSA P-256 keeps the handshake cheap for both ends. */
export const CERT_SUBJECT = '/CN=bench.localhost';
export const CERT_SAN = 'subjectAltName=DNS:bench.localhost,DNS:localhost';
export const CERT_COMMAND = `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj ${CERT_SUBJECT} -addext ${CERT_SAN}`;
export const TLS_PROTOCOLS = 'TLSv1.2 TLSv1.3';

/** A fresh self-signed certificate for this run, in its tmp dir. */
export async function makeCertificate(dir: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  await execFileP(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', CERT_SUBJECT, '-addext', CERT_SAN, '-keyout', key, '-out', cert],
    { timeout: 15_000 },
  );
  return { cert, key };
}

export interface NginxTls {
  listen: string;
  cert: string;
  key: string;
}

export function nginxHttpConf(opts: { listen: string; prefix: string; pidFile: string; errorLog: string; nofile: number; tls?: NginxTls }): string {
  // The TLS server: no session tickets and no session cache, so no connection can resume
  // (RFC 8446 2.2, RFC 5077): every one is a full handshake whose ClientHello carries the SNI
  // the routed contender routes on. Same body, same keep-alive as the plain server.
  const tls =
    opts.tls === undefined
      ? ''
      : `
  server {
    listen ${opts.tls.listen} ssl backlog=4096;
    ssl_certificate ${opts.tls.cert};
    ssl_certificate_key ${opts.tls.key};
    ssl_protocols ${TLS_PROTOCOLS};
    ssl_session_tickets off;
    ssl_session_cache off;
    location / { return 200 "${BODY.slice(0, -1)}\\n"; }
  }`;
  // master_process off: one process, which is the one worker; nothing to chase.
  return `daemon off;
master_process off;
worker_processes 1;
pid ${opts.pidFile};
error_log ${opts.errorLog} crit;
worker_rlimit_nofile ${opts.nofile};
events { worker_connections 16384; }
http {
  access_log off;
  default_type text/plain;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path ${opts.prefix}/client_body;
  proxy_temp_path ${opts.prefix}/proxy;
  fastcgi_temp_path ${opts.prefix}/fastcgi;
  uwsgi_temp_path ${opts.prefix}/uwsgi;
  scgi_temp_path ${opts.prefix}/scgi;
  server {
    listen ${opts.listen} backlog=4096;
    location / { return 200 "${BODY.slice(0, -1)}\\n"; }
  }${tls}
}
`;
}

export interface HostBackends {
  /** nginx (http, https) and echo are shared; every bulk instance gets its own iperf3 server (startIperfServer). */
  ports: { http: number; https: number; echo: number };
  procs: Proc[];
}

/**
 * One `iperf3 -s` per contender instance: iperf3 serves one test at a time, and a
 * test left hanging behind one proxy must not fail the next contender's run.
 * --rcv-timeout frees a server whose client vanished mid-test; --forceflush makes
 * its "Server listening" line the readiness signal (probing the port would count
 * as a failed test).
 */
export async function startIperfServer(): Promise<{ port: number; proc: Proc }> {
  const port = await freePort();
  const proc = start('iperf3 server', 'iperf3', ['-s', '-B', '127.0.0.1', '-p', String(port), '--forceflush', '--rcv-timeout', '5000'], {
    nofile: nofileLimit(),
  });
  try {
    await waitForOutput(proc, /Server listening on/, 5000);
  } catch (err) {
    await stop(proc);
    throw err;
  }
  return { port, proc };
}

export async function startHostBackends(tmp: string, buildDir: string): Promise<HostBackends> {
  const procs: Proc[] = [];
  try {
    const http = await freePort();
    const https = await freePort();
    const dir = join(tmp, 'nginx-backend');
    mkdirSync(dir, { recursive: true });
    const { cert, key } = await makeCertificate(dir);
    const conf = join(dir, 'nginx.conf');
    writeFileSync(
      conf,
      nginxHttpConf({
        listen: `127.0.0.1:${http}`,
        prefix: dir,
        pidFile: join(dir, 'nginx.pid'),
        errorLog: join(dir, 'error.log'),
        nofile: nofileLimit(),
        tls: { listen: `127.0.0.1:${https}`, cert, key },
      }),
    );
    const ng = start('nginx backend', 'nginx', ['-p', dir, '-c', conf], { nofile: nofileLimit() });
    procs.push(ng);
    await waitForPort(http, 5000, ng);
    await waitForPort(https, 5000, ng);

    const echo = await freePort();
    const ec = start('echo backend', process.execPath, [join(buildDir, 'echo-server.js'), String(echo)], { nofile: nofileLimit() });
    procs.push(ec);
    await waitForOutput(ec, /^listening /m, 5000);
    return { ports: { http, https, echo }, procs };
  } catch (err) {
    await Promise.all(procs.map((p) => stop(p)));
    throw err;
  }
}

// ---- Docker ------------------------------------------------------------------

async function docker(args: string[], timeoutMs = 30_000): Promise<string> {
  const { stdout } = await execFileP('docker', args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 });
  return stdout.trim();
}

export async function dockerReachable(): Promise<string | null> {
  try {
    const v = await docker(['version', '--format', '{{.Server.Version}}'], 10_000);
    return v.length > 0 ? null : 'dockerd did not report a version';
  } catch (err) {
    return `dockerd not reachable: ${firstLine(err)}`;
  }
}

function firstLine(err: unknown): string {
  const e = err as { stderr?: string; message?: string };
  return (e.stderr?.trim() || e.message || String(err)).split('\n')[0] ?? '';
}

/** Shared objects a dynamically linked binary needs, from ldd. */
async function sharedLibs(binary: string): Promise<string[]> {
  const { stdout } = await execFileP('ldd', [binary], { timeout: 10_000 });
  const libs: string[] = [];
  for (const line of stdout.split('\n')) {
    const m = line.match(/(?:=>\s+)?(\/\S+)\s+\(0x/);
    if (m?.[1] !== undefined) libs.push(m[1]);
  }
  return libs;
}

const CONTAINER_NGINX_CONF = nginxHttpConf({ listen: '__IP__:80', prefix: '/tmp', pidFile: '/tmp/nginx.pid', errorLog: '/tmp/error.log', nofile: 65536 });
// Bind the container's own bridge address, never 0.0.0.0 (Docker writes it to
// /etc/hosts); the host side is published on 127.0.0.1 only.
const START_SH = `#!/bin/sh
IP=$(busybox hostname -i | busybox cut -d' ' -f1)
busybox sed "s/__IP__/$IP/" /etc/bench/nginx.conf.in > /tmp/nginx.conf
iperf3 -s -B "$IP" -p 5201 &
exec nginx -p /tmp -c /tmp/nginx.conf
`;

/**
 * Build (once; reused by content hash) an image with busybox, nginx and iperf3
 * copied from this host with their shared libraries.
 */
export async function buildImage(): Promise<string> {
  const bins = ['/usr/bin/busybox', '/usr/sbin/nginx', '/usr/bin/iperf3'];
  const files = new Set<string>(bins);
  for (const b of bins.slice(1)) for (const l of await sharedLibs(b)) files.add(l);
  const hash = createHash('sha256');
  for (const f of [...files].sort()) {
    const st = statSync(f);
    hash.update(`${f}:${st.size}:${st.mtimeMs}\n`);
  }
  hash.update(CONTAINER_NGINX_CONF).update(START_SH);
  const tag = `kind-tunnel-bench:${hash.digest('hex').slice(0, 12)}`;
  try {
    await docker(['image', 'inspect', tag], 10_000);
    return tag;
  } catch {
    // not built yet
  }
  const root = mkdtempSync('/tmp/kt-bench-rootfs-');
  try {
    for (const f of files) {
      mkdirSync(join(root, dirname(f)), { recursive: true });
      copyFileSync(f, join(root, f)); // follows symlinks: the image gets the real file
    }
    for (const d of ['bin', 'tmp', 'etc/bench']) mkdirSync(join(root, d), { recursive: true });
    copyFileSync('/usr/bin/busybox', join(root, 'bin/sh'));
    writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n');
    writeFileSync(join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
    writeFileSync(join(root, 'etc/bench/nginx.conf.in'), CONTAINER_NGINX_CONF);
    writeFileSync(join(root, 'start.sh'), START_SH, { mode: 0o755 });
    // PATH for start.sh: nginx lives in /usr/sbin, iperf3 in /usr/bin
    await execFileP('sh', ['-c', `tar -C "$1" -c . | docker import -c 'ENV PATH=/usr/sbin:/usr/bin:/bin' - "$2"`, 'sh', root, tag], {
      timeout: 120_000,
    });
    return tag;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

export interface DockerMapping {
  name: string;
  image: string;
  /** Host ports on 127.0.0.1 published for the HTTP and bulk backends. */
  ports: Partial<Record<BackendKind, number>>;
  /** pids of the docker-proxy process serving a published host port. */
  proxyPids(hostPort: number): number[];
  stop(): Promise<void>;
}

export async function startDockerMapping(image: string): Promise<DockerMapping> {
  const name = `kind-tunnel-bench-${process.pid}-${Date.now().toString(36)}`;
  onCleanup(`docker:${name}`, () => {
    // synchronous on purpose: this also runs from process.on('exit')
    try {
      execFileSync('docker', ['rm', '-f', name], { stdio: 'ignore', timeout: 15_000 });
    } catch {
      // already gone
    }
  });
  await docker(
    ['run', '-d', '--rm', '--name', name, '--ulimit', `nofile=${nofileLimit()}:${nofileLimit()}`, '-p', '127.0.0.1::80', '-p', '127.0.0.1::5201', image, '/bin/sh', '/start.sh'],
    60_000,
  );
  const hostPort = async (containerPort: number): Promise<number> => {
    const out = await docker(['port', name, `${containerPort}/tcp`], 10_000);
    const m = out.match(/^127\.0\.0\.1:(\d+)$/m);
    if (!m) throw new Error(`docker port ${name} ${containerPort}: unexpected "${out}"`);
    return Number(m[1]);
  };
  const http = await hostPort(80);
  const bulk = await hostPort(5201);
  // docker-proxy accepts before the container listens: wait for a real HTTP answer.
  await waitForHttp(http, 20_000);
  await sleep(300); // iperf3 -s was started before nginx in start.sh
  return {
    name,
    image,
    ports: { http, bulk },
    proxyPids: (port) => findProcesses(['-host-port', String(port)]),
    stop: async () => {
      offCleanup(`docker:${name}`);
      await docker(['rm', '-f', name], 30_000).catch(() => undefined);
    },
  };
}

async function waitForHttp(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) });
      await r.text();
      if (r.status === 200) return;
    } catch {
      // not yet
    }
    await sleep(100);
  }
  throw new Error(`container behind 127.0.0.1:${port} did not answer HTTP within ${timeoutMs} ms`);
}
