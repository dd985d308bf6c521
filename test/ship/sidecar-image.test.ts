// Issue 13: docker/sidecar.Dockerfile builds offline on a local base
// (docker/build-base.sh --sdk) from the checkout, compiles the native addon in
// the image, and the image's doctor says native. Building it takes minutes on
// a loaded 2-core machine, so it runs with KT_TEST_SIDECAR_IMAGE=1 only; the
// lane itself is proven by test/sidecar (its `status` shows `native lane`).
import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { dockerAvailable, docker } from '../support/docker.js'
import { repoRoot } from './pack.js'

const run = promisify(execFile)

if (process.env['KT_TEST_SIDECAR_IMAGE'] !== '1') t.plan(0, 'building the sidecar image takes minutes: KT_TEST_SIDECAR_IMAGE=1 runs it')
else {
  const skip = await dockerAvailable()
  if (skip !== null) t.plan(0, skip)
  else {
    t.test('the sidecar image builds offline and carries the native addon', async (t) => {
      const base = (await run('sh', [`${repoRoot}/docker/build-base.sh`, '--sdk'], { timeout: 300_000 })).stdout.trim().split('\n').pop() as string
      const tag = `kind-tunnel-sidecar-shiptest:${process.pid}`
      t.teardown(() => docker.getImage(tag).remove({ force: true }).catch(() => {}))
      await run('docker', ['build', '-q', '-f', 'docker/sidecar.Dockerfile', '--build-arg', `BASE=${base}`, '-t', tag, '.'], { cwd: repoRoot, timeout: 900_000, maxBuffer: 64 << 20 })
      const { stdout } = await run('docker', ['run', '--rm', '--network', 'none', tag, 'doctor', '--no-docker'], { timeout: 60_000 })
      t.match(stdout, /^ok {3}dataplane: native \(local build\)$/m)
    })
  }
}
