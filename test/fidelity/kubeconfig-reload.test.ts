// `up --kubeconfig FILE` whose token is rotated: the old token is refused
// (401) from then on; the user writes the new one into the same file, and
// `up` reconnects with it, without a restart and without closing listeners.
import t from 'tap'
import { writeFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { startApiServer } from '../../src/sim/apiserver.js'
import { startCli } from '../support/cli.js'
import { freePort, loopbackPool, scratchDir } from '../app/product-support.js'
import { waitFor } from '../support/wait.js'

const api = await startApiServer({ clusterName: 'reload', token: 'first' })
t.teardown(() => api.close())
api.addNode({ name: 'reload-worker', internalIP: '127.0.0.1' })
const svc = (name: string): object => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { type: 'LoadBalancer', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] } })
api.create(svc('before'))
const dir = await scratchDir(t)
const kubeconfig = join(dir, 'kubeconfig')
await writeFile(kubeconfig, api.kubeconfig(), { mode: 0o600 })

t.test('a rotated token written to the kubeconfig file is picked up', async (t) => {
  const up = await startCli(['up', '--kubeconfig', kubeconfig, '--no-docker', '--mode', 'direct', '--address', 'ip', '--ip-pool', loopbackPool(),
    '--http-port', String(await freePort()), '--https-port', String(await freePort()), '--state-dir', join(dir, 'state'), '--drain-timeout', '300'],
  { waitListening: 1, timeoutMs: 60_000, env: { KIND_TUNNEL_KUBECONFIG_POLL_MS: '100' } })
  t.teardown(() => up.stop('SIGKILL'))
  const ingress = (name: string): unknown[] => ((api.get('services', name, 'default') as { status?: { loadBalancer?: { ingress?: unknown[] } } }).status?.loadBalancer?.ingress ?? [])
  await waitFor(() => ingress('before').length > 0, 'the first Service served', 30_000)
  api.setToken('second')
  api.cutWatches()
  await waitFor(() => up.stderr.some((l) => l.includes('expired or was revoked')), 'the 401 said in the log', 30_000)
  const tmp = `${kubeconfig}.new`
  await writeFile(tmp, api.kubeconfig({ token: 'second' }), { mode: 0o600 })
  await rename(tmp, kubeconfig)
  await waitFor(() => up.stderr.some((l) => l.includes('the kubeconfig file changed')), 'the change noticed', 30_000)
  api.create(svc('after'))
  await waitFor(() => ingress('after').length > 0, 'a Service created after the rotation served', 30_000)
  t.pass('served with the new token')
})
