#!/usr/bin/env node
// Builds the optional native splice addon (issues 8 and 13) with the C compiler
// directly: three C files against node_api.h need nothing else (no node-gyp, no
// python, no download; the headers come from the running Node's own prefix or
// npm's `nodedir`). Every file built carries the hash of its sources
// (source-hash.cjs), so the loader never runs a build older than the sources.
//
//   node build-addon.mjs                    build/Release/kt_splice.node for this machine
//   node build-addon.mjs --out FILE         somewhere else (the loader's first-run cache)
//   node build-addon.mjs --arch arm64       cross-compile (aarch64-linux-gnu-gcc, or $CC_arm64)
//   node build-addon.mjs --prebuilds        prebuilds/linux-{x64,arm64}/ at the package root (prepack)
//
// By default it never fails: on a problem it prints one line, exits 0, and
// kind-tunnel uses the pure-JS data plane. With KT_REQUIRE_NATIVE=1 (CI) or
// --required, a source that does not compile or an addon that does not load
// exits 1. KT_NATIVE=0 skips; KT_NATIVE_VERBOSE=1 shows the compiler's output.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, renameSync, rmSync, appendFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { arch as hostArch } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const { sourceHash, trailer } = createRequire(import.meta.url)('./source-hash.cjs')
const SOURCES = ['kt_splice.c', 'kt_lane.c', 'kt_route.c', 'kt_ring.c', 'kt_lane_napi.c', 'kt_timer.c', 'kt_peek.c', 'kt_relay.c', 'kt_relay_napi.c', 'kt_mux.c']
/** Kept in step with binding.gyp's cflags. */
const CFLAGS = ['-std=gnu11', '-O2', '-fPIC', '-shared', '-pthread', '-Wall', '-Wextra', '-Werror', '-DNAPI_VERSION=8', '-DNODE_GYP_MODULE_NAME=kt_splice']
const CROSS = { x64: 'x86_64-linux-gnu-gcc', arm64: 'aarch64-linux-gnu-gcc' }
const TIMEOUT_MS = 180_000

const args = process.argv.slice(2)
const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined }
const required = process.env.KT_REQUIRE_NATIVE === '1' || args.includes('--required')
const verbose = process.env.KT_NATIVE_VERBOSE === '1' || required
const quiet = args.includes('--quiet')

function say (msg) {
  if (!quiet) console.log(`kind-tunnel native splice: ${msg}`)
}

function fail (msg) {
  if (required) {
    console.error(`kind-tunnel native splice: ${msg} (KT_REQUIRE_NATIVE=1: failing the build)`)
    process.exit(1)
  }
  say(`${msg}; the pure-JS data plane is used`)
  process.exit(0)
}

function loads (file) {
  // A separate process: a broken addon must not take this script down with it.
  const r = spawnSync(process.execPath, ['-e', `const b = require(${JSON.stringify(file)}); if (typeof b.createEngine !== 'function') process.exit(3)`],
    { stdio: verbose ? 'inherit' : 'ignore', timeout: 30_000 })
  return r.status === 0
}

function nodeHeaders () {
  const prefix = dirname(dirname(process.execPath))
  const dirs = [process.env.npm_config_nodedir, process.env.KT_NODE_HEADERS, prefix].filter((d) => typeof d === 'string' && d !== '')
  for (const d of dirs) {
    for (const inc of [join(d, 'include', 'node'), d]) if (existsSync(join(inc, 'node_api.h'))) return inc
  }
  return undefined
}

/** Compile for `arch` into `out` (atomically: a temp file renamed over it). Returns an error line or undefined. */
function build (arch, out) {
  const inc = nodeHeaders()
  if (inc === undefined) return 'no Node headers next to this Node (include/node/node_api.h)'
  const cross = arch !== hostArch()
  const cc = (cross ? process.env[`CC_${arch}`] || CROSS[arch] : process.env.CC) || 'cc'
  if (cross && CROSS[arch] === undefined) return `no cross compiler known for ${arch}`
  mkdirSync(dirname(out), { recursive: true })
  // Ends in .node: the load check below require()s it.
  const tmp = join(dirname(out), `.tmp-${process.pid}-kt_splice.node`)
  const r = spawnSync(cc, [...CFLAGS, `-I${inc}`, '-o', tmp, ...SOURCES.map((s) => join(here, s))], { stdio: verbose ? 'inherit' : 'ignore', timeout: TIMEOUT_MS })
  if (r.error !== undefined || r.status !== 0 || !existsSync(tmp)) {
    rmSync(tmp, { force: true })
    return r.error !== undefined ? `no working compiler (${cc}: ${r.error.code ?? r.error.message})` : `${cc} failed to compile ${SOURCES.join(', ')}`
  }
  appendFileSync(tmp, trailer(sourceHash(here)))
  if (!cross && !loads(tmp)) {
    rmSync(tmp, { force: true })
    return 'built but failed to load'
  }
  renameSync(tmp, out)
  return undefined
}

if (process.env.KT_NATIVE === '0') fail('skipped (KT_NATIVE=0)')
if (process.platform !== 'linux') fail(`not built on ${process.platform} (the addon is Linux only)`)

if (args.includes('--prebuilds')) {
  // The package root: src/dataplane/native -> ../../..; the layout node-gyp-build and prebuildify use.
  const root = resolve(here, '..', '..', '..')
  for (const arch of ['x64', 'arm64']) {
    const out = join(root, 'prebuilds', `linux-${arch}`, 'kt_splice.napi.glibc.node')
    rmSync(out, { force: true })
    const err = build(arch, out)
    if (err !== undefined) fail(`prebuild linux-${arch}: ${err}`)
    say(`prebuilt linux-${arch}: ${out}`)
  }
  process.exit(0)
}

const arch = opt('--arch') ?? hostArch()
const out = resolve(opt('--out') ?? join(here, 'build', 'Release', 'kt_splice.node'))
// An old build is not removed first (a process loading it meanwhile would miss it): the new one
// replaces it atomically, and if the build fails the loader refuses the old one once the sources changed.
const err = build(arch, out)
if (err !== undefined) fail(`not built: ${err}`)
say(`built for linux-${arch}: ${out}`)
