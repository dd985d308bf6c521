// The helper as a real child process, inside a network namespace the test
// creates (standing in for `sudo kind-tunnel helper`), driven by the
// unprivileged side's client over its stdin/stdout.

import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { AddressHelperClient } from '../../src/addresses/client.js'

function sh (file: string, args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr })
    })
  })
}

const canNetns = process.platform === 'linux' && process.getuid?.() === 0
if (!canNetns) {
  t.test('real netns', { skip: 'needs root on Linux for ip netns' }, () => {})
} else {
  t.test('add, list, refuse, remove through a helper process', async (t) => {
    const ns = `kt-test-${randomBytes(4).toString('hex')}`
    const made = await sh('ip', ['netns', 'add', ns])
    t.equal(made.code, 0, 'netns created')
    t.teardown(async () => { await sh('ip', ['netns', 'delete', ns]) })

    const helperUrl = new URL('../../src/addresses/helper.js', import.meta.url).href
    const script = [
      `import { runHelper } from ${JSON.stringify(helperUrl)}`,
      "const stats = await runHelper({ stdin: process.stdin, stdout: process.stdout, pool: '10.78.0.0/24' })",
      'process.stderr.write(JSON.stringify(stats))',
    ].join('\n')
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (c: string) => { stderr += c })
    const exited = once(child, 'exit')
    t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })

    const client = new AddressHelperClient({ input: child.stdin, output: child.stdout, timeoutMs: 10_000 })
    t.same(await client.ensure('10.78.0.5'), { ip: '10.78.0.5', changed: true })
    t.same(await client.ensure('10.78.0.5'), { ip: '10.78.0.5', changed: false })
    t.match((await sh('ip', ['netns', 'exec', ns, 'ip', '-o', 'addr', 'show', 'dev', 'lo'])).stdout, /\binet 10\.78\.0\.5\/32\b/)
    t.same(await client.list(), [{ ip: '10.78.0.5', prefix: 32, family: 4 }])
    await t.rejects(client.ensure('10.78.0.5;id'), { code: 'KT_ERR_ADDRESS_REFUSED' })
    await t.rejects(client.ensure('10.79.0.5'), { code: 'KT_ERR_ADDRESS_REFUSED' })
    await t.rejects(client.release('--help'), { code: 'KT_ERR_ADDRESS_REFUSED' })
    t.same(await client.release('10.78.0.5'), { ip: '10.78.0.5', changed: true })
    t.notMatch((await sh('ip', ['netns', 'exec', ns, 'ip', '-o', 'addr', 'show', 'dev', 'lo'])).stdout, /10\.78\.0\.5/)

    client.close()
    const [code] = await Promise.race([exited, new Promise<[null]>((resolve) => setTimeout(() => resolve([null]), 10_000).unref())])
    t.equal(code, 0, 'the helper exits 0 when its input ends')
    t.same(JSON.parse(stderr), { requests: 7, refused: 3, failed: 0 })
    await t.rejects(client.list(), { code: 'KT_ERR_ADDRESS_COMMAND' }, 'a gone helper is an error, not a hang')
  })
}
