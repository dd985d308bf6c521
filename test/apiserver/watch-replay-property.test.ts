// The invariant informers live by: a list at RV k, plus the watch events
// replayed from k, equals a list now, with or without a label selector.
// Random write sequences from fast-check against the store itself.

import t from 'tap'
import fc from 'fast-check'
import { Store } from '../../src/sim/store.js'
import { RESOURCES, type KubeObject, type ResourceDef } from '../../src/sim/resources.js'
import { parseCidr4 } from '../../src/sim/allocator.js'
import { parseFieldSelector, parseLabelSelector } from '../../src/sim/selectors.js'

const services = RESOURCES.find((r) => r.plural === 'services' && r.group === '') as ResourceDef
const namespaces = RESOURCES.find((r) => r.plural === 'namespaces') as ResourceDef
const all = { label: () => true, field: () => true }

type Op =
  | { op: 'create', name: string, tier: string }
  | { op: 'label', name: string, tier: string }
  | { op: 'status', name: string, ip: number }
  | { op: 'finalize', name: string }
  | { op: 'unfinalize', name: string }
  | { op: 'delete', name: string }

const name = fc.constantFrom('a', 'b', 'c', 'd')
const tier = fc.constantFrom('web', 'db')
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('create' as const), name, tier }),
  fc.record({ op: fc.constant('label' as const), name, tier }),
  fc.record({ op: fc.constant('status' as const), name, ip: fc.integer({ min: 1, max: 254 }) }),
  fc.record({ op: fc.constant('finalize' as const), name }),
  fc.record({ op: fc.constant('unfinalize' as const), name }),
  fc.record({ op: fc.constant('delete' as const), name }),
)

function apply (s: Store, o: Op): void {
  try {
    switch (o.op) {
      case 'create':
        s.create(services, 'default', { apiVersion: 'v1', kind: 'Service', metadata: { name: o.name, labels: { tier: o.tier } }, spec: { type: 'LoadBalancer', ports: [{ name: 'http', port: 80 }] } })
        break
      case 'label': s.patch(services, 'default', o.name, 'merge', { metadata: { labels: { tier: o.tier } } }); break
      case 'status': s.patch(services, 'default', o.name, 'merge', { status: { loadBalancer: { ingress: [{ ip: `127.0.0.${o.ip}` }] } } }, 'status'); break
      case 'finalize': s.patch(services, 'default', o.name, 'strategic', { metadata: { finalizers: ['x.test/hold'] } }); break
      case 'unfinalize': s.patch(services, 'default', o.name, 'merge', { metadata: { finalizers: null } }); break
      case 'delete': s.delete(services, 'default', o.name); break
    }
  } catch (err) {
    // 404, 409 and 422 are legitimate answers to a random sequence; anything else is a bug.
    if (!(err instanceof Error && 'statusCode' in err && [404, 409, 422].includes((err as { statusCode: number }).statusCode))) throw err
  }
}

function snapshot (s: Store, selector?: string): Map<string, KubeObject> {
  const label = parseLabelSelector(selector)
  const items = s.list(services, 'default', { label, field: parseFieldSelector('', services) }).items
  return new Map(items.map((o) => [o.metadata.name as string, o]))
}

t.test('list at k + replay from k = list now', async (t) => {
  fc.assert(fc.property(fc.array(op, { maxLength: 40 }), fc.array(op, { maxLength: 40 }), fc.constantFrom(undefined, 'tier=web'), (before, after, selector) => {
    const s = new Store({ historySize: 1000, network: { cidr: parseCidr4('10.96.0.0/12'), nodePortRange: [30000, 32767] } })
    s.create(namespaces, '', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } })
    for (const o of before) apply(s, o)
    const k = s.resourceVersion
    const state = snapshot(s, selector)
    for (const o of after) apply(s, o)

    let last = k
    s.watch(services, { namespace: 'default', label: parseLabelSelector(selector), field: all.field, resourceVersion: String(k) }, (type, obj) => {
      const rv = Number(obj.metadata.resourceVersion)
      if (rv <= last) throw new Error(`event RV ${rv} not after ${last}`)
      last = rv
      if (type === 'DELETED') state.delete(obj.metadata.name as string)
      else state.set(obj.metadata.name as string, obj)
    })()
    const now = snapshot(s, selector)
    if (state.size !== now.size) return false
    for (const [n, o] of now) {
      const got = state.get(n)
      if (got?.metadata.resourceVersion !== o.metadata.resourceVersion) return false
    }
    return true
  }), { numRuns: 200 })
  t.pass('invariant held for 200 random sequences')
})

t.test('RVs strictly increase and no-op writes do not consume one', async (t) => {
  fc.assert(fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
    const s = new Store({ historySize: 1000, network: { cidr: parseCidr4('10.96.0.0/12'), nodePortRange: [30000, 32767] } })
    s.create(namespaces, '', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } })
    let events = 0
    s.watch(services, { label: all.label, field: all.field, resourceVersion: s.resourceVersion.toString() }, () => { events++ })
    const start = s.resourceVersion
    for (const o of ops) apply(s, o)
    // Every RV bump is exactly one service event (nothing else is written).
    return s.resourceVersion - start === events
  }), { numRuns: 200 })
  t.pass('one RV per event')
})
