// Loaded first in every test process, through NODE_OPTIONS (package.json's
// `test` script). tap starts each test file with @tapjs/processinfo's
// `--import`, which on Node 20 and 22 routes every module load of the test
// process through an off-thread loader and reports each file's line lengths
// back, for coverage. Coverage is off here (package.json: tap.disable-coverage),
// so that work feeds nothing, and it triples a test file's CPU: a test that
// loads @kubernetes/client-node spends 1.5 s of CPU directly and 5.7 s under
// the hook. This turns the hook's registration into a no-op; everything else
// of tap (the runner, TAP output, timeouts, the process-end record) is kept.
// KT_TEST_PROCESSINFO=1 keeps the hook (to measure it, or for coverage).
import module from 'node:module'

type Fn = (...args: unknown[]) => unknown
const m = module as unknown as Record<string, Fn | undefined>

function fromProcessInfo (first: unknown): boolean {
  return String(first).includes('@tapjs/processinfo') || (new Error().stack ?? '').includes('@tapjs/processinfo')
}

if (process.env['KT_TEST_PROCESSINFO'] !== '1') {
  for (const name of ['register', 'registerHooks']) {
    const orig = m[name]
    if (typeof orig !== 'function') continue
    m[name] = function (this: unknown, ...args: unknown[]): unknown {
      if (fromProcessInfo(args[0])) return undefined
      return orig.apply(this, args)
    }
  }
}

export {}
