// Issue 13: the relay image carries the native addon for the engine's
// architecture (docker info), built offline on the local base, and the relay
// inside splices natively: its start line says `native splice (bundled linux-...)`.
// Bytes through a running relay container are covered by test/docker/relay-e2e.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ensureRelayImage, relayBuildContext } from '../../src/docker/relay-image.js'
import { demuxLogs } from '../../src/docker/relay-container.js'
import { archOfEngine } from '../../src/dataplane/native/locate.js'
import { createNetwork, docker, dockerAvailable, relayBaseImage, TEST_LABEL, useScratch } from '../support/docker.js'
import { waitFor } from '../support/net.js'

const skip = await dockerAvailable()
if (skip !== null) t.plan(0, skip)
else {
  const prefix = await useScratch(t)
  const arch = archOfEngine(String((await docker.info() as { Architecture?: string }).Architecture))
  const base = await relayBaseImage()

  t.test('the build context holds the addon for the engine, and older layouts get a new tag', async (t) => {
    const ctx = relayBuildContext({ base, arch })
    t.equal(ctx.addon, `linux-${arch}`)
    t.ok(ctx.files.includes('src/dataplane/native/build/Release/kt_splice.node'))
    t.ok(ctx.files.includes('dist/src/dataplane/native/locate.js'), 'and the loader')
    const none = relayBuildContext({ base, arch: 'riscv64' })
    t.equal(none.addon, undefined, 'no addon for an engine without one: the JS splice')
    t.not(none.tag, ctx.tag, 'a different image')
  })

  t.test('the relay in the image splices natively', async (t) => {
    const img = await ensureRelayImage({ docker, base })
    const dir = mkdtempSync(join(tmpdir(), 'kt-relay-img-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const token = join(dir, 'token')
    writeFileSync(token, randomBytes(32).toString('hex') + '\n')
    chmodSync(token, 0o644)
    const net = await createNetwork(prefix)
    const c = await docker.createContainer({
      Image: img.tag,
      Cmd: ['--listen', 'auto:7000', '--token-file', '/run/kt/token', '--allow', `${net.gateway}/32`, '--log-level', 'info'],
      Labels: { [TEST_LABEL]: prefix },
      HostConfig: { NetworkMode: net.name, Binds: [`${token}:/run/kt/token:ro`] },
    })
    await c.start()
    let logs = ''
    await waitFor(async () => {
      const raw = await c.logs({ stdout: true, stderr: true, follow: false }) as unknown as Buffer
      logs = demuxLogs(Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw)))
      return /relay data path/.test(logs)
    }, 30_000, 'the relay start line').catch((err: Error) => { throw new Error(`${err.message}; logs so far: ${logs}`) })
    t.match(logs, new RegExp(`relay data path: native splice \\(bundled linux-${arch}\\)`))
    t.match(logs, /"msg":"relay listening"/)
  })
}
