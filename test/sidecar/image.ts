// The sidecar image for tests: the real one, built as users build it
// (`docker build -f docker/sidecar.Dockerfile .` from the repository root),
// offline, on the local base docker/build-base.sh --sdk makes. Its stages are
// cached on their own inputs (dependencies, C sources, TypeScript), so a
// rebuild after a code change redoes only what changed (issue 13).

import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '')
/** Kept from build to build: the engine's layer cache is what makes a rebuild cheap. */
export const SIDECAR_TEST_TAG = 'kind-tunnel-sidecar-test:build'

export interface BuiltImage {
  /** The image id (sha256:…), unaffected by another build retagging the tag meanwhile. */
  readonly id: string
  readonly base: string
  readonly buildMs: number
}

let built: Promise<BuiltImage> | undefined

export function sidecarImage (): Promise<BuiltImage> {
  built ??= (async () => {
    const base = (await run('sh', [`${repoRoot}/docker/build-base.sh`, '--sdk'], { timeout: 300_000 })).stdout.trim().split('\n').pop() as string
    const before = await run('docker', ['image', 'inspect', '--format', '{{.Id}}', SIDECAR_TEST_TAG], { timeout: 30_000 }).then((r) => r.stdout.trim(), () => '')
    const t0 = Date.now()
    const out = await run('docker', ['build', '-q', '-f', 'docker/sidecar.Dockerfile', '--build-arg', `BASE=${base}`, '-t', SIDECAR_TEST_TAG, '.'],
      { cwd: repoRoot, timeout: 900_000, maxBuffer: 64 << 20 })
    const id = out.stdout.trim().split('\n').pop() as string
    // The image this build replaced under the tag (its layers that the new one shares stay).
    if (before !== '' && before !== id) await run('docker', ['image', 'rm', before], { timeout: 60_000 }).catch(() => {})
    return { id, base, buildMs: Date.now() - t0 }
  })()
  return built
}
