// Shared helpers for tests that use the real container engine: local images
// (no registry is reachable), kind-like test clusters made of busybox
// containers carrying kind's labels, and cleanup that runs even on failure.
//
// Every network and container a test makes carries the label
// dev.kind-tunnel.test=<prefix> and a name starting with the prefix; t.teardown
// removes them, and sweepStale() removes leftovers of killed runs (older than
// 15 minutes) so a crashed test never leaks for long.

import Docker from 'dockerode'
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Readable } from 'node:stream'
import { connect, createServer, type Server, type Socket, type AddressInfo } from 'node:net'
import { packTar } from '../../src/docker/tar.js'
import { KIND_CLUSTER_LABEL, KIND_ROLE_LABEL } from '../../src/docker/discover.js'
import { RELAY_LABEL } from '../../src/docker/relay-container.js'

const run = promisify(execFile)

export const TEST_LABEL = 'dev.kind-tunnel.test'
export const BUSYBOX = '/bin/busybox'
export const HTTP_PORT = 30080
export const ECHO_PORT = 30081

// The engine the tests use: DOCKER_HOST when set, else the default socket.
export const docker = new Docker()

export interface Tap {
  teardown (fn: () => unknown): void
  comment (...args: unknown[]): void
}

/** Skip (KT_SKIP_DOCKER=1) or fail loudly when the engine is not there: CI must start it. */
export async function dockerAvailable (): Promise<string | null> {
  if (process.env.KT_SKIP_DOCKER === '1') return 'KT_SKIP_DOCKER=1'
  try {
    await Promise.race([docker.ping(), new Promise((_r, j) => setTimeout(() => j(new Error('ping timed out')), 5000).unref())])
    return null
  } catch (err) {
    throw new Error(`these tests need a running Docker engine (start dockerd, or set KT_SKIP_DOCKER=1 to skip): ${(err as Error).message}`)
  }
}

/** Short and unique: it ends up in container names, kind-tunnel-relay-<prefix>-a. */
export function testPrefix (): string {
  return `kt-t${process.pid.toString(36)}${randomBytes(2).toString('hex')}`
}

async function removeContainer (id: string): Promise<void> {
  try {
    await docker.getContainer(id).remove({ force: true, v: true })
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode !== 404) throw err
  }
}

async function removeNetwork (id: string): Promise<void> {
  try {
    await docker.getNetwork(id).remove()
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode !== 404) throw err
  }
}

/** Remove everything a test with this prefix created: labelled containers, relays of its clusters, networks. */
export async function cleanupPrefix (prefix: string): Promise<void> {
  const all = await docker.listContainers({ all: true })
  for (const c of all) {
    const name = (c.Names[0] ?? '').replace(/^\//, '')
    const mine = c.Labels?.[TEST_LABEL] === prefix || name.startsWith(prefix) ||
      (c.Labels?.[RELAY_LABEL] ?? '').startsWith(prefix)
    if (mine) await removeContainer(c.Id)
  }
  const nets = await docker.listNetworks({ filters: { label: [`${TEST_LABEL}=${prefix}`] } })
  for (const n of nets) await removeNetwork(n.Id)
}

/** Leftovers from runs that were killed before their teardown: test containers and networks older than 15 minutes. */
export async function sweepStale (maxAgeMs = 15 * 60_000): Promise<void> {
  const cutoff = (Date.now() - maxAgeMs) / 1000
  const prefixes = new Set<string>()
  for (const c of await docker.listContainers({ all: true, filters: { label: [TEST_LABEL] } })) {
    if (c.Created < cutoff) prefixes.add(c.Labels?.[TEST_LABEL] ?? '')
  }
  for (const n of await docker.listNetworks({ filters: { label: [TEST_LABEL] } })) {
    if (Date.parse(n.Created ?? '') / 1000 < cutoff) prefixes.add(n.Labels?.[TEST_LABEL] ?? '')
  }
  prefixes.delete('')
  for (const p of prefixes) await cleanupPrefix(p)
}

const LOCK_DIR = '/tmp/kind-tunnel-docker-tests.lock'

/**
 * Docker test files run one at a time, across tap's parallel jobs: they share
 * the engine, its image tags (the base image is rebuilt by build-base.sh) and
 * the relay naming, and concurrent builds made reuse checks flaky. A lock
 * directory holds the owner's pid; a dead owner's lock is taken over.
 */
let lockHolds = 0

async function dockerLock (): Promise<() => void> {
  // Re-entrant within one process (several useScratch calls in one file).
  if (lockHolds > 0) {
    lockHolds++
    return () => { if (--lockHolds === 0) releaseLock() }
  }
  const deadline = Date.now() + 15 * 60_000
  for (;;) {
    try {
      mkdirSync(LOCK_DIR)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      if (lockIsStale()) {
        // Another waiter may be removing it too: either one wins, both retry.
        try { rmSync(LOCK_DIR, { recursive: true, force: true }) } catch {}
        continue
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for the docker test lock (${LOCK_DIR}, owner ${lockOwner() ?? 'unknown'})`)
      await new Promise((resolve) => setTimeout(resolve, 200))
      continue
    }
    // The pid appears whole or not at all (a reader never sees an empty file).
    const tmp = `${LOCK_DIR}/pid.${process.pid}`
    writeFileSync(tmp, String(process.pid))
    renameSync(tmp, `${LOCK_DIR}/pid`)
    break
  }
  lockHolds = 1
  process.once('exit', releaseLock)
  return () => { if (--lockHolds === 0) releaseLock() }
}

function lockOwner (dir = LOCK_DIR): number | undefined {
  try {
    const n = Number(readFileSync(`${dir}/pid`, 'utf8'))
    return Number.isInteger(n) && n > 0 ? n : undefined
  } catch { return undefined }
}

/**
 * A lock is stale when its owner is gone. Without a readable owner (a taker
 * between its mkdir and its pid, or one that died there), only after 30 s.
 */
export function lockIsStale (dir = LOCK_DIR): boolean {
  const owner = lockOwner(dir)
  if (owner !== undefined) {
    try { process.kill(owner, 0); return false } catch (err) { return (err as NodeJS.ErrnoException).code === 'ESRCH' }
  }
  try { return Date.now() - statSync(dir).mtimeMs > 30_000 } catch { return false }
}

function releaseLock (): void {
  try { if (readFileSync(`${LOCK_DIR}/pid`, 'utf8') === String(process.pid)) rmSync(LOCK_DIR, { recursive: true, force: true }) } catch {}
}

/** A scratch prefix whose resources are removed at teardown, pass or fail. Holds the docker test lock. */
export async function useScratch (t: Tap): Promise<string> {
  const release = await dockerLock()
  await sweepStale()
  const prefix = testPrefix()
  t.teardown(async () => {
    // Bounded: a Docker call that never answers (seen once under two busy
    // loops: the file's tests had passed, its teardown sat until tap's 300 s
    // timeout) fails here with what it was doing instead.
    let timer: NodeJS.Timeout | undefined
    const stuck = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`docker cleanup of ${prefix} did not finish in 90 s (dockerd not answering)`)), 90_000)
    })
    try { await Promise.race([cleanupPrefix(prefix), stuck]) } finally { clearTimeout(timer); release() }
  })
  return prefix
}

let busyboxTag: Promise<string> | undefined

/** A two-megabyte image: Debian's static busybox and a few applet links, via `docker import`. */
export function busyboxImage (): Promise<string> {
  busyboxTag ??= (async () => {
    const bin = readFileSync(BUSYBOX)
    const tag = `kind-tunnel-test-busybox:${createHash('sha256').update(bin).update('v2').digest('hex').slice(0, 12)}`
    try {
      await docker.getImage(tag).inspect()
      return tag
    } catch {}
    const applets = ['sh', 'cat', 'httpd', 'nc', 'sleep', 'mkdir', 'echo', 'ls']
    const tar = packTar([
      { name: 'bin', type: 'dir' },
      { name: 'bin/busybox', data: bin, mode: 0o755 },
      ...applets.map((a) => ({ name: `bin/${a}`, type: 'symlink' as const, link: 'busybox', mode: 0o777 })),
      { name: 'tmp', type: 'dir', mode: 0o1777 },
    ])
    const [repo, tg] = tag.split(':') as [string, string]
    const stream = await docker.importImage(Readable.from([tar]) as unknown as NodeJS.ReadableStream, { repo, tag: tg })
    await new Promise<void>((resolve, reject) => docker.modem.followProgress(stream, (err) => err !== null ? reject(err) : resolve()))
    return tag
  })()
  return busyboxTag
}

let baseTag: Promise<string> | undefined

/** The relay's base image for offline machines: docker/build-base.sh (node + its libraries). */
export function relayBaseImage (): Promise<string> {
  baseTag ??= (async () => {
    const script = fileURLToPath(new URL('../../../docker/build-base.sh', import.meta.url))
    const { stdout } = await run('sh', [script], { timeout: 120_000 })
    return stdout.trim().split('\n').pop() as string
  })()
  return baseTag
}

export interface TestNetwork {
  readonly name: string
  readonly id: string
  readonly subnet: string
  readonly gateway: string
}

export async function createNetwork (prefix: string, suffix = 'net'): Promise<TestNetwork> {
  const name = `${prefix}-${suffix}`
  const net = await docker.createNetwork({ Name: name, Driver: 'bridge', Labels: { [TEST_LABEL]: prefix }, CheckDuplicate: true })
  const info = await docker.getNetwork(net.id).inspect() as { IPAM?: { Config?: Array<{ Subnet?: string, Gateway?: string }> } }
  const cfg = info.IPAM?.Config?.[0]
  if (cfg?.Subnet === undefined || cfg.Gateway === undefined) throw new Error(`network ${name} has no IPv4 subnet`)
  return { name, id: net.id, subnet: cfg.Subnet, gateway: cfg.Gateway }
}

export interface TestNode {
  readonly name: string
  readonly id: string
  readonly role: string
  readonly ip: string
}

export interface TestCluster {
  readonly name: string
  readonly network: TestNetwork
  readonly nodes: readonly TestNode[]
  readonly adminConf: string
  /** Published host port of the control plane's 6443. */
  readonly apiPort: number
}

export function fakeAdminConf (cluster: string): string {
  return `apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: ${Buffer.from(`ca of ${cluster}`).toString('base64')}
    server: https://${cluster}-control-plane:6443
  name: kind-${cluster}
contexts:
- context:
    cluster: kind-${cluster}
    user: kind-${cluster}
  name: kind-${cluster}
current-context: kind-${cluster}
preferences: {}
users:
- name: kind-${cluster}
  user:
    client-certificate-data: ${Buffer.from('cert').toString('base64')}
    client-key-data: ${Buffer.from('key').toString('base64')}
`
}

/**
 * The node's program: index.html = node name, HTTP on 30080 (the "NodePort"),
 * an echo service on 30081 that returns every byte and closes after the
 * client's FIN (so it proves half-close), and on control planes HTTP on 6443,
 * or, with `api`, 6443 forwarded byte for byte to a real API server (TLS
 * end to end: the client checks the server's certificate for real).
 */
function nodeScript (name: string, controlPlane: boolean, api?: { host: string, port: number }): string {
  return [
    'mkdir -p /www',
    `echo ${name} > /www/index.html`,
    `httpd -p ${HTTP_PORT} -h /www`,
    ...(controlPlane ? [api === undefined ? 'httpd -p 6443 -h /www' : `{ nc -ll -p 6443 -e nc ${api.host} ${api.port} & }`] : []),
    `exec nc -ll -p ${ECHO_PORT} -e /bin/cat`,
  ].join(' && ')
}

export interface ClusterOptions {
  readonly prefix: string
  readonly name: string
  readonly network: TestNetwork
  readonly workers?: number
  /**
   * kind's `networking.apiServerAddress`: the HostIp 6443 is published on.
   * Default 127.0.0.1 (kind's default); `0.0.0.0` is the wildcard publish.
   */
  readonly apiServerAddress?: string
  /** Forward the control plane's 6443 here (a host listener on the network's gateway) instead of serving plain HTTP. */
  readonly apiForward?: { readonly host: string, readonly port: number }
  /** The control plane's /etc/kubernetes/admin.conf; default a fake one (fakeAdminConf). */
  readonly adminConf?: string
}

/** A kind-like cluster: `<name>-control-plane` (+ `<name>-worker`, `-worker2`...), kind's labels, admin.conf in place. */
export async function makeKindCluster (opts: ClusterOptions): Promise<TestCluster> {
  const image = await busyboxImage()
  const specs = [{ name: `${opts.name}-control-plane`, role: 'control-plane' }]
  for (let i = 1; i <= (opts.workers ?? 1); i++) specs.push({ name: `${opts.name}-worker${i === 1 ? '' : i}`, role: 'worker' })
  const adminConf = opts.adminConf ?? fakeAdminConf(opts.name)
  const nodes: TestNode[] = []
  let apiPort = 0
  for (const s of specs) {
    const cp = s.role === 'control-plane'
    const c = await docker.createContainer({
      name: s.name,
      Hostname: s.name,
      Image: image,
      Cmd: ['/bin/sh', '-c', nodeScript(s.name, cp, opts.apiForward)],
      Labels: { [KIND_CLUSTER_LABEL]: opts.name, [KIND_ROLE_LABEL]: s.role, [TEST_LABEL]: opts.prefix },
      ExposedPorts: cp ? { '6443/tcp': {} } : {},
      HostConfig: {
        NetworkMode: opts.network.name,
        ...(cp ? { PortBindings: { '6443/tcp': [{ HostIp: opts.apiServerAddress ?? '127.0.0.1', HostPort: '' }] } } : {}),
      },
    })
    if (cp) {
      await c.putArchive(packTar([
        { name: 'etc', type: 'dir' },
        { name: 'etc/kubernetes', type: 'dir' },
        { name: 'etc/kubernetes/admin.conf', data: Buffer.from(adminConf), mode: 0o600 },
      ]), { path: '/' })
    }
    await c.start()
    const info = await c.inspect()
    const ip = info.NetworkSettings.Networks[opts.network.name]?.IPAddress ?? ''
    if (cp) apiPort = Number(info.NetworkSettings.Ports['6443/tcp']?.[0]?.HostPort)
    nodes.push({ name: s.name, id: c.id, role: s.role, ip })
  }
  // Bounded wait until every node serves its NodePort.
  for (const n of nodes) await waitHttp(n.ip, HTTP_PORT, 5000)
  return { name: opts.name, network: opts.network, nodes, adminConf, apiPort }
}

/** A container on the network without kind's labels: discovery must ignore it. */
export async function makeStranger (prefix: string, network: TestNetwork): Promise<string> {
  const c = await docker.createContainer({
    name: `${prefix}-stranger`,
    Image: await busyboxImage(),
    Cmd: ['/bin/sh', '-c', `exec httpd -f -p ${HTTP_PORT} -h /`],
    Labels: { [TEST_LABEL]: prefix, 'io.x-k8s.kind.unrelated': 'x' },
    HostConfig: { NetworkMode: network.name },
  })
  await c.start()
  return c.id
}

async function waitHttp (host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (let i = 0; Date.now() < deadline && i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host, port })
      const timer = setTimeout(() => { s.destroy(); resolve(false) }, 500)
      s.once('connect', () => { clearTimeout(timer); s.destroy(); resolve(true) })
      s.once('error', () => { clearTimeout(timer); resolve(false) })
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`${host}:${port} did not answer within ${timeoutMs} ms`)
}

/** A TCP server on the host side of a test network (its gateway address): reachable from containers and from the host, never from outside. */
export async function listenOnGateway (net: TestNetwork, onConn: (s: Socket) => void): Promise<{ server: Server, host: string, port: number, close: () => Promise<void> }> {
  const open = new Set<Socket>()
  const server = createServer({ allowHalfOpen: true }, (s) => {
    open.add(s)
    s.once('close', () => open.delete(s))
    onConn(s)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: net.gateway, port: 0 }, () => { server.removeListener('error', reject); resolve() })
  })
  const close = (): Promise<void> => new Promise((resolve) => {
    for (const s of open) s.destroy()
    server.close(() => resolve())
  })
  return { server, host: net.gateway, port: (server.address() as AddressInfo).port, close }
}

/** Read everything until the peer's FIN; bounded by `timeoutMs`. */
export function readAll (s: Socket, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    const timer = setTimeout(() => reject(new Error(`no FIN within ${timeoutMs} ms`)), timeoutMs)
    s.on('data', (c: Buffer) => parts.push(c))
    s.once('end', () => { clearTimeout(timer); resolve(Buffer.concat(parts)) })
    s.once('error', (err) => { clearTimeout(timer); reject(err) })
    s.resume()
  })
}

/** An HTTP/1.0 GET over an already connected socket; resolves with the body. */
export async function httpGet (s: Socket, host = 'node'): Promise<string> {
  s.write(`GET / HTTP/1.0\r\nHost: ${host}\r\n\r\n`)
  const res = (await readAll(s)).toString('latin1')
  s.destroy()
  const i = res.indexOf('\r\n\r\n')
  return i < 0 ? '' : res.slice(i + 4)
}
