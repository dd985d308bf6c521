#!/usr/bin/env node
// Builds a test variant of the native addon and, with --run, runs tap files
// against it. Variants (all with -DKT_TEST_HOOKS: fault injection and probes,
// src/dataplane/native/kt_test.h; never shipped):
//   test  plain (-O1 -g)
//   asan  AddressSanitizer + UndefinedBehaviorSanitizer
//   tsan  ThreadSanitizer
// Output: src/dataplane/native/build/<variant>/kt_splice.node. The sources are
// binding.gyp's, the flags the release build's plus -Werror. Node itself is
// not instrumented, so the sanitizer runtime is LD_PRELOADed into it (gcc's
// libasan/libtsan, found with `cc -print-file-name`).
//   node scripts/native-variant.mjs asan                       build only
//   node scripts/native-variant.mjs tsan --run dist/test/native/*.test.js
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = dirname(dirname(fileURLToPath(import.meta.url)))
const dir = join(root, 'src', 'dataplane', 'native')
const VARIANTS = {
  test: { flags: ['-O1', '-g'], runtime: undefined },
  asan: { flags: ['-O1', '-g', '-fno-omit-frame-pointer', '-fsanitize=address,undefined', '-fno-sanitize-recover=undefined'], runtime: 'libasan.so' },
  tsan: { flags: ['-O1', '-g', '-fsanitize=thread'], runtime: 'libtsan.so' },
}

export function variantPath (variant) {
  return join(dir, 'build', variant, 'kt_splice.node')
}

function sources () {
  const gyp = JSON.parse(readFileSync(join(dir, 'binding.gyp'), 'utf8'))
  return gyp.targets[0].sources.map((s) => join(dir, s))
}

function nodeInclude () {
  const prefix = dirname(dirname(process.execPath))
  for (const d of [process.env.npm_config_nodedir, prefix]) {
    if (typeof d === 'string' && d !== '' && existsSync(join(d, 'include', 'node', 'node_api.h'))) return join(d, 'include', 'node')
  }
  throw new Error('no Node headers next to this Node (include/node/node_api.h)')
}

/** Builds the variant when a source (or header) is newer than it; returns its path. */
export function buildVariant (variant) {
  const v = VARIANTS[variant]
  if (v === undefined) throw new Error(`unknown variant ${variant} (${Object.keys(VARIANTS).join(', ')})`)
  const out = variantPath(variant)
  const inputs = [...sources(), ...readdirSync(dir).filter((f) => f.endsWith('.h')).map((h) => join(dir, h))]
  if (existsSync(out)) {
    const built = statSync(out).mtimeMs
    if (inputs.every((f) => statSync(f).mtimeMs <= built)) return out
  }
  mkdirSync(dirname(out), { recursive: true })
  const tmp = `${out}.${process.pid}.tmp`
  const cc = process.env.CC || 'cc'
  const args = ['-std=gnu11', '-Wall', '-Wextra', '-Werror', '-Wno-unused-parameter', '-fPIC', '-shared', '-pthread',
    ...v.flags, '-DKT_TEST_HOOKS', '-DNAPI_VERSION=8', '-DNODE_GYP_MODULE_NAME=kt_splice', `-I${nodeInclude()}`, '-o', tmp, ...sources()]
  const r = spawnSync(cc, args, { stdio: 'inherit', timeout: 300_000 })
  if (r.status !== 0) { rmSync(tmp, { force: true }); throw new Error(`${cc} failed building the ${variant} variant`) }
  // Test files run in parallel may build at once: each writes its own file and renames it (atomic).
  renameSync(tmp, out)
  return out
}

/** The environment that loads the variant into node (KT_NATIVE_ADDON, LD_PRELOAD, sanitizer options). */
export function variantEnv (variant) {
  const v = VARIANTS[variant]
  const env = { ...process.env, KT_NATIVE_ADDON: variantPath(variant), KT_NATIVE_VARIANT: variant }
  if (v.runtime !== undefined) {
    const lib = spawnSync(process.env.CC || 'cc', [`-print-file-name=${v.runtime}`], { encoding: 'utf8' }).stdout.trim()
    if (!lib.startsWith('/')) throw new Error(`the compiler has no ${v.runtime} (install gcc's sanitizer runtime)`)
    env.LD_PRELOAD = lib
  }
  // Node's own allocations live to exit (leaks are not ours to report); any
  // report fails the run (exitcode), the first one stops it (halt_on_error).
  env.ASAN_OPTIONS = 'detect_leaks=0:halt_on_error=1:exitcode=86:verify_asan_link_order=0'
  env.UBSAN_OPTIONS = 'halt_on_error=1:print_stacktrace=1:exitcode=86'
  env.TSAN_OPTIONS = `halt_on_error=1:exitcode=86:report_signal_unsafe=0:suppressions=${join(root, 'scripts', 'tsan.supp')}`
  return env
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [variant, flag, ...files] = process.argv.slice(2)
  const out = buildVariant(variant ?? 'test')
  console.log(`kind-tunnel native ${variant ?? 'test'} variant: ${out}`)
  if (flag === '--run') {
    const tap = join(root, 'node_modules', '.bin', 'tap')
    // One file at a time (-j1): a sanitizer's report names the test that caused it.
    const r = spawnSync(tap, ['-j1', '--timeout=600', ...files], { stdio: 'inherit', env: variantEnv(variant) })
    process.exit(r.status ?? 1)
  }
}
