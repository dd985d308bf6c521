// Finding and reaching the container engine. This folder is the only importer
// of dockerode; other modules get a DockerClient handle and plain data.
//
// Order: DOCKER_HOST when set (unix://, npipe://, tcp:// with
// DOCKER_TLS_VERIFY/DOCKER_CERT_PATH, ssh://); otherwise the first socket that
// exists among the well-known ones: Docker Engine, Docker Desktop's per-user
// socket, rootless Podman ($XDG_RUNTIME_DIR/podman/podman.sock), colima,
// OrbStack, Rancher Desktop, rootful Podman.

import Docker from 'dockerode'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { KtError } from '../errors.js'

export type DockerClient = Docker

export type Env = Readonly<Record<string, string | undefined>>

export interface DockerEndpoint {
  /** For messages: `unix:///var/run/docker.sock`, `tcp://10.0.0.5:2376`. */
  readonly text: string
  /** Where the choice came from: `DOCKER_HOST`, `default`, `podman`, ... */
  readonly source: string
  /** `host: undefined` on socket endpoints: docker-modem merges its own DOCKER_HOST defaults underneath. */
  readonly options: Docker.DockerOptions
}

const FIX = 'start Docker (Docker Desktop, `sudo systemctl start docker`, `colima start`, `podman machine start`) or point DOCKER_HOST at a running engine'

function candidates (env: Env, platform: NodeJS.Platform): Array<{ path: string, source: string }> {
  if (platform === 'win32') return [{ path: '//./pipe/docker_engine', source: 'default' }]
  const home = env.HOME ?? ''
  const out = [{ path: '/var/run/docker.sock', source: 'default' }]
  if (home !== '') out.push({ path: join(home, '.docker', 'run', 'docker.sock'), source: 'docker-desktop' })
  if (env.XDG_RUNTIME_DIR !== undefined && env.XDG_RUNTIME_DIR !== '') out.push({ path: join(env.XDG_RUNTIME_DIR, 'podman', 'podman.sock'), source: 'podman' })
  if (home !== '') {
    out.push({ path: join(home, '.colima', 'default', 'docker.sock'), source: 'colima' })
    out.push({ path: join(home, '.orbstack', 'run', 'docker.sock'), source: 'orbstack' })
    out.push({ path: join(home, '.rd', 'docker.sock'), source: 'rancher-desktop' })
  }
  out.push({ path: '/run/podman/podman.sock', source: 'podman' })
  return out
}

/**
 * Decide how to reach the engine, without connecting. Pure apart from the
 * `exists` check, which tests replace.
 */
export function resolveDockerEndpoint (env: Env = process.env, exists: (p: string) => boolean = existsSync, platform: NodeJS.Platform = process.platform): DockerEndpoint {
  const dh = env.DOCKER_HOST
  if (dh !== undefined && dh !== '') {
    if (dh.startsWith('unix://')) {
      const p = dh.slice('unix://'.length)
      return { text: dh, source: 'DOCKER_HOST', options: { socketPath: p, host: undefined } }
    }
    if (dh.startsWith('npipe://')) {
      const p = dh.slice('npipe://'.length) || '//./pipe/docker_engine'
      return { text: dh, source: 'DOCKER_HOST', options: { socketPath: p, host: undefined } }
    }
    let url: URL
    try {
      url = new URL(dh.includes('://') ? dh : `tcp://${dh}`)
    } catch {
      throw new KtError('KT_ERR_DOCKER_UNAVAILABLE', `DOCKER_HOST=${JSON.stringify(dh)} is not unix://PATH, npipe://PATH, tcp://HOST:PORT or ssh://USER@HOST`)
    }
    const host = url.hostname.replace(/^\[|\]$/g, '')
    if (url.protocol === 'ssh:') {
      const o: Docker.DockerOptions = { protocol: 'ssh', host }
      if (url.port !== '') o.port = Number(url.port)
      if (url.username !== '') o.username = url.username
      if (env.SSH_AUTH_SOCK !== undefined) o.sshOptions = { agent: env.SSH_AUTH_SOCK }
      return { text: dh, source: 'DOCKER_HOST', options: o }
    }
    if (url.protocol !== 'tcp:' && url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new KtError('KT_ERR_DOCKER_UNAVAILABLE', `DOCKER_HOST=${JSON.stringify(dh)}: unsupported scheme ${url.protocol}`)
    }
    const port = url.port === '' ? 2375 : Number(url.port)
    const tls = env.DOCKER_TLS_VERIFY === '1' || port === 2376 || url.protocol === 'https:'
    const o: Docker.DockerOptions = { host, port, protocol: tls ? 'https' : 'http' }
    if (tls) {
      const dir = env.DOCKER_CERT_PATH ?? join(env.HOME ?? '', '.docker')
      try {
        o.ca = readFileSync(join(dir, 'ca.pem'))
        o.cert = readFileSync(join(dir, 'cert.pem'))
        o.key = readFileSync(join(dir, 'key.pem'))
      } catch (err) {
        throw new KtError('KT_ERR_DOCKER_UNAVAILABLE', `DOCKER_HOST=${dh} needs TLS but the certificates in ${dir} are unreadable (${(err as NodeJS.ErrnoException).code ?? 'error'}): set DOCKER_CERT_PATH`)
      }
    }
    return { text: dh, source: 'DOCKER_HOST', options: o }
  }
  const list = candidates(env, platform)
  for (const c of list) {
    if (platform === 'win32' || exists(c.path)) {
      return { text: platform === 'win32' ? `npipe://${c.path}` : `unix://${c.path}`, source: c.source, options: { socketPath: c.path, host: undefined } }
    }
  }
  throw new KtError('KT_ERR_DOCKER_UNAVAILABLE', `no container engine socket found (looked for ${list.map((c) => c.path).join(', ')}): ${FIX}`)
}

export interface DockerConnection {
  readonly docker: DockerClient
  readonly endpoint: DockerEndpoint
}

/**
 * Resolve the endpoint and ping it. Throws KT_ERR_DOCKER_UNAVAILABLE, with the
 * fix in the message, when the engine is missing, stopped or not answering.
 */
export async function connectDocker (opts: { env?: Env, timeoutMs?: number } = {}): Promise<DockerConnection> {
  const endpoint = resolveDockerEndpoint(opts.env ?? process.env)
  const timeoutMs = opts.timeoutMs ?? 5000
  // The ping gets its own client with a socket timeout, so a black-holed
  // DOCKER_HOST fails in bounded time; the long-lived client has none
  // (an image build can be quiet for a while).
  const pinger = new Docker({ ...endpoint.options, timeout: timeoutMs })
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      pinger.ping(),
      new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs) }),
    ])
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { statusCode?: number }
    const why = e.code ?? (e.statusCode !== undefined ? `HTTP ${e.statusCode}` : e.message)
    throw new KtError('KT_ERR_DOCKER_UNAVAILABLE', `cannot reach the container engine at ${endpoint.text} (${why}): ${FIX}`, { cause: err })
  } finally {
    if (timer !== undefined) clearTimeout(timer)
  }
  return { docker: new Docker(endpoint.options), endpoint }
}

/** Docker's HTTP status on an API error, when there is one. */
export function dockerStatus (err: unknown): number | undefined {
  if (err !== null && typeof err === 'object' && 'statusCode' in err && typeof err.statusCode === 'number') return err.statusCode
  return undefined
}

/** A Docker API error's own message, one line. */
export function dockerMessage (err: unknown): string {
  if (err !== null && typeof err === 'object') {
    const j = (err as { json?: unknown }).json
    if (j !== null && typeof j === 'object' && 'message' in j && typeof j.message === 'string') return j.message
    if (err instanceof Error) return err.message.split('\n')[0] ?? err.message
  }
  return String(err)
}

/** Collect a stream into one Buffer, refusing more than `max` bytes. */
export function collect (stream: NodeJS.ReadableStream, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    let n = 0
    stream.on('data', (c: Buffer) => {
      n += c.length
      if (n > max) {
        reject(new RangeError(`more than ${max} bytes`))
        ;(stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.()
        return
      }
      parts.push(c)
    })
    stream.on('end', () => resolve(Buffer.concat(parts)))
    stream.on('error', reject)
  })
}
