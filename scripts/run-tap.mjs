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
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const hook = pathToFileURL(join(root, 'dist/test/support/tap-hooks-off.js')).href
const require = createRequire(join(root, 'package.json'))
const tapPkg = require.resolve('tap/package.json')
const bin = require(tapPkg).bin
const tapBin = join(dirname(tapPkg), typeof bin === 'string' ? bin : bin.tap)

const env = { ...process.env, NODE_OPTIONS: `--import=${hook} ${process.env.NODE_OPTIONS ?? ''}`.trim() }
// For test/setup/run-tap: print the NODE_OPTIONS tap would get, run nothing.
if (process.env.KT_RUN_TAP_PRINT_OPTIONS === '1') {
  process.stdout.write(`${env.NODE_OPTIONS}\n`)
  process.exit(0)
}
const child = spawn(process.execPath, [tapBin, ...process.argv.slice(2)], { cwd: root, env, stdio: 'inherit' })
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig))
child.on('exit', (code, signal) => {
  if (signal) process.kill(process.pid, signal)
  else process.exit(code ?? 1)
})
