// The test API server's Service strategy where it matters to a load-balancer
// controller, checked against kube-apiserver:
// - dropTypeDependentFields (pkg/registry/core/service/storage/storage.go):
//   leaving type LoadBalancer drops an unchanged spec.loadBalancerClass, and
//   any update of a non-LoadBalancer Service clears status.loadBalancer;
// - ValidateLoadBalancerStatus (pkg/apis/core/validation/validation.go, since
//   1.29, kubernetes/kubernetes#119789): status.loadBalancer.ingress on a
//   non-LoadBalancer Service is a 422;
// - validateLoadBalancerClassField: the class may only be set on type
//   LoadBalancer and may not change once set.
import t from 'tap'
import { startApiServer } from '../../src/sim/apiserver.js'

type Svc = { spec: { type: string, loadBalancerClass?: string, ports: Array<{ nodePort?: number }> }, status?: { loadBalancer?: { ingress?: unknown[] } }, metadata: { resourceVersion?: string } }

const api = await startApiServer({})
t.teardown(() => api.close())

function lb (name: string, cls?: string): Svc {
  api.create({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'default' },
    spec: { type: 'LoadBalancer', ...(cls !== undefined ? { loadBalancerClass: cls } : {}), ports: [{ port: 80, protocol: 'TCP' }] },
  })
  api.patch('services', name, { status: { loadBalancer: { ingress: [{ ip: '127.240.0.9', ipMode: 'Proxy' }] } } }, { subresource: 'status' })
  return api.get('services', name, 'default') as unknown as Svc
}

t.test('LoadBalancer → ClusterIP drops the class and clears the status', async (t) => {
  const before = lb('a', 'example.com/other')
  t.equal(before.status?.loadBalancer?.ingress?.length, 1)
  const after = api.patch('services', 'a', { spec: { type: 'ClusterIP' } }, { namespace: 'default' }) as unknown as Svc
  t.equal(after.spec.type, 'ClusterIP')
  t.equal(after.spec.loadBalancerClass, undefined, 'loadBalancerClass dropped')
  t.same(after.status?.loadBalancer, {}, 'status.loadBalancer cleared')
  t.equal(after.spec.ports[0]?.nodePort, undefined, 'nodePort released')
})

t.test('LoadBalancer → NodePort clears the status too (class-less)', async (t) => {
  lb('b')
  const after = api.patch('services', 'b', { spec: { type: 'NodePort' } }, { namespace: 'default' }) as unknown as Svc
  t.same(after.status?.loadBalancer, {})
})

t.test('an LB status on a non-LoadBalancer Service is a 422', async (t) => {
  lb('c')
  api.patch('services', 'c', { spec: { type: 'ClusterIP' } }, { namespace: 'default' })
  t.throws(() => api.patch('services', 'c', { status: { loadBalancer: { ingress: [{ ip: '127.240.0.9' }] } } }, { namespace: 'default', subresource: 'status' }),
    { statusCode: 422, message: /status\.loadBalancer\.ingress: Forbidden: may only be used when `spec\.type` is 'LoadBalancer'/ })
  // Clearing it is fine.
  api.patch('services', 'c', { status: { loadBalancer: { ingress: null } } }, { namespace: 'default', subresource: 'status' })
})

t.test('loadBalancerClass: only on LoadBalancer, immutable there', async (t) => {
  lb('d', 'example.com/one')
  t.throws(() => api.patch('services', 'd', { spec: { loadBalancerClass: 'example.com/two' } }, { namespace: 'default' }),
    { statusCode: 422, message: /spec\.loadBalancerClass: Invalid value: "example\.com\/two": may not change once set/ })
  t.throws(() => api.create({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'e', namespace: 'default' }, spec: { type: 'ClusterIP', loadBalancerClass: 'example.com/one', ports: [{ port: 80 }] } }),
    { statusCode: 422, message: /spec\.loadBalancerClass: Forbidden: may only be used when `type` is 'LoadBalancer'/ })
})
