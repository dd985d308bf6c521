// The npm tarball as users get it (issue 13): prebuilds made as `prepack` makes
// them, `npm pack`, then `npm install -g` into an empty prefix. Once per test
// file; the install reuses npm's cache (the checkout's `npm ci` filled it).

import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
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
    await run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', tarball], { cwd: dir, timeout: 240_000 })
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
