// The container entry point as a process: one-line errors with codes and exit 2
// on bad input, `listening HOST:PORT` when ready, exit 0 on SIGTERM.
import t from 'tap'
import { spawn, execFile } from 'node:child_process'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { randomBytes } from 'node:crypto'
import { relayHandshake } from '../../src/relay/client.js'

const MAIN = fileURLToPath(new URL('../../src/relay/main.js', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'kt-relay-main-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const token = randomBytes(32)
const tokenFile = join(dir, 'token')
writeFileSync(tokenFile, token.toString('hex') + '\n', { mode: 0o600 })
const shortFile = join(dir, 'short')
writeFileSync(shortFile, randomBytes(8).toString('hex'))

function runMain (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { timeout: 10_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? null, stdout, stderr })
    })
  })
}

t.test('bad input: one line, a code, exit 2, no stack trace', async (t) => {
  const cases: Array<[string[], string]> = [
    [['--token-file', tokenFile, '--allow', '10.0.0.0/8'], 'KT_ERR_INVALID_ARG'],
    [['--listen', '127.0.0.1:0', '--allow', '10.0.0.0/8'], 'KT_ERR_INVALID_ARG'],
    [['--listen', '127.0.0.1:0', '--token-file', tokenFile], 'KT_ERR_INVALID_ARG'],
    [['--listen', '0.0.0.0:7000', '--token-file', tokenFile, '--allow', '10.0.0.0/8'], 'KT_ERR_WILDCARD_BIND'],
    [['--listen', '127.0.0.1:0', '--token-file', shortFile, '--allow', '10.0.0.0/8'], 'KT_ERR_INVALID_ARG'],
    [['--listen', '127.0.0.1:0', '--token-file', join(dir, 'missing'), '--allow', '10.0.0.0/8'], 'KT_ERR_INVALID_ARG'],
    [['--listen', '127.0.0.1:0', '--token-file', tokenFile, '--allow', '0.0.0.0/0'], 'KT_ERR_INVALID_CIDR'],
    [['--listen', '127.0.0.1:0', '--token-file', tokenFile, '--allow', '10.0.0.0/8', '--ports', '5-x'], 'KT_ERR_INVALID_ARG'],
    [['--listen', '127.0.0.1:0', '--token-file', tokenFile, '--allow', '10.0.0.0/8', '--token', 'abc'], 'KT_ERR_INVALID_ARG'],
  ]
  for (const [args, code] of cases) {
    const r = await runMain(args)
    t.equal(r.code, 2, args.join(' '))
    t.match(r.stderr, new RegExp(`^error ${code}: [^\\n]+\\n$`), args.join(' '))
    t.notMatch(r.stderr, /\n\s+at /, 'no stack')
  }
})

t.test('ready line, a working HELLO, and a clean exit on SIGTERM', async (t) => {
  const child = spawn(process.execPath, [MAIN, '--listen', '127.0.0.1:0', '--token-file', tokenFile, '--allow', '10.0.0.0/8', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const line = await new Promise<string>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error('no listening line within 5 s')), 5000)
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString()
      const m = /listening (\S+)\n/.exec(out)
      if (m !== null) { clearTimeout(timer); resolve(m[1] as string) }
    })
  })
  const port = Number(line.split(':').pop())
  t.match(line, /^127\.0\.0\.1:\d+$/)
  const s = await relayHandshake({ host: '127.0.0.1', port, token }, 2000)
  s.destroy()
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  child.kill('SIGTERM')
  t.equal(await exited, 0)
})
