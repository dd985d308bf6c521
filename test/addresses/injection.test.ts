import t from 'tap'
import { PassThrough } from 'node:stream'
import { darwinBackend, linuxBackend, win32Backend } from '../../src/addresses/backends.js'
import type { Command } from '../../src/addresses/backends.js'
import { runHelper } from '../../src/addresses/helper.js'
import { AddressManager } from '../../src/addresses/manager.js'
import type { CommandRunner } from '../../src/addresses/runner.js'
import { validatePool } from '../../src/addresses/validate.js'

const POOL = '127.240.0.0/16'
const HOSTILE: unknown[] = [
  '1.2.3.4;id',
  '127.240.0.5;id',
  '127.240.0.5 && id',
  '$(id)',
  '`id`',
  '--help',
  '-alias',
  '-h',
  '1.2.3.4 5.6.7.8',
  '127.240.0.5 127.240.0.6',
  '127.240.0.5\n127.240.0.6',
  '10.0.0.1', // outside the pool
  '8.8.8.8',
  'fe80::1%lo0', // IPv6 zone id
  'fd00::1%25eth0',
  '127.240.0.5%lo',
  '',
  ' ',
  ' 127.240.0.5',
  '127.240.0.5/32',
  '127.240.0.0', // the pool's network address
  '127.240.255.255', // and its broadcast
  '127.0.0.1',
  '0.0.0.0',
  '::',
  '::1',
  '::ffff:127.240.0.5',
  '0x7ff00005',
  '2130706433',
  '127.240.5',
  '127.240.000.005',
  '１２７.240.0.5',
  'a'.repeat(300),
  5,
  null,
  ['127.240.0.5'],
  { ip: '127.240.0.5' },
]

function recorder (): { runner: CommandRunner, calls: Command[] } {
  const calls: Command[] = []
  return { calls, runner: async (c) => { calls.push(c); return { code: 0, stdout: '', stderr: '' } } }
}

t.test('AddressManager refuses hostile addresses and runs nothing', async (t) => {
  for (const backend of [linuxBackend, darwinBackend, win32Backend]) {
    const { runner, calls } = recorder()
    const m = new AddressManager({ pool: POOL, backend, runner })
    for (const raw of HOSTILE) {
      t.throws(() => m.ensure(raw as string), { code: 'KT_ERR_ADDRESS_REFUSED' }, `${backend.platform} ensure ${JSON.stringify(raw)}`)
      t.throws(() => m.release(raw as string), { code: 'KT_ERR_ADDRESS_REFUSED' }, `${backend.platform} release ${JSON.stringify(raw)}`)
    }
    t.same(calls, [], `${backend.platform}: nothing executed`)
  }
})

async function converse (lines: string[], runner: CommandRunner, backend = darwinBackend) {
  const stdin = new PassThrough()
  const stdout = new PassThrough()
  const chunks: string[] = []
  stdout.setEncoding('utf8')
  stdout.on('data', (c: string) => chunks.push(c))
  const done = runHelper({ stdin, stdout, pool: POOL, backend, runner })
  for (const l of lines) stdin.write(l)
  stdin.end()
  const stats = await done
  return { stats, answers: chunks.join('').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>) }
}

t.test('the helper refuses hostile requests on the wire, answers each, and runs nothing', async (t) => {
  const { runner, calls } = recorder()
  const lines: string[] = []
  for (const ip of HOSTILE) {
    lines.push(`${JSON.stringify({ id: lines.length, verb: 'add', ip })}\n`)
    lines.push(`${JSON.stringify({ id: lines.length, verb: 'remove', ip })}\n`)
  }
  const structural = [
    '{"verb":"exec","ip":"127.240.0.5"}',
    '{"verb":"ADD","ip":"127.240.0.5"}',
    '{"verb":" add","ip":"127.240.0.5"}',
    '{"verb":["add"],"ip":"127.240.0.5"}',
    '{"ip":"127.240.0.5"}',
    '{"verb":"add"}',
    '{"verb":"add","ip":"127.240.0.5","args":["--help"]}',
    '{"verb":"add","ip":"127.240.0.5","__proto__":{"x":1}}',
    '{"verb":"add","ip":"127.240.0.5","constructor":1}',
    '{"verb":"list","ip":"127.240.0.5"}',
    '{"verb":"add","ip":"127.240.0.5","id":{"x":1}}',
    '["add","127.240.0.5"]',
    '"add 127.240.0.5"',
    'add 127.240.0.5',
    'null',
    '{"verb":"add","ip":"127.240.0.5"',
    `{"verb":"add","ip":"127.240.0.5","id":"${'x'.repeat(2000)}"}`,
  ]
  for (const s of structural) lines.push(`${s}\n`)
  const { answers, stats } = await converse(lines, runner)
  t.equal(answers.length, HOSTILE.length * 2 + structural.length, 'one answer per request')
  t.ok(answers.every((a) => a.ok === false && a.code === 'KT_ERR_ADDRESS_REFUSED'), 'every one refused')
  t.same(answers.slice(0, 4).map((a) => a.id), [0, 1, 2, 3], 'ids are echoed, even on refusals')
  t.equal(stats.refused, answers.length)
  t.same(calls, [], 'nothing executed')
})

t.test('an endless line is refused once and skipped; the next request is served', async (t) => {
  const { runner, calls } = recorder()
  const big = 'x'.repeat(600)
  const { answers } = await converse([big, big, big, big, '\n', '{"id":9,"verb":"add","ip":"127.240.0.5"}\n'], runner)
  t.same(answers.map((a) => [a.ok, a.code ?? a.verb]), [[false, 'KT_ERR_ADDRESS_REFUSED'], [true, 'add']])
  t.same(calls.map((c) => c.args[0]), ['lo0', 'lo0'], 'list, then the alias')
})

t.test('the helper refuses to start with a dangerous pool', async (t) => {
  for (const pool of ['0.0.0.0/0', '10.0.0.0/7', '0.0.0.0/8', '224.0.0.0/4', '240.0.0.0/8', '::/0', '::/64', 'ff02::/64', 'fd00::/32', '127.240.0.1/16', 'nope']) {
    t.throws(() => validatePool(pool), { code: 'KT_ERR_INVALID_CIDR' }, pool)
    const { runner } = recorder()
    await t.rejects(runHelper({ stdin: new PassThrough(), stdout: new PassThrough(), pool, backend: linuxBackend, runner }), { code: 'KT_ERR_INVALID_CIDR' })
  }
  for (const pool of ['127.0.0.0/8', '127.240.0.0/16', '10.77.0.0/24', 'fd00:77::/64', '172.18.255.0/24']) {
    t.equal(validatePool(pool).text, pool)
  }
})
