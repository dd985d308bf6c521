// Sidecar mode in the real Docker engine, as in CI:
//   docker run --network <kind net> --cap-add NET_ADMIN -v kubeconfig:/kubeconfig <image> up --mode sidecar
// A kind-like test cluster (busybox nodes serving HTTP on NodePort 30080), the
// test API server reachable from the containers through a forwarder on the
// test network's gateway (a host address the test owns), and a client
// container on the same network fetching the LB IP, which the sidecar took
// from the top of the subnet and added to its own eth0.
//
// The image is the real one, built from docker/sidecar.Dockerfile offline on
// the local base (test/sidecar/image.ts): its `doctor` says the addon is
// there, and its `status` says the listeners that carry the client's bytes
// run on the native lane (issue 13).
import t from 'tap'
import { readFile, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { startApiServer } from '../../src/sim/apiserver.js'
import { renderKubeconfig } from '../../src/sim/kubeconfig.js'
import { FINALIZER } from '../../src/routing/compute.js'
import { demuxLogs } from '../../src/docker/relay-container.js'
import { topOfSubnet } from '../../src/app/addresses.js'
import { cidrContainsIp, parseCidr } from '../../src/routing/cidr.js'
import {
  busyboxImage, createNetwork, docker, dockerAvailable, HTTP_PORT, listenOnGateway, makeKindCluster, TEST_LABEL, useScratch,
} from '../support/docker.js'
import { curl, scratchDir, waitFor } from '../app/product-support.js'
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { sidecarImage } from './image.js'
import { udpClient } from '../udp/support.js'

interface Svc { metadata: { finalizers?: string[] }, status?: { loadBalancer?: { ingress?: Array<{ ip?: string }> } } }

async function exec (id: string, cmd: string[]): Promise<void> {
  const e = await docker.getContainer(id).exec({ Cmd: cmd, AttachStdout: false, AttachStderr: false })
  // Detached, but the engine keeps the response stream open: close our end.
  const stream = await e.start({ Detach: true }) as unknown as { destroy?: () => void } | undefined
  stream?.destroy?.()
}

/** Run a one-shot container on the network; resolves with its stdout. */
async function oneShot (prefix: string, network: string, cmd: string[], timeoutMs = 20_000): Promise<{ code: number, out: string }> {
  const c = await docker.createContainer({ Image: await busyboxImage(), Cmd: cmd, Labels: { [TEST_LABEL]: prefix }, HostConfig: { NetworkMode: network } })
  await c.start()
  let timer: NodeJS.Timeout | undefined
  const res = await Promise.race([c.wait() as Promise<{ StatusCode: number }>, new Promise<{ StatusCode: number }>((resolve) => { timer = setTimeout(() => resolve({ StatusCode: -1 }), timeoutMs) })])
  clearTimeout(timer)
  const logs = await c.logs({ stdout: true, stderr: true, follow: false }) as unknown as Buffer
  await c.remove({ force: true }).catch(() => {})
  return { code: res.StatusCode, out: demuxLogs(Buffer.isBuffer(logs) ? logs : Buffer.from(String(logs))) }
}

const skip = await dockerAvailable()
if (skip !== null) t.plan(0, skip)
else {
  // The image is built before this file takes the Docker test lock: only this
  // file builds it (and its SDK base, under their own tags), and a cold build
  // takes a minute that the other Docker test files need not wait through.
  const built = await sidecarImage()
  const prefix = await useScratch(t)
  const dir = await scratchDir(t)
  const net = await createNetwork(prefix)
  const image = built.id
  t.comment(`sidecar image ${image.slice(7, 19)} built from docker/sidecar.Dockerfile on ${built.base} in ${(built.buildMs / 1000).toFixed(1)} s`)
  const cluster = await makeKindCluster({ prefix, name: `${prefix}-k`, network: net, workers: 1 })
  // kube-proxy's health endpoint on every node, for the sidecar's active checks.
  for (const n of cluster.nodes) await exec(n.id, ['/bin/sh', '-c', 'mkdir -p /hz && echo ok > /hz/healthz && httpd -p 10256 -h /hz'])
  // A real UDP server on every node's NodePort 30053 (in its network namespace), answering with the node's name.
  for (const n of cluster.nodes) {
    const pid = (await docker.getContainer(n.id).inspect()).State.Pid
    const c = spawn('nsenter', ['-t', String(pid), '-n', process.execPath, '-e',
      `const s = require('node:dgram').createSocket('udp4'); s.on('message', (m, r) => s.send(Buffer.from(${JSON.stringify(n.name)} + ':' + m), r.port, r.address)); s.bind(30053, ${JSON.stringify(n.ip)})`], { stdio: 'ignore' })
    t.teardown(() => { c.kill('SIGKILL') })
  }

  // The test API server on loopback, reachable from the network through its gateway.
  const api = await startApiServer({ clusterName: cluster.name })
  t.teardown(() => api.close())
  const fwd = await listenOnGateway(net, (s) => {
    const up = connect({ host: '127.0.0.1', port: api.port })
    s.pipe(up).pipe(s)
    s.on('error', () => up.destroy())
    up.on('error', () => s.destroy())
  })
  t.teardown(() => fwd.close())
  for (const n of cluster.nodes) api.addNode({ name: n.name, internalIP: n.ip, ...(n.role === 'control-plane' ? { roles: ['control-plane'] } : {}) })
  api.create({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web', namespace: 'default' },
    spec: { type: 'LoadBalancer', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 80, nodePort: HTTP_PORT, protocol: 'TCP' }, { name: 'dns', port: 53, targetPort: 53, nodePort: 30053, protocol: 'UDP' }] },
  })
  const kubeconfig = join(dir, 'kubeconfig')
  await writeFile(kubeconfig, renderKubeconfig({ server: `http://${net.gateway}:${fwd.port}`, name: `kind-${cluster.name}` }), { mode: 0o644 })

  const sidecar = await docker.createContainer({
    name: `${prefix}-sidecar`,
    Image: image,
    Cmd: ['up', '--mode', 'sidecar', '--kubeconfig', '/kubeconfig', '--no-docker', '--json-logs', '--drain-timeout', '500'],
    Labels: { [TEST_LABEL]: prefix },
    HostConfig: { NetworkMode: net.name, CapAdd: ['NET_ADMIN'], Binds: [`${kubeconfig}:/kubeconfig:ro`] },
  })
  await sidecar.start()
  const svc = (): Svc => api.get('services', 'web', 'default') as unknown as Svc
  const lbIp = (): string | undefined => svc().status?.loadBalancer?.ingress?.[0]?.ip
  const logs = async (): Promise<string> => demuxLogs(await sidecar.logs({ stdout: true, stderr: true, follow: false }) as unknown as Buffer)
  try {
    await waitFor(() => lbIp() !== undefined, 'the LB IP in the Service status', 30_000)
  } catch (err) {
    t.comment(await logs())
    throw err
  }
  const ip = lbIp() as string
  const pool = topOfSubnet(parseCidr(net.subnet))

  t.test('.dockerignore leaves out only development packages (the lockfile marks each `dev`)', async (t) => {
    const root = new URL('../../../', import.meta.url)
    const lock = JSON.parse(await readFile(new URL('package-lock.json', root), 'utf8')) as { packages: Record<string, { dev?: boolean }> }
    const ignored = (await readFile(new URL('.dockerignore', root), 'utf8')).split('\n').map((l) => l.trim()).filter((l) => l.startsWith('node_modules/'))
    t.ok(ignored.length > 0, 'some development packages are left out')
    for (const dir of ignored) {
      const under = Object.entries(lock.packages).filter(([p]) => p === dir || p.startsWith(`${dir}/`))
      t.ok(under.length > 0 && under.every(([, v]) => v.dev === true), `${dir}: ${under.filter(([, v]) => v.dev !== true).map(([p]) => p).join(', ') || 'dev only'}`)
    }
  })

  t.test('the image carries the native addon it compiled: doctor says native', async (t) => {
    const { stdout } = await promisify(execFile)('docker', ['run', '--rm', '--network', 'none', '--label', `${TEST_LABEL}=${prefix}`, image, 'doctor', '--no-docker'], { timeout: 60_000 })
    t.match(stdout, /^ok {3}dataplane: native \(local build\)$/m)
  })

  t.test('the LB IP comes from the top of the kind subnet and is on the sidecar\'s eth0', async (t) => {
    t.ok(cidrContainsIp(pool, ip), `${ip} is in ${pool.text}, the top of ${net.subnet}`)
    t.ok((svc().metadata.finalizers ?? []).includes(FINALIZER))
    const out = await logs()
    t.match(out, /sidecar: LB IPs go on the container interface/)
    t.match(out, new RegExp(`listening ${ip.replace(/\./g, '\\.')}:80`))
  })

  t.test('a client container on the same network reaches the Service at the LB IP', async (t) => {
    const seen = new Set<string>()
    for (let i = 0; i < 4; i++) {
      // Raw HTTP/1.0 through busybox nc (its static wget needs a resolver the image lacks).
      const r = await oneShot(prefix, net.name, ['/bin/sh', '-c', `printf 'GET / HTTP/1.0\\r\\nHost: web\\r\\n\\r\\n' | nc -w 5 ${ip} 80`])
      t.equal(r.code, 0, r.out)
      t.match(r.out, /^HTTP\/1\.[01] 200 /)
      seen.add(r.out.slice(r.out.indexOf('\r\n\r\n') + 4).trim())
    }
    // kind (and the test API server) label control planes exclude-from-external-load-balancers.
    t.same([...seen], [`${cluster.name}-worker`], 'the worker answered')
  })

  t.test('the host (the CI runner) reaches it over the bridge too', async (t) => {
    const r = await curl(`http://${ip}/`)
    t.equal(r.code, 0, r.stderr)
    t.equal(r.stdout.trim(), `${cluster.name}-worker`)
  })

  t.test('UDP: the Service\'s UDP port answers at the LB IP, from the host over the bridge', async (t) => {
    // Bound to the host's address on the test network (never a wildcard).
    const c = await udpClient(net.gateway)
    t.teardown(() => c.close())
    await waitFor(async () => { c.send('q', 53, ip); return await c.waitCount(1, 500).then(() => true, () => false) }, 'a UDP answer from the sidecar', 15_000)
    t.equal(c.inbox[0]?.toString(), `${cluster.name}-worker:q`, 'the worker answered through the sidecar')
    t.match(await logs(), new RegExp(`listening ${ip.replace(/\./g, '\\.')}:53/udp`))
  })

  t.test('its listeners run on the native lane (status), the addon being there', async (t) => {
    const e = await docker.getContainer(sidecar.id).exec({ Cmd: ['node', '/app/dist/src/cli/main.js', 'status'], AttachStdout: true, AttachStderr: true })
    const stream = await e.start({ hijack: true, stdin: false }) as unknown as NodeJS.ReadableStream
    const chunks: Buffer[] = []
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (d: Buffer) => chunks.push(d))
      stream.once('end', () => resolve())
      stream.once('error', reject)
    })
    const out = demuxLogs(Buffer.concat(chunks))
    t.match(out, /native lane/, out)
    t.notMatch(out, /\bjs \(/, 'no listener on the JS path')
  })

  t.test('docker stop: statuses and finalizers are undone', async (t) => {
    await sidecar.stop({ t: 20 })
    const info = await sidecar.inspect()
    t.equal(info.State.ExitCode, 0, await logs())
    t.equal(lbIp(), undefined, 'no status entry')
    t.notOk((svc().metadata.finalizers ?? []).includes(FINALIZER), 'no finalizer')
  })
}

