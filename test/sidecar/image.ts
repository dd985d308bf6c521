// The sidecar's runtime image for tests, built without any registry: a root
// filesystem holding this machine's `node` and `ip` (and the libraries ldd
// lists), imported with `docker import`. The compiled kind-tunnel and its
// node_modules are bind-mounted read-only at run time (sidecarMounts), so a
// code change never rebuilds the image. Users build a self-contained image
// from node:22-slim instead: see docs/ci.md.

import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** The compiled tree this file belongs to (dist-<name>/) and the repository root. */
const distRoot = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '')
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '')

/** Read-only mounts that put kind-tunnel at /app (entry point /app/dist/src/cli/main.js). */
export function sidecarMounts (): string[] {
  // The native addon with its sources (the loader checks one against the other), as docker/sidecar.Dockerfile lays them.
  return [`${distRoot}/src:/app/dist/src:ro`, `${repoRoot}/node_modules:/app/node_modules:ro`, `${repoRoot}/package.json:/app/package.json:ro`,
    `${repoRoot}/src/dataplane/native:/app/src/dataplane/native:ro`]
}

const SCRIPT = `
set -eu
stage=$1; tag=$2
mkdir -p "$stage/usr/local/bin" "$stage/usr/sbin" "$stage/tmp" "$stage/etc" "$stage/run" "$stage/root" "$stage/app"
chmod 1777 "$stage/tmp"
node_bin=$(readlink -f "$(command -v node)")
ip_bin=$(readlink -f "$(command -v ip)")
cp "$node_bin" "$stage/usr/local/bin/node"
cp "$ip_bin" "$stage/usr/sbin/ip"
for bin in "$node_bin" "$ip_bin"; do
  for lib in $(ldd "$bin" | awk '/=> \\//{print $3} /^\\t\\//{print $1}'); do
    mkdir -p "$stage$(dirname "$lib")"
    cp -L "$lib" "$stage$lib"
  done
done
printf 'root:x:0:0:root:/root:/sbin/nologin\\n' > "$stage/etc/passwd"
printf 'root:x:0:\\n' > "$stage/etc/group"
tar -C "$stage" -cf - . | docker import \\
  --change 'ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/bin' \\
  --change 'WORKDIR /app' \\
  --change 'ENTRYPOINT ["/usr/local/bin/node", "/app/dist/src/cli/main.js"]' \\
  - "$tag" >/dev/null
`

let built: Promise<string> | undefined

export function sidecarImage (): Promise<string> {
  built ??= (async () => {
    const h = createHash('sha256').update(SCRIPT).update(process.version)
    for (const b of ['node', 'ip']) {
      const path = (await run('sh', ['-c', `readlink -f "$(command -v ${b})"`])).stdout.trim()
      h.update(readFileSync(path))
    }
    const tag = `kind-tunnel-sidecar-test:${h.digest('hex').slice(0, 16)}`
    try {
      await run('docker', ['image', 'inspect', tag], { timeout: 30_000 })
      return tag
    } catch {}
    const stage = (await run('mktemp', ['-d', '/tmp/kt-sidecar-img.XXXXXX'])).stdout.trim()
    try {
      await run('sh', ['-c', SCRIPT, 'sh', stage, tag], { timeout: 300_000 })
    } finally {
      await run('rm', ['-rf', stage]).catch(() => {})
    }
    return tag
  })()
  return built
}
