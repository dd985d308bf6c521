// Out of descriptors mid-stream (anchors.md: `ulimit -n 64` causes no crash):
// when no pipe can be created, a direction carries its bytes through a buffer
// instead, and the pair still ends byte-exact and clean. The proxy runs in a
// child whose RLIMIT_NOFILE is lowered under it with prlimit(1).
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { SKIP, collect, connect, payloadBlocks, sha256, startBackend, waitFor, within, writeAll } from './fixtures/harness.js'

const child = fileURLToPath(new URL('./fixtures/proxy-child.js', import.meta.url))
const SIZE = 16 * 1024 * 1024

function hasPrlimit (): boolean {
  try { execFileSync('prlimit', ['--version'], { stdio: 'ignore' }); return true } catch { return false }
}

// ThreadSanitizer's runtime cannot start a process with so few descriptors (npm run test:tsan).
const tsan = process.env['KT_NATIVE_VARIANT'] === 'tsan' ? 'the TSAN runtime cannot start under a low descriptor limit' : false

t.test('splice: no descriptor left for a pipe, bytes still flow exactly', { skip: SKIP || tsan || (hasPrlimit() ? false : 'prlimit(1) not installed') }, async (t) => {
  const up = payloadBlocks(SIZE)
  const down = payloadBlocks(SIZE)
  let backendGot: ReturnType<typeof collect> | undefined
  let go: (() => void) | undefined
  const started = new Promise<void>((resolve) => { go = resolve })
  const backend = await startBackend(t, (s) => {
    backendGot = collect(s)
    void started.then(() => writeAll(s, down, true)).catch(() => {})
  })
  const proc = spawn(process.execPath, [child, 'splice', String(backend.port), '0'], { stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
    await within(exited, 5000, 'child exit').catch(() => {})
  })
  const out: string[] = []
  createInterface({ input: proc.stdout! }).on('line', (l) => out.push(l))
  await waitFor(() => out.some((l) => l.startsWith('listening ')), 'child to listen', 10_000)
  const port = Number(out.find((l) => l.startsWith('listening '))!.split(' ')[1])

  const client = await connect(port)
  t.teardown(() => client.destroy())
  const got = collect(client)
  await waitFor(() => backendGot !== undefined, 'pair connected', 5000)
  // Let the handoff (and its dups) happen, then leave no free descriptor number below the limit.
  await new Promise((resolve) => setTimeout(resolve, 200))
  const pid = proc.pid!
  const open = new Set(readdirSync(`/proc/${pid}/fd`).map(Number))
  let lowestFree = 0
  while (open.has(lowestFree)) lowestFree++
  execFileSync('prlimit', [`--pid=${pid}`, `--nofile=${lowestFree}:`])
  t.comment(`child limited to ${lowestFree} descriptors`)

  go!()
  await within(writeAll(client, up, true), 60_000, 'upload')
  const c = await within(got.done, 60_000, 'download')
  t.equal(c.bytes, SIZE)
  t.equal(c.hash, sha256(down), 'download byte-exact')
  const b = await within(backendGot!.done, 60_000, 'backend receive')
  t.equal(b.bytes, SIZE)
  t.equal(b.hash, sha256(up), 'upload byte-exact')
  client.end()
  await waitFor(() => out.some((l) => l.startsWith('done ')), 'done line', 10_000)
  t.same(JSON.parse(out.find((l) => l.startsWith('done '))!.slice(5)), { aToB: SIZE, bToA: SIZE, cause: 'eof' })
  await waitFor(() => out.some((l) => l.startsWith('stats ')), 'stats line', 10_000)
  const stats = JSON.parse(out.find((l) => l.startsWith('stats '))!.slice(6)) as { pipeFallbacks: number }
  t.ok(stats.pipeFallbacks > 0, `${stats.pipeFallbacks} chunks went through a buffer instead of a pipe`)
  t.equal(proc.exitCode, null, 'the proxy is still running')
  proc.stdin!.end()
  t.equal(await within(exited, 5000, 'child exit'), 0)
})
