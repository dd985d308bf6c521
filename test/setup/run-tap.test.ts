// scripts/run-tap.mjs (npm test's tap step). The session-4 suite failed on a
// fresh machine before any test ran: tap rebuilds its Test class on the
// first run after `npm ci`, that build runs with node_modules/@tapjs/test/
// test-built as its working directory, and the hook was named by a path
// relative to the repository. These check the NODE_OPTIONS the runner hands
// tap resolve from any working directory, and that a process started that
// way (from elsewhere, as tap's build is) runs.

import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

const SCRIPT = fileURLToPath(new URL('../../../scripts/run-tap.mjs', import.meta.url))
const runTap = await import(pathToFileURL(SCRIPT).href) as { needsTapBuild: (plugins: string[], builtIndexText: string) => boolean }

function printedOptions (cwd: string, extra?: string): string {
  const env: NodeJS.ProcessEnv = { ...process.env, KT_RUN_TAP_PRINT_OPTIONS: '1' }
  if (extra === undefined) delete env['NODE_OPTIONS']
  else env['NODE_OPTIONS'] = extra
  const r = spawnSync(process.execPath, [SCRIPT], { cwd, env, encoding: 'utf8', timeout: 30_000 })
  t.equal(r.status, 0, `the runner prints its options (${r.stderr})`)
  return r.stdout.trim()
}

t.test('the hook is an absolute file: URL, with no spaces to split on', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kt run tap '))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const opts = printedOptions(dir)
  const m = /^--import=(\S+)$/.exec(opts)
  t.ok(m, `one --import option: ${opts}`)
  t.match(m?.[1] ?? '', /^file:\/\/\/.*\/dist\/test\/support\/tap-hooks-off\.js$/)
})

t.test('options already set are kept, after the hook', async (t) => {
  const opts = printedOptions(tmpdir(), '--max-old-space-size=512')
  // (tap's spawn hook in this test process may have quoted the option; Node
  // reads NODE_OPTIONS' quotes, so both forms are the same option)
  t.match(opts, /^--import=file:\S+ "?--max-old-space-size=512"?$/)
})

t.test('a node started with those options from another directory runs (as tap build does)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kt-run-tap-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const opts = printedOptions(dir)
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write("ran")'], { cwd: dir, env: { ...process.env, NODE_OPTIONS: opts }, encoding: 'utf8', timeout: 30_000 })
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stdout, 'ran')
})

t.test('tap is rebuilt before the run when its build is not this package\'s plugin list', async (t) => {
  // The first run after `npm ci` has tap's default build; the runner would
  // start every test file with that build's loaders (@tapjs/typescript, @tapjs/mock).
  const root = fileURLToPath(new URL('../../../', import.meta.url))
  const plugins = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { tap: { plugin: string[] } }).tap.plugin
  const built = (names: string[]): string => `// x\nexport const signature = \`${names.join('\n')}\`;\n`
  t.equal(runTap.needsTapBuild(plugins, built(['@tapjs/after', '@tapjs/asserts', '@tapjs/mock', '@tapjs/typescript'])), true, 'the default build')
  t.equal(runTap.needsTapBuild(plugins, ''), true, 'no build at all')
  t.equal(runTap.needsTapBuild(['@tapjs/extra'], built(['@tapjs/after'])), true, 'an added plugin missing')
  // This checkout's own build, which the running suite uses, matches.
  const req = createRequire(join(root, 'package.json'))
  const index = join(dirname(req.resolve('@tapjs/test/package.json')), 'test-built', 'dist', 'esm', 'index.js')
  t.equal(runTap.needsTapBuild(plugins, readFileSync(index, 'utf8')), false, 'the build in use')
  t.notMatch(process.execArgv.join(' '), /@tapjs\/(typescript|mock)/, 'and this test process has none of the turned-off loaders')
})
