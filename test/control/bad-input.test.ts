// Bad input fails at once with a one-line error and a stable code: an
// unreadable kubeconfig, bad routing options, refused credentials.

import t from 'tap'
import { startController } from '../../src/control/controller.js'
import { silentLogger } from '../../src/observe/logger.js'
import { Registry } from '../../src/observe/metrics.js'
import { startApiServer } from '../../src/sim/apiserver.js'

const base = {
  cluster: 'sim',
  routing: { mode: 'ip' as const, ipPool: '127.250.0.0/24' },
  sink: { apply: async () => ({ version: 0, bound: [], kept: [], removed: [], failed: [] }) },
  logger: silentLogger(),
  metrics: new Registry(),
}

t.test('an unreadable kubeconfig is KT_ERR_KUBECONFIG, one line', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['/nonexistent/kind-tunnel/kubeconfig', /cannot read the kubeconfig \/nonexistent\/kind-tunnel\/kubeconfig: no such file/],
    ['apiVersion: v1\nclusters: [\n', /cannot read the kubeconfig: /],
    ['apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n', /no current context/],
    ['apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: ftp://127.0.0.1:1\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {}\n', /neither http nor https/],
  ]
  for (const [kubeconfig, message] of cases) {
    const err = await startController({ ...base, kubeconfig }).then(() => undefined, (e: unknown) => e as Error & { code?: string })
    t.equal(err?.code, 'KT_ERR_KUBECONFIG', kubeconfig.slice(0, 40))
    t.match(err?.message, message)
    t.notMatch(err?.message, /\n/, 'one line')
  }
})

t.test('bad routing options fail before anything starts', async (t) => {
  const api = await startApiServer()
  t.teardown(() => api.close())
  await t.rejects(startController({ ...base, kubeconfig: api.kubeconfig(), routing: { mode: 'ip', ipPool: '10.0.0.0/33' } }), { code: 'KT_ERR_INVALID_CIDR' })
  await t.rejects(startController({ ...base, kubeconfig: api.kubeconfig(), routing: { mode: 'hostname', listenHost: '0.0.0.0' } }), { code: 'KT_ERR_WILDCARD_BIND' })
  t.equal(api.watchCount(), 0, 'no watch was opened')
})

t.test('a refused token (401) rejects synced with KT_ERR_KUBE_FORBIDDEN', async (t) => {
  const api = await startApiServer({ token: 'right-token' })
  t.teardown(() => api.close())
  const ctl = await startController({ ...base, kubeconfig: api.kubeconfig({ token: 'wrong-token' }), informers: { backoff: { initialMs: 50, maxMs: 200 } } })
  t.teardown(() => ctl.stop())
  const err = await ctl.synced.then(() => undefined, (e: unknown) => e as Error & { code?: string })
  t.equal(err?.code, 'KT_ERR_KUBE_FORBIDDEN')
  t.match(err?.message, /HTTP 401/)
  t.match(err?.message, /credentials/)
  const h = ctl.snapshot().informers.find((i) => i.resource === 'services')
  t.equal(h?.synced, false)
  t.equal(h?.lastError?.code, 'KT_ERR_KUBE_FORBIDDEN')
})
