#!/usr/bin/env node
// Runs tap for `npm test` with dist/test/support/tap-hooks-off.js loaded
// first in every test process (see that file for why).
//
// The hook goes into NODE_OPTIONS as an absolute file: URL, never a relative
// path. tap rebuilds its Test class on the first run after `npm ci` (this
// package's tap.plugin list differs from tap's default), and that build runs
// with node_modules/@tapjs/test/test-built as its working directory, where a
// relative `--import=./dist/...` does not resolve: the fresh-machine run
// failed there before a single test started. A URL also keeps a checkout
// path with spaces in it out of NODE_OPTIONS' word splitting.
//
// And it builds tap's Test class first when the build does not match this
// package's tap.plugin list. tap's runner rebuilds on its own, but the
// runner has already loaded the old build, and it starts every test file
// with that build's loaders: on the first run after `npm ci` every test
// process got @tapjs/typescript's and @tapjs/mock's loaders (the defaults)
// that this package turns off, which slowed every module load and hung
// relay tests until tap's timeout.
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

/**
 * Whether tap's built Test class differs from the plugin list package.json
 * asks for: a `!name` that the build includes, or a `name` it lacks.
 * (`signature` in @tapjs/test's built index is the sorted plugin list.)
 */
export function needsTapBuild (plugins, builtIndexText) {
  const m = /export const signature = `([^`]*)`/.exec(builtIndexText)
  if (m === null) return true
  const built = new Set(m[1].split('\n').map((x) => x.trim()).filter((x) => x !== ''))
  for (const p of plugins) {
    if (p.startsWith('!') ? built.has(p.slice(1)) : !built.has(p)) return true
  }
  return false
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const hook = pathToFileURL(join(root, 'dist/test/support/tap-hooks-off.js')).href
const require = createRequire(join(root, 'package.json'))
const tapPkg = require.resolve('tap/package.json')
const bin = require(tapPkg).bin
const tapBin = join(dirname(tapPkg), typeof bin === 'string' ? bin : bin.tap)

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) main()

function main () {
  const env = { ...process.env, NODE_OPTIONS: `--import=${hook} ${process.env.NODE_OPTIONS ?? ''}`.trim() }
  // For test/setup/run-tap: print the NODE_OPTIONS tap would get, run nothing.
  if (process.env.KT_RUN_TAP_PRINT_OPTIONS === '1') {
    process.stdout.write(`${env.NODE_OPTIONS}\n`)
    process.exit(0)
  }
  const plugins = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).tap?.plugin ?? []
  const builtIndex = join(dirname(require.resolve('@tapjs/test/package.json')), 'test-built', 'dist', 'esm', 'index.js')
  let builtText = ''
  try { builtText = readFileSync(builtIndex, 'utf8') } catch {}
  if (process.argv[2] !== 'build' && needsTapBuild(plugins, builtText)) {
    process.stderr.write('run-tap: building tap for this package\'s plugin list first (tap build)\n')
    const b = spawnSync(process.execPath, [tapBin, 'build'], { cwd: root, env, stdio: 'inherit' })
    if (b.status !== 0) process.exit(b.status ?? 1)
  }
  const child = spawn(process.execPath, [tapBin, ...process.argv.slice(2)], { cwd: root, env, stdio: 'inherit' })
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig))
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal)
    else process.exit(code ?? 1)
  })
}
