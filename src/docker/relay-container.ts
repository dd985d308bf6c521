// Lifecycle of the relay container: one per cluster, `kind-tunnel-relay-<cluster>`,
// on the cluster's network, non-root, all capabilities dropped, its single
// port published on 127.0.0.1 only with an ephemeral host port.
//
// The token is copied into the created container as a file (owner 65532, mode
// 0400) before it starts: never argv, never env (both show in `docker
// inspect`). A later run reads it back the same way, so a container whose
// image and config match is reused; anything else replaces it. Service ports
// are not part of the config (the allowlist is the NodePort range), so adding
// or removing Services never recreates the container.

import { randomBytes, createHash } from 'node:crypto'
import type Docker from 'dockerode'
import { KtError } from '../errors.js'
import { relayHandshake } from '../relay/client.js'
import { DEFAULT_PORTS, type PortPolicy } from '../relay/allow.js'
import { dockerMessage, dockerStatus, type DockerClient } from './engine.js'
import { readContainerFile, type KindCluster } from './discover.js'
import { ensureRelayImage, type RelayContextOptions } from './relay-image.js'
import { packTar } from './tar.js'

export const RELAY_LABEL = 'dev.kind-tunnel.relay'
export const RELAY_CONFIG_LABEL = 'dev.kind-tunnel.config'
export const RELAY_PORT = 7000
export const RELAY_USER = '65532:65532'
export const TOKEN_DIR = '/run/kind-tunnel'
export const TOKEN_PATH = `${TOKEN_DIR}/token`
const TOKEN_BYTES = 32 // 256 bits

export function relayName (cluster: string): string {
  return `kind-tunnel-relay-${cluster}`
}

/** The relay's allowlist: each node address as a host route. */
export function relayAllowList (cluster: KindCluster): string[] {
  const out: string[] = []
  for (const n of cluster.nodes) {
    if (n.role === 'external-load-balancer') continue
    if (n.ipv4 !== undefined) out.push(`${n.ipv4}/32`)
    if (n.ipv6 !== undefined) out.push(`${n.ipv6}/128`)
  }
  return out.sort()
}

export interface EnsureRelayOptions extends RelayContextOptions {
  readonly docker: DockerClient
  readonly cluster: KindCluster
  readonly ports?: PortPolicy
  /** The relay's dial deadline (default 5000). */
  readonly connectTimeoutMs?: number
  /** How long to wait for a new relay to answer a HELLO (default 15000). */
  readonly readyTimeoutMs?: number
  /** The relay's log level (default warn: refusals and failed dials only, so `docker logs` stays small). */
  readonly logLevel?: 'debug' | 'info' | 'warn' | 'error'
  /** Image build output and lifecycle steps, one line at a time. */
  readonly onProgress?: (line: string) => void
}

export interface RelayInfo {
  readonly cluster: string
  readonly name: string
  readonly containerId: string
  readonly image: string
  /** The published endpoint on the host: always 127.0.0.1. */
  readonly host: string
  readonly port: number
  readonly token: Buffer
  readonly allow: readonly string[]
  /** True when an existing container with the same image and config was kept. */
  readonly reused: boolean
}

function configHash (imageId: string, cluster: KindCluster, allow: readonly string[], ports: PortPolicy, connectTimeoutMs: number, logLevel: string): string {
  return createHash('sha256').update(JSON.stringify({
    v: 1, imageId, network: cluster.network, allow, ports: { min: ports.min, max: ports.max, extra: [...ports.extra].sort((a, b) => a - b) },
    connectTimeoutMs, logLevel, port: RELAY_PORT, user: RELAY_USER,
  })).digest('hex').slice(0, 32)
}

async function inspectOrUndefined (docker: DockerClient, name: string): Promise<Docker.ContainerInspectInfo | undefined> {
  try {
    return await docker.getContainer(name).inspect()
  } catch (err) {
    if (dockerStatus(err) === 404) return undefined
    throw new KtError('KT_ERR_DOCKER_UNAVAILABLE', `inspecting ${name} failed: ${dockerMessage(err)}`, { cause: err })
  }
}

function publishedPort (info: Docker.ContainerInspectInfo): number | undefined {
  const b = info.NetworkSettings?.Ports?.[`${RELAY_PORT}/tcp`]
  const p = b?.find((x) => x.HostIp === '127.0.0.1') ?? b?.[0]
  const n = Number(p?.HostPort)
  return Number.isInteger(n) && n > 0 ? n : undefined
}

/** Split Docker's multiplexed log stream (8-byte frame headers) into text. */
export function demuxLogs (buf: Buffer): string {
  let out = ''
  let at = 0
  while (at + 8 <= buf.length) {
    const len = buf.readUInt32BE(at + 4)
    if (buf[at] !== 1 && buf[at] !== 2) return buf.toString('utf8') // a TTY stream: not framed
    out += buf.subarray(at + 8, at + 8 + len).toString('utf8')
    at += 8 + len
  }
  return out
}

async function logTail (docker: DockerClient, id: string): Promise<string> {
  try {
    const raw = await docker.getContainer(id).logs({ stdout: true, stderr: true, tail: 20, follow: false }) as unknown as Buffer
    const text = demuxLogs(Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw)))
    const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '')
    return lines.find((l) => l.startsWith('error ')) ?? lines.slice(-3).join(' | ')
  } catch {
    return ''
  }
}

async function waitReady (host: string, port: number, token: Buffer, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  // Bounded: at most timeoutMs, polling every 100 ms, each attempt ≤ 1 s.
  while (Date.now() < deadline) {
    try {
      const s = await relayHandshake({ host, port, token }, Math.min(1000, Math.max(1, deadline - Date.now())))
      s.destroy()
      return
    } catch (err) {
      last = err
      if ((err as KtError).code === 'KT_ERR_RELAY_AUTH') throw err
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw last instanceof Error ? last : new KtError('KT_ERR_RELAY_DOWN', `relay on 127.0.0.1:${port} did not answer within ${timeoutMs} ms`)
}

async function removeQuietly (docker: DockerClient, id: string): Promise<void> {
  try {
    await docker.getContainer(id).remove({ force: true })
  } catch (err) {
    if (dockerStatus(err) !== 404 && dockerStatus(err) !== 409) throw err
  }
}

async function tryReuse (opts: EnsureRelayOptions, info: Docker.ContainerInspectInfo, imageId: string, hash: string, allow: readonly string[], readyMs: number): Promise<RelayInfo | undefined> {
  const { docker, cluster } = opts
  if (info.Config?.Labels?.[RELAY_CONFIG_LABEL] !== hash || info.Image !== imageId) return undefined
  let token: Buffer
  try {
    token = Buffer.from((await readContainerFile(docker, info.Id, TOKEN_PATH, 4096)).toString('utf8').trim(), 'hex')
  } catch {
    return undefined
  }
  if (token.length !== TOKEN_BYTES) return undefined
  let current = info
  if (current.State?.Running !== true) {
    try {
      await docker.getContainer(info.Id).start()
    } catch {
      return undefined
    }
    current = await docker.getContainer(info.Id).inspect()
  }
  const port = publishedPort(current)
  if (port === undefined) return undefined
  try {
    await waitReady('127.0.0.1', port, token, readyMs)
  } catch {
    return undefined
  }
  return { cluster: cluster.name, name: relayName(cluster.name), containerId: info.Id, image: imageId, host: '127.0.0.1', port, token, allow, reused: true }
}

/**
 * Make sure the cluster's relay runs with this build's image and config, and
 * return how to reach it. Idempotent: a matching container is reused (started
 * if stopped); a stale one is replaced. Waits until the relay answers a HELLO.
 */
export async function ensureRelay (opts: EnsureRelayOptions): Promise<RelayInfo> {
  const { docker, cluster } = opts
  const progress = opts.onProgress ?? (() => {})
  const allow = relayAllowList(cluster)
  if (allow.length === 0) {
    throw new KtError('KT_ERR_RELAY_CONTAINER', `kind cluster ${cluster.name} has no node with an address on network ${cluster.network}; is it running?`)
  }
  const ports = opts.ports ?? DEFAULT_PORTS
  const connectTimeoutMs = opts.connectTimeoutMs ?? 5000
  const readyMs = opts.readyTimeoutMs ?? 15_000
  const logLevel = opts.logLevel ?? 'warn'
  const image = await ensureRelayImage(opts)
  const hash = configHash(image.id, cluster, allow, ports, connectTimeoutMs, logLevel)
  const name = relayName(cluster.name)

  // Two attempts: a concurrent `up` may create the same name between our look and our create.
  for (let attempt = 0; attempt < 2; attempt++) {
    const existing = await inspectOrUndefined(docker, name)
    if (existing !== undefined) {
      const reused = await tryReuse(opts, existing, image.id, hash, allow, readyMs)
      if (reused !== undefined) {
        progress(`reusing ${name} on 127.0.0.1:${reused.port}`)
        return reused
      }
      progress(`replacing ${name}`)
      await removeQuietly(docker, existing.Id)
    }

    const token = randomBytes(TOKEN_BYTES)
    const cmd = [
      '--listen', `auto:${RELAY_PORT}`,
      '--token-file', TOKEN_PATH,
      ...allow.flatMap((a) => ['--allow', a]),
      '--ports', `${ports.min}-${ports.max}`,
      ...ports.extra.flatMap((p) => ['--extra-port', String(p)]),
      '--connect-timeout', String(connectTimeoutMs),
      '--log-level', logLevel,
    ]
    let container: Docker.Container
    try {
      container = await docker.createContainer({
        name,
        Image: image.tag,
        Cmd: cmd,
        User: RELAY_USER,
        Labels: { [RELAY_LABEL]: cluster.name, [RELAY_CONFIG_LABEL]: hash, 'dev.kind-tunnel.network': cluster.network },
        ExposedPorts: { [`${RELAY_PORT}/tcp`]: {} },
        HostConfig: {
          NetworkMode: cluster.network,
          // 127.0.0.1 only, ephemeral host port: nothing on 0.0.0.0.
          PortBindings: { [`${RELAY_PORT}/tcp`]: [{ HostIp: '127.0.0.1', HostPort: '' }] },
          CapDrop: ['ALL'],
          SecurityOpt: ['no-new-privileges'],
          PidsLimit: 64,
          RestartPolicy: { Name: 'no' },
        },
      })
    } catch (err) {
      if (dockerStatus(err) === 409 && attempt === 0) continue
      throw new KtError('KT_ERR_RELAY_CONTAINER', `creating ${name} failed: ${dockerMessage(err)}`, { cause: err })
    }
    try {
      await container.putArchive(packTar([
        { name: 'run', type: 'dir', mode: 0o755 },
        { name: 'run/kind-tunnel', type: 'dir', mode: 0o500, uid: 65532, gid: 65532 },
        { name: 'run/kind-tunnel/token', data: Buffer.from(token.toString('hex') + '\n'), mode: 0o400, uid: 65532, gid: 65532 },
      ]), { path: '/' })
      await container.start()
      const info = await container.inspect()
      const port = publishedPort(info)
      if (port === undefined) throw new KtError('KT_ERR_RELAY_CONTAINER', `${name} started without a published port`)
      progress(`started ${name} on 127.0.0.1:${port}`)
      try {
        await waitReady('127.0.0.1', port, token, readyMs)
      } catch (err) {
        const tail = await logTail(docker, container.id)
        throw new KtError('KT_ERR_RELAY_CONTAINER', `${name} did not become ready: ${(err as Error).message}${tail !== '' ? `; its log says: ${tail}` : ''}`, { cause: err })
      }
      return { cluster: cluster.name, name, containerId: container.id, image: image.id, host: '127.0.0.1', port, token, allow, reused: false }
    } catch (err) {
      await removeQuietly(docker, container.id).catch(() => {})
      if (err instanceof KtError) throw err
      throw new KtError('KT_ERR_RELAY_CONTAINER', `starting ${name} failed: ${dockerMessage(err)}`, { cause: err })
    }
  }
  throw new KtError('KT_ERR_RELAY_CONTAINER', `${name} keeps being recreated by someone else; is another kind-tunnel running?`)
}

/** The relay containers this engine has, with their cluster names. */
export async function listRelays (docker: DockerClient): Promise<Array<{ id: string, name: string, cluster: string, state: string }>> {
  const list = await docker.listContainers({ all: true, filters: { label: [RELAY_LABEL] } })
  return list.map((c) => ({ id: c.Id, name: (c.Names[0] ?? c.Id).replace(/^\//, ''), cluster: c.Labels?.[RELAY_LABEL] ?? '', state: c.State }))
}

/** Remove the cluster's relay container(s). Returns how many were removed; 0 is not an error. */
export async function removeRelay (docker: DockerClient, cluster: string): Promise<number> {
  const ids = new Set<string>()
  for (const r of await listRelays(docker)) if (r.cluster === cluster) ids.add(r.id)
  const byName = await inspectOrUndefined(docker, relayName(cluster))
  // Only a container we labelled: never remove a stranger's container that happens to share the name.
  if (byName !== undefined && byName.Config?.Labels?.[RELAY_LABEL] !== undefined) ids.add(byName.Id)
  for (const id of ids) await removeQuietly(docker, id)
  return ids.size
}
