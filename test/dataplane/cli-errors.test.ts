// Bad input: one line with a stable code, exit status 2, never a stack trace.
import t from 'tap'
import { runCli } from '../support/cli.js'

const cases: Array<[string, string[], string]> = [
  ['wildcard v4', ['proxy', '--listen', '0.0.0.0:8080', '--backend', '127.0.0.1:1'], 'KT_ERR_WILDCARD_BIND'],
  ['wildcard v6', ['proxy', '--listen', '[::]:8080', '--backend', '127.0.0.1:1'], 'KT_ERR_WILDCARD_BIND'],
  ['no port', ['proxy', '--listen', '127.0.0.1', '--backend', '127.0.0.1:1'], 'KT_ERR_INVALID_ADDRESS'],
  ['bad port', ['proxy', '--listen', '127.0.0.1:99999', '--backend', '127.0.0.1:1'], 'KT_ERR_INVALID_ADDRESS'],
  ['bad backend', ['proxy', '--listen', '127.0.0.1:0', '--backend', 'nope'], 'KT_ERR_INVALID_ADDRESS'],
  ['bad timeout', ['proxy', '--listen', '127.0.0.1:0', '--backend', '127.0.0.1:1', '--connect-timeout', '5s'], 'KT_ERR_INVALID_ARG'],
  ['bad route', ['proxy', '--listen', '127.0.0.1:0', '--route', 'a.*.b=127.0.0.1:1'], 'KT_ERR_INVALID_ROUTE'],
  ['no target', ['proxy', '--listen', '127.0.0.1:0'], 'KT_ERR_INVALID_ARG'],
  ['missing --listen', ['proxy', '--backend', '127.0.0.1:1'], 'KT_ERR_INVALID_ARG'],
  ['unknown option', ['proxy', '--listen', '127.0.0.1:0', '--backend', '127.0.0.1:1', '--bogus'], 'KT_ERR_INVALID_ARG'],
  ['bad policy', ['proxy', '--listen', '127.0.0.1:0', '--backend', '127.0.0.1:1', '--policy', 'best'], 'KT_ERR_INVALID_ARG'],
  ['udp: /sctp', ['proxy', '--listen', '127.0.0.1:53/sctp', '--backend', '127.0.0.1:1'], 'KT_ERR_INVALID_PROTOCOL'],
  ['udp: port out of range', ['proxy', '--listen', '127.0.0.1:65536/udp', '--backend', '127.0.0.1:1'], 'KT_ERR_INVALID_ADDRESS'],
  ['udp: --route on a UDP listener', ['proxy', '--listen', '127.0.0.1:0/udp', '--route', 'a.test=127.0.0.1:1'], 'KT_ERR_INVALID_ROUTE'],
]

for (const [name, args, code] of cases) {
  t.test(name, async (t) => {
    const r = await runCli(args)
    t.equal(r.code, 2, 'exit status 2')
    const lines = r.stderr.trim().split('\n')
    t.equal(lines.length, 1, `one line: ${r.stderr}`)
    t.match(lines[0], new RegExp(`^error ${code}: `))
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace')
    t.equal(r.stdout, '')
  })
}

t.test('a taken port: one line, KT_ERR_LISTEN, exit 1', async (t) => {
  const { createServer } = await import('node:net')
  const s = createServer().listen(0, '127.0.0.1')
  await new Promise((resolve) => s.once('listening', resolve))
  t.teardown(() => s.close())
  const port = (s.address() as { port: number }).port
  const r = await runCli(['proxy', '--listen', `127.0.0.1:${port}`, '--backend', '127.0.0.1:1'])
  t.equal(r.code, 1)
  t.ok(r.stderr.split('\n').some((l) => /^error KT_ERR_LISTEN: .*EADDRINUSE/.test(l)), r.stderr)
})
