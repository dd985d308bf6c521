// Issue 13: the linux-arm64 prebuild, cross-compiled with Debian's
// gcc-aarch64-linux-gnu, loads in an arm64 Node.js under qemu-user and splices
// real bytes: a 1 MiB echo through test/native/fixtures/proxy-child.js running
// on arm64, byte-exact, with the pair reported done. Needs qemu-user and an
// arm64 node (test/ship/arm64-node.sh makes one from Debian's packages); CI
// (CI=true or KT_REQUIRE_NATIVE=1) fails instead of skipping when they are missing.
import t from 'tap'
import { execFile, spawn, spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { startEcho } from '../support/net.js'
import { buildScript } from './pack.js'

const run = promisify(execFile)
const ci = process.env['CI'] === 'true' || process.env['KT_REQUIRE_NATIVE'] === '1'
const script = fileURLToPath(new URL('../../../test/ship/arm64-node.sh', import.meta.url))
const child = fileURLToPath(new URL('../native/fixtures/proxy-child.js', import.meta.url))

function missing (): string | undefined {
  if (process.platform !== 'linux') return 'linux only'
  for (const tool of ['qemu-aarch64', 'aarch64-linux-gnu-gcc']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed (Debian: qemu-user, gcc-aarch64-linux-gnu)`
  }
  return undefined
}

const why = missing()
if (why !== undefined) {
  if (ci) t.fail(`the arm64 prebuild test cannot run in CI: ${why}`)
  else t.plan(0, why)
} else {
  const dir = mkdtempSync(join(tmpdir(), 'kt-arm64-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const addon = join(dir, 'kt_splice.napi.glibc.node')
  let root: string
  try {
    root = (await run('sh', [script, process.env['KT_ARM64_ROOT'] ?? '/var/cache/kind-tunnel/arm64-node'], { timeout: 300_000 })).stdout.trim()
  } catch (err) {
    root = ''
    if (ci) t.fail(`no arm64 node: ${(err as { stderr?: string }).stderr ?? String(err)}`)
    else t.plan(0, `no arm64 node: ${((err as { stderr?: string }).stderr ?? '').trim()}`)
  }
  if (root !== '') {
    t.test('the cross-compiled prebuild is an aarch64 object carrying its source hash', async (t) => {
      await run(process.execPath, [buildScript, '--arch', 'arm64', '--out', addon, '--required'], { timeout: 240_000 })
      const elf = readFileSync(addon)
      t.equal(elf.readUInt16LE(18), 183, 'e_machine EM_AARCH64')
      t.match(elf.subarray(elf.length - 82).toString('latin1'), /^KT_SOURCE_SHA256=[0-9a-f]{64}\n$/)
    })

    t.test('arm64 node under qemu loads it and splices 1 MiB byte-exact', async (t) => {
      t.ok(existsSync(addon))
      const echo = await startEcho()
      t.teardown(() => echo.close())
      // A bare environment: tap's hooks (NODE_OPTIONS and its own variables) are for this Node, not the arm64 Node 18.
      const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', KT_NATIVE_ADDON: addon }
      // tap's process-info hook adds NODE_OPTIONS to every child; the shell drops it before qemu.
      const p = spawn('sh', ['-c', 'exec env -u NODE_OPTIONS qemu-aarch64 "$@"', 'sh', '-L', root, join(root, 'usr', 'bin', 'node'), child, 'splice', String(echo.port), '0'], { env, stdio: ['pipe', 'pipe', 'pipe'] })
      t.teardown(() => { p.kill('SIGKILL') })
      let out = ''
      let err = ''
      p.stderr.setEncoding('utf8').on('data', (d: string) => { err += d })
      p.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
      // qemu runs V8 slowly: wait for the line, bounded, and say what was seen.
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`arm64 proxy-child: no listening line in 180 s; stdout ${JSON.stringify(out)} stderr ${JSON.stringify(err)}`)), 180_000)
        const look = (): void => {
          const m = /^listening (\d+)$/m.exec(out)
          if (m !== null) { clearTimeout(timer); resolve(Number(m[1])) }
          if (/^unavailable$/m.test(out)) { clearTimeout(timer); reject(new Error(`the arm64 addon did not load: ${err}`)) }
        }
        p.stdout.on('data', look)
        p.once('exit', (code) => { clearTimeout(timer); reject(new Error(`arm64 proxy-child exited ${String(code)}: ${err}`)) })
      })
      const data = randomBytes(1 << 20)
      const s = connect(port, '127.0.0.1')
      const h = createHash('sha256')
      let got = 0
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${got} of ${data.length} bytes back in 120 s`)), 120_000)
        s.on('data', (d: Buffer) => { h.update(d); got += d.length; if (got >= data.length) { clearTimeout(timer); s.end(); resolve() } })
        s.on('error', (e) => { clearTimeout(timer); reject(e) })
        s.write(data)
      })
      t.equal(h.digest('hex'), createHash('sha256').update(data).digest('hex'), '1 MiB echoed byte-exact through the arm64 splicer')
      const done = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no done line in 60 s; stdout ${JSON.stringify(out)}`)), 60_000)
        const look = (): void => {
          const m = /^done (.*)$/m.exec(out)
          if (m !== null) { clearTimeout(timer); resolve(m[1] as string) }
        }
        look()
        p.stdout.on('data', look)
      })
      const r = JSON.parse(done) as { aToB: number, bToA: number, cause: string }
      t.same(r, { aToB: data.length, bToA: data.length, cause: 'eof' }, 'the native pair ended cleanly with every byte counted')
      s.destroy()
      p.stdin.end()
    })
  }
}
