// Reaching the engine: DOCKER_HOST forms, the Podman fallback, and a clear
// KT_ERR_DOCKER_UNAVAILABLE (with the fix) when it is missing or stopped.
import t from 'tap'
import { createServer } from 'node:net'
import { resolveDockerEndpoint, connectDocker } from '../../src/docker/engine.js'
import { packTar, unpackTar, firstFile } from '../../src/docker/tar.js'
import { dockerAvailable } from '../support/docker.js'

const none = (): boolean => false

t.test('DOCKER_HOST wins, in each of its forms', async (t) => {
  t.match(resolveDockerEndpoint({ DOCKER_HOST: 'unix:///tmp/x.sock' }, none, 'linux'), { source: 'DOCKER_HOST', options: { socketPath: '/tmp/x.sock' } })
  t.match(resolveDockerEndpoint({ DOCKER_HOST: 'tcp://127.0.0.1:2375' }, none, 'linux'), { options: { host: '127.0.0.1', port: 2375, protocol: 'http' } })
  t.match(resolveDockerEndpoint({ DOCKER_HOST: '127.0.0.1:2375' }, none, 'linux'), { options: { host: '127.0.0.1', port: 2375 } })
  t.match(resolveDockerEndpoint({ DOCKER_HOST: 'tcp://[::1]:2375' }, none, 'linux'), { options: { host: '::1' } })
  t.match(resolveDockerEndpoint({ DOCKER_HOST: 'ssh://me@builder:2222' }, none, 'linux'), { options: { protocol: 'ssh', host: 'builder', port: 2222, username: 'me' } })
  t.match(resolveDockerEndpoint({ DOCKER_HOST: 'npipe:////./pipe/docker_engine' }, none, 'win32'), { options: { socketPath: '//./pipe/docker_engine' } })
  t.throws(() => resolveDockerEndpoint({ DOCKER_HOST: 'tcp://127.0.0.1:2376', DOCKER_CERT_PATH: '/nonexistent' }, none, 'linux'), { code: 'KT_ERR_DOCKER_UNAVAILABLE' })
  t.throws(() => resolveDockerEndpoint({ DOCKER_HOST: 'ftp://x' }, none, 'linux'), { code: 'KT_ERR_DOCKER_UNAVAILABLE' })
})

t.test('without DOCKER_HOST: docker.sock, else Podman under XDG_RUNTIME_DIR, else a clear error', async (t) => {
  const env = { HOME: '/home/u', XDG_RUNTIME_DIR: '/run/user/1000' }
  t.match(resolveDockerEndpoint(env, (p) => p === '/var/run/docker.sock', 'linux'), { source: 'default', options: { socketPath: '/var/run/docker.sock' } })
  t.match(resolveDockerEndpoint(env, (p) => p === '/run/user/1000/podman/podman.sock', 'linux'), { source: 'podman', options: { socketPath: '/run/user/1000/podman/podman.sock' } })
  t.match(resolveDockerEndpoint(env, (p) => p === '/home/u/.docker/run/docker.sock', 'darwin'), { source: 'docker-desktop' })
  t.throws(() => resolveDockerEndpoint(env, none, 'linux'), { code: 'KT_ERR_DOCKER_UNAVAILABLE', message: /DOCKER_HOST/ })
})

t.test('a missing socket and a closed TCP port both give KT_ERR_DOCKER_UNAVAILABLE quickly', async (t) => {
  await t.rejects(connectDocker({ env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock' }, timeoutMs: 2000 }), { code: 'KT_ERR_DOCKER_UNAVAILABLE', message: /start Docker/ })
  const srv = createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const port = (srv.address() as { port: number }).port
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  const started = Date.now()
  await t.rejects(connectDocker({ env: { DOCKER_HOST: `tcp://127.0.0.1:${port}` }, timeoutMs: 2000 }), { code: 'KT_ERR_DOCKER_UNAVAILABLE' })
  t.ok(Date.now() - started < 2500)
})

t.test('an engine that accepts but never answers: bounded by the timeout', async (t) => {
  const held: import('node:net').Socket[] = []
  const mute = createServer((s) => { held.push(s); s.on('error', () => {}) })
  await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { for (const s of held) s.destroy(); mute.close() })
  const started = Date.now()
  await t.rejects(connectDocker({ env: { DOCKER_HOST: `tcp://127.0.0.1:${(mute.address() as { port: number }).port}` }, timeoutMs: 400 }), { code: 'KT_ERR_DOCKER_UNAVAILABLE' })
  t.ok(Date.now() - started < 1500)
})

t.test('tar round trip, long names included', async (t) => {
  const long = `${'d'.repeat(90)}/${'e'.repeat(60)}/file.txt`
  const tar = packTar([{ name: 'dir', type: 'dir' }, { name: 'dir/a.txt', data: Buffer.from('hello') }, { name: long, data: Buffer.alloc(1000, 1) }])
  t.equal(tar.length % 512, 0)
  const out = unpackTar(tar)
  t.same(out.map((e) => [e.name, e.type, e.data.length]), [['dir/', 'dir', 0], ['dir/a.txt', 'file', 5], [long, 'file', 1000]])
  t.equal(firstFile(tar)?.data.toString(), 'hello')
  t.throws(() => unpackTar(tar.subarray(0, 600)), RangeError)
})

const skip = await dockerAvailable()
t.test('the real engine answers', { skip: skip ?? false }, async (t) => {
  const { endpoint } = await connectDocker({ timeoutMs: 5000 })
  t.ok(endpoint.text.length > 0)
})
