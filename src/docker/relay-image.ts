// The relay image, built locally from docker/Dockerfile: no registry of ours
// is involved, and the image holds exactly the compiled relay entry point and
// the modules it imports (found by following its relative imports), plus the
// native splice addon for the engine's architecture when this install has it,
// so a change to any of them gives a new content-addressed tag.

import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join, normalize, posix } from 'node:path'
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { KtError } from '../errors.js'
import { dockerMessage, dockerStatus, type DockerClient } from './engine.js'
import { packTar, type TarEntry } from './tar.js'
import { ADDON_FILE, addonForTag, archOfEngine } from '../dataplane/native/locate.js'

export const RELAY_IMAGE_REPO = 'kind-tunnel-relay'
/** No shell, nonroot (65532), Node 22. Offline machines pass their own (docker/build-base.sh). */
export const DEFAULT_RELAY_BASE = 'gcr.io/distroless/nodejs22-debian12:nonroot'
export const RELAY_ENTRY = 'dist/src/relay/main.js'

export interface RelayBuildContext {
  /** `kind-tunnel-relay:<hash>` */
  readonly tag: string
  readonly hash: string
  readonly files: readonly string[]
  readonly tar: Buffer
  /** The native splice addon the image carries (`linux-x64`, ...), or undefined: the relay splices in JS. */
  readonly addon: string | undefined
}

/** Bumped when the image's layout changes, so that images built by older versions are rebuilt, not reused. */
const RELAY_IMAGE_LAYOUT = 'relay-image-v3 (the repository layout; native addon beside the loader)'

/** The directory holding `src/` compiled (dist/ when installed; dist-<name>/ in a dev build). */
function defaultDistRoot (): string {
  return fileURLToPath(new URL('../../', import.meta.url))
}

const IMPORT_RE = /(?:^|[\n;])\s*(?:import|export)\s+(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/g

/** Relative module paths (from distRoot) reachable from the relay entry point. */
export function relayModuleClosure (distRoot: string, entry = 'src/relay/main.js'): string[] {
  const seen = new Set<string>()
  const todo = [posix.normalize(entry)]
  while (todo.length > 0) {
    const rel = todo.pop() as string
    if (seen.has(rel)) continue
    seen.add(rel)
    let code: string
    try {
      code = readFileSync(join(distRoot, rel), 'utf8')
    } catch (err) {
      throw new KtError('KT_ERR_RELAY_IMAGE', `relay image: cannot read ${join(distRoot, rel)} (${(err as NodeJS.ErrnoException).code ?? 'error'}); is kind-tunnel built?`, { cause: err })
    }
    for (const m of code.matchAll(IMPORT_RE)) {
      const spec = m[1] as string
      if (spec.startsWith('node:')) continue
      if (!spec.startsWith('.')) {
        // The image carries no node_modules; the relay must stay dependency-free.
        throw new KtError('KT_ERR_RELAY_IMAGE', `relay image: ${rel} imports the package ${JSON.stringify(spec)}; the relay may import only node: builtins and relative modules`)
      }
      todo.push(posix.normalize(posix.join(posix.dirname(rel), spec)))
    }
  }
  return [...seen].sort()
}

export interface RelayContextOptions {
  readonly base?: string
  /** Default: the compiled tree this module belongs to. */
  readonly distRoot?: string
  /** Default: docker/Dockerfile next to the dist root. */
  readonly dockerfile?: string
  /** The engine's architecture as Node names it (x64, arm64): the addon for it goes in. Default: this machine's. */
  readonly arch?: string
}

export function relayBuildContext (opts: RelayContextOptions = {}): RelayBuildContext {
  const distRoot = opts.distRoot ?? defaultDistRoot()
  const dockerfilePath = opts.dockerfile ?? join(dirname(normalize(distRoot)), 'docker', 'Dockerfile')
  let dockerfile: Buffer
  try {
    dockerfile = readFileSync(dockerfilePath)
  } catch (err) {
    throw new KtError('KT_ERR_RELAY_IMAGE', `relay image: cannot read ${dockerfilePath} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err })
  }
  const modules = relayModuleClosure(distRoot)
  const pkg = Buffer.from(JSON.stringify({ name: 'kind-tunnel-relay', private: true, type: 'module' }) + '\n')
  const entries: TarEntry[] = [
    { name: 'Dockerfile', data: dockerfile },
    { name: 'package.json', data: pkg },
    ...modules.map((m) => ({ name: `dist/${m}`, data: readFileSync(join(distRoot, m)) })),
  ]
  // The addon for the engine's architecture, where the loader looks first in an image without sources.
  const addonTag = `linux-${opts.arch ?? process.arch}`
  const addon = addonForTag(dirname(normalize(distRoot)), addonTag)
  // The repository's layout, so that docker/Dockerfile also builds from a checkout's root.
  if (addon !== undefined) entries.push({ name: `src/dataplane/native/build/Release/${ADDON_FILE}`, data: readFileSync(addon) })
  const h = createHash('sha256')
  h.update(`${RELAY_IMAGE_LAYOUT}\0base\0${opts.base ?? DEFAULT_RELAY_BASE}\0`)
  for (const e of entries) h.update(`${e.name}\0${(e.data as Buffer).length}\0`).update(e.data as Buffer)
  const hash = h.digest('hex')
  return { tag: `${RELAY_IMAGE_REPO}:${hash.slice(0, 16)}`, hash, files: entries.map((e) => e.name), tar: packTar(entries), addon: addon !== undefined ? addonTag : undefined }
}

export interface EnsureImageOptions extends RelayContextOptions {
  readonly docker: DockerClient
  /** Build output, one line at a time (`Step 2/9 : ...`). */
  readonly onProgress?: (line: string) => void
}

export interface RelayImage {
  readonly tag: string
  readonly id: string
  readonly built: boolean
}

interface BuildEvent {
  stream?: string
  status?: string
  progress?: string
  error?: string
  errorDetail?: { message?: string }
  aux?: { ID?: string }
}

/** The relay image for this build of kind-tunnel: reused when present, built otherwise. */
export async function ensureRelayImage (opts: EnsureImageOptions): Promise<RelayImage> {
  const { docker } = opts
  let arch = opts.arch
  if (arch === undefined) {
    try {
      arch = archOfEngine(String((await docker.info() as { Architecture?: string }).Architecture ?? process.arch))
    } catch (err) {
      throw new KtError('KT_ERR_DOCKER_UNAVAILABLE', `docker info failed: ${dockerMessage(err)}`, { cause: err })
    }
  }
  const ctx = relayBuildContext({ ...opts, arch })
  try {
    const info = await docker.getImage(ctx.tag).inspect()
    return { tag: ctx.tag, id: info.Id, built: false }
  } catch (err) {
    if (dockerStatus(err) !== 404) throw new KtError('KT_ERR_DOCKER_UNAVAILABLE', `inspecting ${ctx.tag} failed: ${dockerMessage(err)}`, { cause: err })
  }
  const base = opts.base ?? DEFAULT_RELAY_BASE
  const progress = opts.onProgress ?? (() => {})
  progress(`building ${ctx.tag} from ${base}`)
  let stream: NodeJS.ReadableStream
  try {
    stream = await docker.buildImage(Readable.from([ctx.tar]), {
      t: ctx.tag,
      buildargs: { BASE: base },
      labels: { 'dev.kind-tunnel.relay-image': ctx.hash },
      rm: true,
      forcerm: true,
    })
  } catch (err) {
    throw new KtError('KT_ERR_RELAY_IMAGE', `building the relay image failed: ${dockerMessage(err)}`, { cause: err })
  }
  let failure: string | undefined
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null) => {
      if (err !== null) reject(new KtError('KT_ERR_RELAY_IMAGE', `building the relay image failed: ${dockerMessage(err)}`, { cause: err }))
      else resolve()
    }, (ev: BuildEvent) => {
      if (ev.error !== undefined) { failure = ev.errorDetail?.message ?? ev.error; return }
      const line = (ev.stream ?? (ev.status !== undefined ? `${ev.status}${ev.progress !== undefined ? ' ' + ev.progress : ''}` : '')).trimEnd()
      if (line !== '') for (const l of line.split('\n')) progress(l)
    })
  })
  if (failure !== undefined) {
    const hint = /pull|not found|manifest|repository|dial tcp|lookup/i.test(failure)
      ? ` (the base image ${base} must be present or pullable; offline, build one with docker/build-base.sh and pass it as the base)`
      : ''
    throw new KtError('KT_ERR_RELAY_IMAGE', `building the relay image failed: ${failure.trim()}${hint}`)
  }
  const info = await docker.getImage(ctx.tag).inspect()
  progress(`built ${ctx.tag} (${ctx.addon !== undefined ? `native splice for ${ctx.addon}` : `JS splice: no addon for linux-${arch} in this install`})`)
  return { tag: ctx.tag, id: info.Id, built: true }
}
