// Bad input and missing prerequisites for up, down, status, doctor and demo:
// one line with a stable code, the right exit status, never a stack trace.
import t from 'tap'
import { join } from 'node:path'
import { runCli } from '../support/cli.js'
import { scratchDir } from './product-support.js'

const dir = await scratchDir(t)
// Each case its own state dir: cases run four at a time, and two `up`s that
// reach the control socket must not race for one (KT_ERR_ALREADY_RUNNING).
let cases_ = 0
const stateDir = (): string[] => ['--state-dir', join(dir, `state-${++cases_}`)]
const state = stateDir()

const cases: Array<[string, string[], string, number]> = [
  ['up: unknown mode', ['up', '--mode', 'tunnel', ...stateDir()], 'KT_ERR_INVALID_ARG', 2],
  ['up: unknown address', ['up', '--address', 'dns', ...stateDir()], 'KT_ERR_INVALID_ARG', 2],
  ['up: unknown relay transport', ['up', '--relay-transport', 'quic', ...stateDir()], 'KT_ERR_INVALID_ARG', 2],
  ['up: bad pool', ['up', '--ip-pool', '10.0.0.1/8', ...stateDir()], 'KT_ERR_INVALID_CIDR', 2],
  ['up: bad port', ['up', '--http-port', '99999', ...stateDir()], 'KT_ERR_INVALID_ARG', 2],
  ['up: wildcard listen host', ['up', '--listen-host', '0.0.0.0', ...stateDir()], 'KT_ERR_WILDCARD_BIND', 2],
  ['up: bad cluster name', ['up', '--cluster', 'a b', ...stateDir()], 'KT_ERR_INVALID_ARG', 2],
  ['up: --no-docker without a kubeconfig', ['up', '--no-docker', ...stateDir()], 'KT_ERR_KUBECONFIG', 1],
  ['up: unreadable kubeconfig', ['up', '--kubeconfig', join(dir, 'nope.yaml'), '--no-docker', ...stateDir()], 'KT_ERR_KUBECONFIG', 1],
  ['status: nothing running', ['status', ...stateDir()], 'KT_ERR_NOT_RUNNING', 1],
  ['status --json: nothing running', ['status', '--json', ...stateDir()], 'KT_ERR_NOT_RUNNING', 1],
  ['down: bad timeout', ['down', '--timeout', 'soon', ...stateDir()], 'KT_ERR_INVALID_ARG', 2],
  ['doctor: bad pool', ['doctor', '--ip-pool', 'x', '--no-docker', ...stateDir()], 'KT_ERR_INVALID_CIDR', 2],
  ['demo: bad service port', ['demo', '--service-port', '0', ...stateDir()], 'KT_ERR_INVALID_ARG', 2],
]

// Each case is its own CLI process (the exit status and stderr are the
// contract); they are independent, so four run at a time.
t.jobs = 4

for (const [name, args, code, exit] of cases) {
  t.test(name, async (t) => {
    const r = await runCli(args)
    t.equal(r.code, exit, `exit ${exit}: ${r.stderr}`)
    const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('{'))
    t.equal(lines.length, 1, `one line: ${r.stderr}`)
    t.match(lines[0], new RegExp(`^error ${code}: `))
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace')
  })
}

t.test('down with nothing to undo exits 0', async (t) => {
  const r = await runCli(['down', ...state])
  t.equal(r.code, 0)
  t.match(r.stdout, /^nothing to undo/)
})
