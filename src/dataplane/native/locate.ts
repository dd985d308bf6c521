// Which kt_splice.node this process loads (issue 13), in order:
//   1. KT_NATIVE_ADDON, as given;
//   2. kt_splice.node beside this module (the relay image puts it there; it has no sources);
//   3. the source checkout's build (src/dataplane/native/build/Release), if built from these sources;
//   4. the package's prebuild for this platform (prebuilds/linux-x64/...), if built from these sources;
//   5. one compiled here on an earlier run, cached under the sources' hash;
//   6. compiled now from the shipped sources when a C compiler is on PATH (once, cached),
// else none: the pure-JS data plane. Nothing is downloaded. A file whose embedded
// source hash (source-hash.cjs) differs from the sources beside it is never
// loaded: a stale build after a source change is skipped, not run.
// Node builtins only: the relay image carries this module without node_modules.

import { spawnSync } from 'node:child_process'
import { accessSync, constants, existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { arch, homedir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ADDON_FILE = 'kt_splice.node'
/** The prebuild's name inside prebuilds/<platform>-<arch>/ (the layout node-gyp-build reads). */
export const PREBUILD_FILE = 'kt_splice.napi.glibc.node'

export interface AddonPick {
  readonly file: string
  /** For `doctor` and logs: `prebuilt linux-x64`, `local build`, `compiled linux-x64`, ... */
  readonly how: string
}

interface SourceHashModule {
  sourceHash (dir: string): string
  embeddedHash (file: string): string | undefined
}

const moduleDir = dirname(fileURLToPath(import.meta.url))

/** `<platform>-<arch>`; KT_NATIVE_PLATFORM overrides it to simulate another platform (tests, doctor checks). */
export function platformTag (): string {
  const t = process.env['KT_NATIVE_PLATFORM']
  return t !== undefined && t !== '' ? t : `${process.platform}-${process.arch}`
}

/** KT_REQUIRE_NATIVE=1 (CI): an addon that cannot be built or loaded is an error, never a silent fallback. */
export function nativeRequired (): boolean {
  return process.env['KT_REQUIRE_NATIVE'] === '1'
}

/** The C sources' folder, shipped in the package and present in a checkout; absent in the relay image. */
function sourcesDir (): string | undefined {
  // Running from the sources (ts loaders), else compiled (dist*/src/dataplane/native) beside src/.
  for (const d of [moduleDir, join(moduleDir, '..', '..', '..', '..', 'src', 'dataplane', 'native')]) {
    if (existsSync(join(d, 'source-hash.cjs')) && existsSync(join(d, 'kt_splice.c'))) return d
  }
  return undefined
}

function cacheRoot (): string {
  const env = process.env['KT_NATIVE_CACHE']
  if (env !== undefined && env !== '') return env
  const xdg = process.env['XDG_CACHE_HOME']
  return join(xdg !== undefined && xdg !== '' ? xdg : join(homedir(), '.cache'), 'kind-tunnel', 'native')
}

function onPath (cmd: string): boolean {
  if (cmd.includes('/')) return existsSync(cmd)
  for (const d of (process.env['PATH'] ?? '').split(delimiter)) {
    if (d === '') continue
    try {
      accessSync(join(d, cmd), constants.X_OK)
      return true
    } catch { /* not here */ }
  }
  return false
}

/** One line on stderr, the first time only (a marker in the cache; every time if the cache is not writable). */
function announceOnce (marker: string, line: string): void {
  if (existsSync(marker)) return
  process.stderr.write(line + '\n')
  try {
    mkdirSync(dirname(marker), { recursive: true })
    writeFileSync(marker, line + '\n')
  } catch { /* said again next run */ }
}

/**
 * A fresh addon for `tag` (linux-x64, linux-arm64) in a package or checkout at
 * `root`, for an image to carry: the prebuild, else (this machine's tag only)
 * the local build; either only when built from the sources beside it.
 */
export function addonForTag (root: string, tag: string): string | undefined {
  const src = join(root, 'src', 'dataplane', 'native')
  let fresh = (f: string): boolean => existsSync(f)
  if (existsSync(join(src, 'source-hash.cjs')) && existsSync(join(src, 'kt_splice.c'))) {
    const hs = createRequire(import.meta.url)(join(src, 'source-hash.cjs')) as SourceHashModule
    const hash = hs.sourceHash(src)
    fresh = (f) => existsSync(f) && hs.embeddedHash(f) === hash
  }
  const prebuilt = join(root, 'prebuilds', tag, PREBUILD_FILE)
  if (fresh(prebuilt)) return prebuilt
  const local = join(src, 'build', 'Release', ADDON_FILE)
  if (tag === `${process.platform}-${process.arch}` && fresh(local)) return local
  return undefined
}

/** Docker's `Architecture` (uname -m of the engine's machine) as Node's arch name. */
export function archOfEngine (machine: string): string {
  return ({ x86_64: 'x64', amd64: 'x64', aarch64: 'arm64', arm64: 'arm64' } as Record<string, string>)[machine] ?? machine
}

export interface Located {
  readonly pick?: AddonPick
  /** Why nothing (fresh) was found, when pick is undefined; or what was skipped on the way. */
  readonly notes: string[]
}

/**
 * Find the addon for this process. `compile` allows step 6 (a child process running
 * build-addon.mjs, up to a few seconds, once per source hash and platform).
 */
export function locateAddon (compile = true): Located {
  const notes: string[] = []
  const env = process.env['KT_NATIVE_ADDON']
  if (env !== undefined && env !== '') return { pick: { file: env, how: `KT_NATIVE_ADDON ${env}` }, notes }
  const bundled = join(moduleDir, ADDON_FILE)
  const src = sourcesDir()
  if (src === undefined && existsSync(bundled)) return { pick: { file: bundled, how: `bundled ${platformTag()}` }, notes }

  const tag = platformTag()
  if (!tag.startsWith('linux-')) return { notes: [`no addon for ${tag}; the native data plane is Linux only`] }
  const hs = src !== undefined ? createRequire(import.meta.url)(join(src, 'source-hash.cjs')) as SourceHashModule : undefined
  const hash = src !== undefined && hs !== undefined ? hs.sourceHash(src) : undefined
  const fresh = (file: string, what: string): boolean => {
    if (!existsSync(file)) return false
    if (hash === undefined || hs === undefined) return true
    if (hs.embeddedHash(file) === hash) return true
    notes.push(`${what} ${file} was built from other sources (stale) and is not loaded`)
    return false
  }

  // The local build is this machine's (a simulated platform does not get it).
  if (src !== undefined && tag === `${process.platform}-${process.arch}`) {
    const local = join(src, 'build', 'Release', ADDON_FILE)
    if (fresh(local, 'the local build')) return { pick: { file: local, how: 'local build' }, notes }
  }
  const root = src !== undefined ? join(src, '..', '..', '..') : join(moduleDir, '..', '..', '..', '..')
  const prebuilt = join(root, 'prebuilds', tag, PREBUILD_FILE)
  if (fresh(prebuilt, 'the prebuild')) return { pick: { file: prebuilt, how: `prebuilt ${tag}` }, notes }
  if (src === undefined || hash === undefined) return { notes: [...notes, `no addon for ${tag} and no sources to compile`] }

  const cacheDir = join(cacheRoot(), `${hash.slice(0, 16)}-${tag}`)
  const cached = join(cacheDir, ADDON_FILE)
  if (fresh(cached, 'the cached build')) return { pick: { file: cached, how: `compiled ${tag}, cached` }, notes }
  const failed = join(cacheDir, 'failed')
  if (existsSync(failed)) return { notes: [...notes, `no addon for ${tag}; compiling it here failed before (delete ${failed} to retry)`] }
  if (`linux-${arch()}` !== tag) return { notes: [...notes, `no addon for ${tag}`] }
  const cc = process.env['CC'] ?? 'cc'
  if (!compile || !onPath(cc)) {
    const why = `no addon for ${tag} and no C compiler (${cc}) to build one`
    if (compile) announceOnce(join(cacheDir, 'no-compiler'), `kind-tunnel: using the pure-JS data plane (${why}); \`kind-tunnel doctor\` shows the data path`)
    return { notes: [...notes, why] }
  }

  // First run without a prebuild: compile from the shipped sources, once.
  const r = spawnSync(process.execPath, [join(src, 'build-addon.mjs'), '--out', cached, '--quiet'],
    { stdio: ['ignore', 'ignore', nativeRequired() ? 'inherit' : 'ignore'], timeout: 240_000 })
  if (r.status === 0 && existsSync(cached)) {
    process.stderr.write(`kind-tunnel: compiled the native data plane for ${tag} from the shipped sources (once; cached in ${cacheDir})\n`)
    return { pick: { file: cached, how: `compiled ${tag}, cached` }, notes }
  }
  try {
    mkdirSync(cacheDir, { recursive: true })
    writeFileSync(failed, `${cc} could not build the addon (exit ${String(r.status)})\n`)
  } catch { /* an unwritable cache: try again next run */ }
  process.stderr.write(`kind-tunnel: using the pure-JS data plane (compiling the native addon for ${tag} with ${cc} failed)\n`)
  return { notes: [...notes, `no addon for ${tag}; compiling it with ${cc} failed`] }
}
