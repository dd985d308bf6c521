// scripts/test-setup.mjs (npm test's pretest): which packages count as
// missing, what it plans for each privilege, and the one apt-get line it
// prints when it cannot install. The machine's own packages are never
// touched here: missing tools are simulated with a PATH of our own and
// KT_SETUP_PRETEND_MISSING, and the privilege is forced to 'none'.

import t from 'tap'
import { spawn } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

interface Row { pkg: string, alt?: string[], cmd?: string | string[], file?: string, for: string }
interface Plan { ok: boolean, actions: Array<{ do: string, rows?: Row[] }>, message: string }
interface SetupModule {
  PACKAGES: Row[]
  onPath (cmd: string, path?: string): boolean
  missingPackages (env: NodeJS.ProcessEnv, rows?: Row[], probes?: { onPath (c: string, p?: string): boolean, exists (f: string): boolean }): Row[]
  installLine (rows: Row[], sudo?: boolean): string
  plan (o: { missing: Row[], engineUp: boolean, priv: string, canApt: boolean, env: NodeJS.ProcessEnv }): Plan
  staleModules (root?: string): string | null
}

const SCRIPT = fileURLToPath(new URL('../../../scripts/test-setup.mjs', import.meta.url))
const setup = await import(pathToFileURL(SCRIPT).href) as SetupModule

t.test('every row names a package, a probe and what it is for', async (t) => {
  t.ok(setup.PACKAGES.length >= 14)
  for (const r of setup.PACKAGES) {
    t.ok(r.pkg !== '' && (r.cmd !== undefined || r.file !== undefined) && r.for !== '', r.pkg)
  }
  for (const p of ['busybox-static', 'docker.io', 'haproxy', 'nginx', 'socat', 'openssl', 'curl', 'iproute2', 'iptables', 'kubectl']) {
    t.ok(setup.PACKAGES.some((r) => r.pkg === p), `${p} is in the table`)
  }
})

t.test('a tool counts as present only when its probe finds it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kt-setup-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'kt-present-tool'), '#!/bin/sh\n')
  chmodSync(join(dir, 'kt-present-tool'), 0o755)
  writeFileSync(join(dir, 'kt-not-executable'), '')
  const rows: Row[] = [
    { pkg: 'a', cmd: 'kt-present-tool', for: 'x' },
    { pkg: 'b', cmd: 'kt-absent-tool', for: 'x' },
    { pkg: 'c', cmd: 'kt-not-executable', for: 'x' },
    { pkg: 'd', file: join(dir, 'kt-present-tool'), for: 'x' },
    { pkg: 'e', file: join(dir, 'no-such-file'), for: 'x' },
  ]
  t.same(setup.missingPackages({ PATH: dir }, rows).map((r) => r.pkg), ['b', 'c', 'e'])
  t.same(setup.missingPackages({ PATH: '' }, rows).map((r) => r.pkg), ['a', 'b', 'c', 'e'], 'an empty PATH finds none of them')
  t.same(setup.missingPackages({ PATH: dir, KT_SETUP_PRETEND_MISSING: 'a, d' }, rows).map((r) => r.pkg), ['a', 'b', 'c', 'd', 'e'], 'pretend-missing wins')
  const both: Row[] = [{ pkg: 'f', cmd: ['kt-present-tool', 'kt-absent-tool'], for: 'x' }, { pkg: 'g', cmd: ['kt-present-tool'], for: 'x' }]
  t.same(setup.missingPackages({ PATH: dir }, both).map((r) => r.pkg), ['f'], 'a row naming several commands needs all of them')
})

t.test('a Docker client without its engine counts as missing docker.io', async (t) => {
  // Some machine images ship only the docker CLI (in /usr/local/bin): the
  // pretest must install Debian's engine, not try to start a dockerd that is not there.
  const dir = mkdtempSync(join(tmpdir(), 'kt-setup-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'docker'), '#!/bin/sh\nexit 1\n')
  chmodSync(join(dir, 'docker'), 0o755)
  const row = setup.PACKAGES.filter((r) => r.pkg === 'docker.io')
  const probes = { onPath: (c: string, p?: string) => c === 'docker' ? setup.onPath(c, p) : false, exists: () => true }
  t.same(setup.missingPackages({ PATH: dir }, row, probes).map((r) => r.pkg), ['docker.io'])
})

t.test('on this machine (prepared by the pretest) nothing is missing', async (t) => {
  t.same(setup.missingPackages({ PATH: process.env.PATH ?? '' }).map((r) => r.pkg), [])
})

t.test('node_modules: npm ci when it is missing or does not hold what the lock names', async (t) => {
  // A fresh clone has no node_modules: `npm test` alone must still work, so the
  // pretest runs npm ci when staleModules says why it is needed.
  const dir = mkdtempSync(join(tmpdir(), 'kt-setup-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const lock = { packages: { '': { name: 'x' }, 'node_modules/a': { version: '1.0.0' }, 'node_modules/b/node_modules/c': { version: '2.0.0' }, 'node_modules/fsevents': { version: '2.3.3', optional: true }, ws: { version: '0.0.1' } } }
  writeFileSync(join(dir, 'package-lock.json'), JSON.stringify(lock))
  t.equal(setup.staleModules(dir), 'node_modules is not installed', 'a fresh clone')
  mkdirSync(join(dir, 'node_modules'))
  const have = (packages: object): void => { writeFileSync(join(dir, 'node_modules', '.package-lock.json'), JSON.stringify({ packages })) }
  have({ 'node_modules/a': { version: '1.0.0' } })
  t.equal(setup.staleModules(dir), 'b/node_modules/c is not installed')
  have({ 'node_modules/a': { version: '0.9.0' }, 'node_modules/b/node_modules/c': { version: '2.0.0' } })
  t.equal(setup.staleModules(dir), 'a is 0.9.0, the lock names 1.0.0', 'a pull that changed the lock')
  have({ 'node_modules/a': { version: '1.0.0' }, 'node_modules/b/node_modules/c': { version: '2.0.0' } })
  t.equal(setup.staleModules(dir), null, 'installed as locked; an optional package for another platform may be absent')
  t.equal(setup.staleModules(join(dir, 'no-such-dir')), null, 'no lock: nothing to compare against')
  t.equal(setup.staleModules(), null, 'this checkout (prepared by the pretest) is installed as locked')
})

t.test('the plan for each privilege', async (t) => {
  const busybox = setup.PACKAGES.filter((r) => r.pkg === 'busybox-static')
  const env = {}
  t.same(setup.plan({ missing: [], engineUp: true, priv: 'none', canApt: true, env }), { ok: true, actions: [], message: '' }, 'ready: nothing to do')

  const none = setup.plan({ missing: busybox, engineUp: true, priv: 'none', canApt: true, env })
  t.equal(none.ok, false, 'no root, no sudo: stop before the tests')
  t.same(none.actions, [])
  t.match(none.message, /^\s+sudo apt-get install -y --no-install-recommends busybox-static$/m, 'prints the one install line')
  t.match(none.message, /busybox-static: the kind-like test cluster nodes/)

  for (const priv of ['root', 'sudo']) {
    const p = setup.plan({ missing: busybox, engineUp: false, priv, canApt: true, env })
    t.equal(p.ok, true, priv)
    t.same(p.actions.map((a) => a.do), ['install', 'start-dockerd'], `${priv}: installs, then starts dockerd`)
    t.same(p.actions[0]?.rows?.map((r) => r.pkg), ['busybox-static'])
  }

  const noEngine = setup.plan({ missing: [], engineUp: false, priv: 'none', canApt: true, env })
  t.equal(noEngine.ok, false)
  t.match(noEngine.message, /No Docker engine answers/)
  t.equal(setup.plan({ missing: [], engineUp: false, priv: 'none', canApt: true, env: { KT_SKIP_DOCKER: '1' } }).ok, true, 'KT_SKIP_DOCKER=1 needs no engine')

  const noApt = setup.plan({ missing: busybox, engineUp: true, priv: 'root', canApt: false, env })
  t.equal(noApt.ok, false)
  t.match(noApt.message, /no apt-get/)
  t.match(noApt.message, /\/bin\/busybox/)
})

t.test('the install line: first choices, a foreign architecture added first', async (t) => {
  const rows: Row[] = [{ pkg: 'socat', cmd: 'socat', for: 'x' }, { pkg: 'libc6:arm64', file: '/x', for: 'y' }]
  t.equal(setup.installLine(rows), 'sudo dpkg --add-architecture arm64 && sudo apt-get update && sudo apt-get install -y --no-install-recommends socat libc6:arm64')
  t.equal(setup.installLine(rows.slice(0, 1), false), 'apt-get install -y --no-install-recommends socat')
})

function runSetup (env: NodeJS.ProcessEnv): Promise<{ code: number | null, stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SCRIPT], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.once('exit', (code) => { clearTimeout(timer); resolve({ code, stderr }) })
  })
}

t.test('the script: a missing package without privilege exits 1 with the apt-get line', async (t) => {
  const r = await runSetup({ KT_SETUP_PRETEND_MISSING: 'busybox-static,socat', KT_SETUP_PRIVILEGE: 'none' })
  t.equal(r.code, 1, r.stderr)
  t.match(r.stderr, /sudo apt-get install -y --no-install-recommends socat busybox-static/)
  const dry = await runSetup({ KT_SETUP_PRETEND_MISSING: 'busybox-static', KT_SETUP_PRIVILEGE: 'root', KT_SETUP_DRY_RUN: '1' })
  t.equal(dry.code, 0, dry.stderr)
  t.match(dry.stderr, /dry run\): install busybox-static/)
  const ready = await runSetup({})
  t.equal(ready.code, 0, `a prepared machine passes: ${ready.stderr}`)
})
