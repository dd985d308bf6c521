// The npm tarball as users get it (issue 13): prebuilds made as `prepack` makes
// them, `npm pack`, then laid out as `npm install -g` lays it out in an empty
// prefix: the tarball's own files under lib/node_modules/kind-tunnel, its
// runtime dependency closure (from package-lock.json, walked from the
// package's `dependencies` as Node resolves them: no devDependency, no
// workspace) beside them, and bin/kind-tunnel linked to its `bin`.
//
// The dependencies are hard links to the checkout's node_modules, the same
// versions `npm ci` installed: a real `npm install -g` spends about 20 s of CPU
// unpacking the same 95 MB, which the suite cannot afford on every run. The
// real `npm install -g` of the tarball is what native-bench's `installed`
// contender runs (docs/benchmarks.md). KT_TEST_REAL_NPM_INSTALL=1 makes this
// file do the real install instead.

import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** The repository root (this file compiles to dist/test/ship/pack.js). */
export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '')
export const buildScript = join(repoRoot, 'src', 'dataplane', 'native', 'build-addon.mjs')

export interface Installed {
  readonly dir: string
  readonly tarball: string
  /** The installed package: <prefix>/lib/node_modules/kind-tunnel. */
  readonly pkg: string
  /** <prefix>/bin/kind-tunnel */
  readonly bin: string
  /** PATH with the prefix's bin and `node`, and no C compiler. */
  readonly pathNoCc: string
  readonly files: string[]
  readonly cleanup: () => void
}

/** Pack the checkout (prepack's prebuilds, the compiled dist/) and install the tarball into an empty prefix. */
export async function packAndInstall (): Promise<Installed> {
  const dir = mkdtempSync(join(tmpdir(), 'kt-ship-'))
  const cleanup = (): void => rmSync(dir, { recursive: true, force: true })
  try {
    // What `prepack` runs; --required: a prebuild that does not build fails here.
    await run(process.execPath, [buildScript, '--prebuilds', '--required'], { cwd: repoRoot, timeout: 240_000 })
    // --ignore-scripts: the prebuilds are made above and dist/ by the test build (prepare would rerun tsc).
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: repoRoot, timeout: 120_000, maxBuffer: 16 << 20 })
    const info = JSON.parse(stdout) as Array<{ filename: string, files: Array<{ path: string }> }>
    const tarball = join(dir, (info[0] as { filename: string }).filename)
    const prefix = join(dir, 'prefix')
    mkdirSync(prefix)
    if (process.env['KT_TEST_REAL_NPM_INSTALL'] === '1') {
      await run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', tarball], { cwd: dir, timeout: 240_000 })
    } else {
      await layOut(tarball, prefix)
    }
    const nodeOnly = join(dir, 'node-only')
    mkdirSync(nodeOnly)
    symlinkSync(process.execPath, join(nodeOnly, 'node'))
    return {
      dir,
      tarball,
      pkg: join(prefix, 'lib', 'node_modules', 'kind-tunnel'),
      bin: join(prefix, 'bin', 'kind-tunnel'),
      pathNoCc: `${join(prefix, 'bin')}:${nodeOnly}`,
      files: (info[0] as { files: Array<{ path: string }> }).files.map((f) => f.path),
      cleanup,
    }
  } catch (err) {
    cleanup()
    throw err
  }
}

interface LockEntry { dependencies?: Record<string, string>, optionalDependencies?: Record<string, string>, peerDependencies?: Record<string, string>, peerDependenciesMeta?: Record<string, { optional?: boolean }>, link?: boolean, bin?: string | Record<string, string> }

/**
 * The runtime dependency closure of the checkout's package, as lockfile
 * locations (`node_modules/a`, `node_modules/a/node_modules/b`): each name
 * resolved from its dependent's location upwards, as Node resolves it.
 */
export function runtimeClosure (root = repoRoot): string[] {
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> }
  const pkgs = lock.packages
  const resolve = (from: string, name: string): string | undefined => {
    for (let at = from; ; at = at.includes('/node_modules/') ? at.slice(0, at.lastIndexOf('/node_modules/')) : '') {
      const loc = at === '' ? `node_modules/${name}` : `${at}/node_modules/${name}`
      if (pkgs[loc] !== undefined) return loc
      if (at === '') return undefined
    }
  }
  const seen = new Set<string>()
  const walk = (from: string, e: LockEntry): void => {
    const wanted: Array<[string, boolean]> = [
      ...Object.keys(e.dependencies ?? {}).map((n): [string, boolean] => [n, true]),
      ...Object.keys(e.optionalDependencies ?? {}).map((n): [string, boolean] => [n, false]),
      ...Object.keys(e.peerDependencies ?? {}).map((n): [string, boolean] => [n, e.peerDependenciesMeta?.[n]?.optional !== true]),
    ]
    for (const [name, required] of wanted) {
      const loc = resolve(from, name)
      if (loc === undefined || !existsSync(join(root, loc))) {
        if (required) throw new Error(`the runtime dependency ${name} (needed by ${from === '' ? 'kind-tunnel' : from}) is not in package-lock.json / node_modules: run npm ci`)
        continue
      }
      if (seen.has(loc)) continue
      seen.add(loc)
      walk(loc, pkgs[loc] as LockEntry)
    }
  }
  walk('', pkgs[''] as LockEntry)
  return [...seen].sort()
}

/** `npm install -g TARBALL --prefix PREFIX`'s layout, with the dependencies hard-linked from the checkout (see the top of this file). */
async function layOut (tarball: string, prefix: string): Promise<void> {
  const lib = join(prefix, 'lib', 'node_modules')
  mkdirSync(lib, { recursive: true })
  await run('tar', ['-xzf', tarball, '-C', lib])
  const pkg = join(lib, 'kind-tunnel')
  renameSync(join(lib, 'package'), pkg)
  // Outermost locations first: a nested node_modules comes along with its parent's directory.
  const locs = runtimeClosure().filter((loc, _, all) => !all.some((o) => o !== loc && loc.startsWith(`${o}/`)))
  for (const loc of locs) {
    mkdirSync(dirname(join(pkg, loc)), { recursive: true })
    await run('cp', ['-al', join(repoRoot, loc), join(pkg, loc)])
  }
  const manifest = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')) as { bin: Record<string, string> }
  mkdirSync(join(prefix, 'bin'))
  for (const [name, target] of Object.entries(manifest.bin)) {
    chmodSync(join(pkg, target), 0o755)
    symlinkSync(relative(join(prefix, 'bin'), join(pkg, target)), join(prefix, 'bin', name))
  }
}

/** The environment of an installed run: no compiler on PATH, a private cache, none of the checkout's addon switches. */
export function installedEnv (inst: Installed, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const k of ['KT_NATIVE', 'KT_NATIVE_ADDON', 'KT_NATIVE_PLATFORM', 'KT_REQUIRE_NATIVE', 'KT_NATIVE_MODE', 'CC']) delete env[k]
  return { ...env, PATH: inst.pathNoCc, KT_NATIVE_CACHE: join(inst.dir, 'cache'), HOME: inst.dir, ...extra }
}

export async function runInstalled (inst: Installed, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number, stdout: string, stderr: string }> {
  try {
    const r = await run(inst.bin, args, { env, timeout: 60_000 })
    return { code: 0, stdout: r.stdout, stderr: r.stderr }
  } catch (err) {
    const e = err as { code?: number, stdout?: string, stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

/** Start the installed `kind-tunnel proxy ...`; resolves with the port of its `listening` line. */
export async function startInstalledProxy (inst: Installed, args: string[], env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess, port: number, stderr: () => string }> {
  const child = spawn(inst.bin, ['proxy', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d })
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`no listening line in 20 s; stdout ${JSON.stringify(out)} stderr ${JSON.stringify(err)}`)) }, 20_000)
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d
      const m = /^listening 127\.0\.0\.1:(\d+)$/m.exec(out)
      if (m !== null) { clearTimeout(timer); resolve(Number(m[1])) }
    })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`proxy exited ${String(code)}: ${err}`)) })
  })
  return { child, port, stderr: () => err }
}
