#!/usr/bin/env node
// `npm test`'s pretest: make the machine ready for the whole suite, or stop
// before anything runs and say the one command that would.
//
// - Every Debian package a test needs is a row of PACKAGES below, with the
//   probe that tells it is there (a command on PATH or a file). A package
//   counts as present when its probe succeeds, whoever installed it (so a
//   docker-ce engine is not replaced by docker.io). A row may name several
//   commands (`cmd: [...]`); all of them must be there. docker.io's row needs
//   the engine (dockerd) as well as the client, unless an engine already
//   answers (a client alone, as some images ship, cannot start one).
// - As root, or with passwordless sudo, the missing ones are installed with
//   apt-get (never removing anything: --no-remove), and dockerd is started
//   when no engine answers.
// - Otherwise it prints the `apt-get install ...` line and exits 1.
//
// Simulation, for its own tests and for trying the fresh-machine path here:
//   KT_SETUP_PRETEND_MISSING=busybox-static,socat  treat these as missing
//   KT_SETUP_DRY_RUN=1                              print the plan, change nothing
//   KT_SETUP_PRIVILEGE=none|root|sudo               override the privilege probe
//   KT_SETUP_SKIP=1                                 skip the whole step
//   KT_SKIP_DOCKER=1                                do not require an engine (the Docker tests skip)
//
// - Then the npm dependencies: when node_modules is missing, or does not hold
//   what package-lock.json names (a fresh clone, or a pull that changed the
//   lock), it runs `npm ci` (which also builds, through `prepare`). This comes
//   after the Debian packages because the build needs gcc.

import { spawn, spawnSync } from 'node:child_process'
import { accessSync, constants, existsSync, openSync, readFileSync } from 'node:fs'
import { delimiter, dirname, join } from 'node:path'
import { pathToFileURL } from 'node:url'

/**
 * What the tests need from Debian. Append a row for a new tool:
 *   pkg      the Debian package (`name:arch` for a foreign architecture; the
 *            architecture is added with dpkg --add-architecture first)
 *   alt      other packages that provide the same probe, tried in order
 *   cmd      a command that must be on PATH (or in /usr/sbin, /sbin), or a
 *            list of them (all must be there), or
 *   file     a file that must exist
 *   for      what the tests use it for (printed, and listed in docs/testing.md)
 */
export const PACKAGES = [
  { pkg: 'docker.io', cmd: ['docker', 'dockerd'], for: 'the real Docker engine: relay mode, discovery, sidecar, docker-proxy' },
  { pkg: 'iptables', cmd: 'iptables', for: 'black-holed and lossy paths in test network namespaces' },
  { pkg: 'iproute2', cmd: 'ip', for: 'network namespaces, loopback aliases, tc netem, ss' },
  { pkg: 'socat', cmd: 'socat', for: 'a native contender in native-bench' },
  { pkg: 'haproxy', cmd: 'haproxy', for: 'a real PROXY-protocol peer and a native-bench contender' },
  { pkg: 'nginx', cmd: 'nginx', for: 'a real PROXY-protocol peer and a native-bench contender' },
  { pkg: 'libnginx-mod-stream', file: '/usr/lib/nginx/modules/ngx_stream_module.so', for: "nginx's stream (TCP) module" },
  { pkg: 'openssl', cmd: 'openssl', for: 'real TLS clients and test certificates' },
  { pkg: 'curl', cmd: 'curl', for: 'a real HTTP/TLS client against the CLI' },
  { pkg: 'busybox-static', file: '/bin/busybox', for: 'the kind-like test cluster nodes (a local image via docker import)' },
  { pkg: 'wrk', cmd: 'wrk', for: 'HTTP load in native-bench' },
  { pkg: 'iperf3', cmd: 'iperf3', for: 'bulk throughput in native-bench; a one-session-at-a-time server' },
  { pkg: 'procps', cmd: 'ps', for: 'ps/pkill/prlimit-style process checks' },
  { pkg: 'kubectl', alt: ['kubernetes-client'], cmd: 'kubectl', for: 'the real kubectl against the test API server' },
  { pkg: 'gcc', cmd: 'gcc', for: 'compiling the native addon (and its sanitizer builds)' },
  { pkg: 'gcc-aarch64-linux-gnu', cmd: 'aarch64-linux-gnu-gcc', for: 'cross-compiling the linux-arm64 prebuild' },
  { pkg: 'libc6-dev-arm64-cross', file: '/usr/aarch64-linux-gnu/include/stdio.h', for: "the arm64 prebuild's C library headers" },
  { pkg: 'qemu-user', cmd: 'qemu-aarch64', for: 'running the arm64 prebuild under an arm64 Node (test/ship/arm64-qemu)' },
  { pkg: 'dnsmasq-base', cmd: 'dnsmasq', for: 'a real DNS server for the UDP tests' },
  { pkg: 'dnsutils', alt: ['bind9-dnsutils'], cmd: 'dig', for: 'a real DNS client for the UDP tests' },
]

/** Where test/ship/arm64-node.sh unpacks Debian's arm64 Node (downloaded, never installed: it would replace this machine's node). */
export const ARM64_NODE_ROOT = '/var/cache/kind-tunnel/arm64-node'

const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin']

/** Whether `cmd` is an executable on `path` (plus the sbin directories, which a non-root PATH may lack). */
export function onPath (cmd, path = process.env.PATH ?? '') {
  for (const dir of [...path.split(delimiter).filter((d) => d !== ''), ...SBIN]) {
    try { accessSync(join(dir, cmd), constants.X_OK); return true } catch {}
  }
  return false
}

/** The rows whose probe fails (or that KT_SETUP_PRETEND_MISSING names). */
export function missingPackages (env = process.env, rows = PACKAGES, probes = { onPath, exists: existsSync }) {
  const pretend = new Set((env.KT_SETUP_PRETEND_MISSING ?? '').split(',').map((s) => s.trim()).filter((s) => s !== ''))
  return rows.filter((r) => {
    if (pretend.has(r.pkg)) return true
    if (r.cmd !== undefined) return ![r.cmd].flat().every((c) => probes.onPath(c, env.PATH ?? ''))
    if (r.file !== undefined) return !probes.exists(r.file)
    return false
  })
}

function pretended (env, pkg) {
  return (env.KT_SETUP_PRETEND_MISSING ?? '').split(',').map((s) => s.trim()).includes(pkg)
}

/** How we can become root: 'root', 'sudo' (passwordless), or 'none'. */
export function privilege (env = process.env) {
  const forced = env.KT_SETUP_PRIVILEGE
  if (forced === 'root' || forced === 'sudo' || forced === 'none') return forced
  if (process.getuid?.() === 0) return 'root'
  if (onPath('sudo', env.PATH) && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore', timeout: 10_000 }).status === 0) return 'sudo'
  return 'none'
}

/** The one line a user runs to install `rows` (first choice of each). */
export function installLine (rows, sudo = true) {
  const archs = [...new Set(rows.map((r) => r.pkg.split(':')[1]).filter((a) => a !== undefined))]
  const pre = archs.map((a) => `${sudo ? 'sudo ' : ''}dpkg --add-architecture ${a} && `).join('') + (archs.length > 0 ? `${sudo ? 'sudo ' : ''}apt-get update && ` : '')
  return `${pre}${sudo ? 'sudo ' : ''}apt-get install -y --no-install-recommends ${rows.map((r) => r.pkg).join(' ')}`
}

/**
 * What to do, without doing it: { missing, engine, privilege, actions, message }.
 * `engineUp` says whether a Docker engine answers; `canApt` whether apt-get exists.
 */
export function plan ({ missing, engineUp, priv, canApt, env = process.env }) {
  const needEngine = env.KT_SKIP_DOCKER !== '1' && !engineUp
  const actions = []
  if (missing.length === 0 && !needEngine) return { ok: true, actions, message: '' }
  const canRoot = priv === 'root' || priv === 'sudo'
  if (missing.length > 0) {
    if (!canApt) {
      return { ok: false, actions, message: `kind-tunnel's tests need these tools, and this machine has no apt-get:\n${missing.map((r) => `  ${r.cmd !== undefined ? [r.cmd].flat().join(', ') : r.file}  (Debian: ${r.pkg}; ${r.for})`).join('\n')}\nInstall them, then run npm test again.` }
    }
    if (!canRoot) {
      return { ok: false, actions, message: `kind-tunnel's tests need Debian packages that are missing:\n${missing.map((r) => `  ${r.pkg}: ${r.for}`).join('\n')}\nRun this once, then npm test again:\n\n  ${installLine(missing)}\n` }
    }
    actions.push({ do: 'install', rows: missing })
  }
  if (needEngine) {
    if (!canRoot) {
      return { ok: false, actions: [], message: 'No Docker engine answers (docker info failed). Start one, e.g.:\n\n  sudo systemctl start docker    (or: sudo dockerd &)\n\nthen npm test again (KT_SKIP_DOCKER=1 skips the Docker tests instead).' }
    }
    actions.push({ do: 'start-dockerd' })
  }
  return { ok: true, actions, message: '' }
}

function engineAnswers () {
  if (!onPath('docker')) return false
  return spawnSync('docker', ['info', '--format', '{{.ServerVersion}}'], { stdio: 'ignore', timeout: 15_000 }).status === 0
}

function run (priv, argv) {
  const [cmd, args] = priv === 'sudo' ? ['sudo', ['-n', '--preserve-env=DEBIAN_FRONTEND', ...argv]] : [argv[0], argv.slice(1)]
  console.error(`test-setup: ${[cmd, ...args].join(' ')}`)
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: 15 * 60_000 })
  return r.status === 0
}

function install (priv, rows) {
  const archs = [...new Set(rows.map((r) => r.pkg.split(':')[1]).filter((a) => a !== undefined))]
  for (const a of archs) if (!run(priv, ['dpkg', '--add-architecture', a])) return false
  if (!run(priv, ['apt-get', 'update', '-qq'])) return false
  // One install for the first choices; a row whose first choice fails falls back to its alternatives.
  const base = ['apt-get', 'install', '-y', '-qq', '--no-install-recommends', '--no-remove']
  if (run(priv, [...base, ...rows.map((r) => r.pkg)])) return true
  let ok = true
  for (const r of rows) {
    if ([r.pkg, ...(r.alt ?? [])].some((p) => run(priv, [...base, p]))) continue
    console.error(`test-setup: could not install ${r.pkg} (${r.for})`)
    ok = false
  }
  return ok
}

async function startDockerd (priv) {
  const log = '/tmp/kind-tunnel-dockerd.log'
  console.error(`test-setup: no Docker engine answers; starting dockerd (log: ${log})`)
  const fd = openSync(log, 'a')
  const [cmd, args] = priv === 'sudo' ? ['sudo', ['-n', 'dockerd']] : ['dockerd', []]
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd] })
  let failed = null
  child.once('error', (err) => { failed = err })
  child.unref()
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    if (engineAnswers()) return true
    if (child.exitCode !== null) break
    await new Promise((resolve) => setTimeout(resolve, 500))
    if (failed !== null) {
      console.error(`test-setup: could not start ${cmd}: ${failed.code ?? failed.message}. Install Debian's engine, then npm test again:\n\n  ${installLine(PACKAGES.filter((r) => r.pkg === 'docker.io'))}\n`)
      return false
    }
  }
  console.error(`test-setup: dockerd did not answer within 60 s; see ${log}`)
  return false
}

export async function main (env = process.env) {
  if (env.KT_SETUP_SKIP === '1') return 0
  if (process.platform !== 'linux') {
    console.error('test-setup: not Linux; the suite needs Linux (network namespaces, splice). Nothing installed.')
    return 0
  }
  const answers = env.KT_SKIP_DOCKER === '1' || engineAnswers()
  // An engine that already answers (docker-ce, a remote DOCKER_HOST) needs no dockerd here.
  const missing = missingPackages(env).filter((r) => !(answers && r.pkg === 'docker.io' && !pretended(env, r.pkg)))
  const engineUp = answers && !missing.some((r) => r.pkg === 'docker.io')
  const needs = missing.length > 0 || !engineUp
  const priv = needs ? privilege(env) : 'none'
  const p = plan({ missing, engineUp, priv, canApt: onPath('apt-get', env.PATH), env })
  if (!p.ok) { console.error(p.message); return 1 }
  if (env.KT_SETUP_DRY_RUN === '1') {
    for (const a of p.actions) console.error(`test-setup (dry run): ${a.do}${a.rows !== undefined ? ` ${a.rows.map((r) => r.pkg).join(' ')}` : ''}`)
    const why = env.KT_SETUP_SKIP_NPM === '1' ? null : staleModules()
    if (why !== null) console.error(`test-setup (dry run): npm ci (${why})`)
    return 0
  }
  for (const a of p.actions) {
    if (a.do === 'install' && !install(priv, a.rows)) { console.error(`test-setup: apt-get failed. Try by hand:\n\n  ${installLine(a.rows)}\n`); return 1 }
    if (a.do === 'start-dockerd' && !(await startDockerd(priv))) return 1
  }
  return npmDeps(env) || arm64Node(env)
}

const ROOT = join(dirname(new URL(import.meta.url).pathname), '..')

/**
 * Why `root`'s node_modules does not match its package-lock.json, or null when
 * it does: every package the lock names (except optional ones, which npm skips
 * on other platforms) must be installed at the lock's version, as npm's own
 * record of the install (node_modules/.package-lock.json) says.
 */
export function staleModules (root = ROOT) {
  let lock
  try { lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')).packages ?? {} } catch { return null }
  let have
  try { have = JSON.parse(readFileSync(join(root, 'node_modules', '.package-lock.json'), 'utf8')).packages ?? {} } catch { return 'node_modules is not installed' }
  for (const [key, want] of Object.entries(lock)) {
    if (!key.startsWith('node_modules/') || want.optional === true) continue
    const got = have[key]
    if (got === undefined) return `${key.slice('node_modules/'.length)} is not installed`
    if (want.version !== undefined && got.version !== want.version) return `${key.slice('node_modules/'.length)} is ${got.version}, the lock names ${want.version}`
  }
  return null
}

/** Runs `npm ci` in the checkout when its node_modules is stale (see staleModules). */
function npmDeps (env) {
  if (env.KT_SETUP_SKIP_NPM === '1') return 0
  const why = staleModules()
  if (why === null) return 0
  console.error(`test-setup: ${why}; npm ci`)
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'], timeout: 15 * 60_000 })
  if (r.status !== 0) { console.error(`test-setup: npm ci failed (exit ${r.status ?? r.signal}). Try by hand, in ${ROOT}:\n\n  npm ci\n`); return 1 }
  return 0
}

/** The arm64 Node for the qemu test: unpacked once from Debian's packages (apt-get download), never installed. */
function arm64Node (env) {
  if (existsSync(join(ARM64_NODE_ROOT, 'usr', 'bin', 'node'))) return 0
  const script = join(import.meta.dirname, '..', 'test', 'ship', 'arm64-node.sh')
  const priv = privilege(env)
  if (priv === 'none') {
    console.error(`kind-tunnel's arm64 prebuild test needs Debian's arm64 Node unpacked. Run this once, then npm test again:\n\n  sudo dpkg --add-architecture arm64 && sudo apt-get update && sudo sh ${script}\n`)
    return 1
  }
  const archs = spawnSync('dpkg', ['--print-foreign-architectures'], { encoding: 'utf8' }).stdout ?? ''
  if (!archs.split('\n').includes('arm64')) {
    if (!run(priv, ['dpkg', '--add-architecture', 'arm64']) || !run(priv, ['apt-get', 'update', '-qq'])) return 1
  }
  if (!run(priv, ['sh', script, ARM64_NODE_ROOT])) { console.error('test-setup: could not unpack the arm64 Node (test/ship/arm64-node.sh)'); return 1 }
  return 0
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.exitCode = await main()
}
