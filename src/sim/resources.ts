// The resources the test API server serves, described once: discovery
// documents, URL routing, name validation, field selectors and strategic
// merge patch keys all read this table.

export type KubeObject = Record<string, unknown> & { metadata: ObjectMeta }

export interface ObjectMeta {
  name?: string
  generateName?: string
  namespace?: string
  uid?: string
  resourceVersion?: string
  generation?: number
  creationTimestamp?: string
  deletionTimestamp?: string
  deletionGracePeriodSeconds?: number
  labels?: Record<string, string>
  annotations?: Record<string, string>
  finalizers?: string[]
  ownerReferences?: Array<{ apiVersion: string, kind: string, name: string, uid: string, controller?: boolean, blockOwnerDeletion?: boolean }>
  [k: string]: unknown
}

export type NameRule = 'dns1035Label' | 'dns1123Label' | 'dns1123Subdomain'

/** Strategic-merge-patch behaviour of one list field (its Go struct tags). */
export interface ListStrategy {
  /** `patchMergeKey`: merge list items by this key. Absent: a list of scalars merged as a set. */
  mergeKey?: string
}

export interface ResourceDef {
  group: string
  version: string
  kind: string
  plural: string
  singular: string
  namespaced: boolean
  shortNames: string[]
  categories: string[]
  /** Has a `/status` subresource: the main resource ignores status, `/status` ignores the rest. */
  statusSubresource: boolean
  /** kube's `ReturnDeletedObject`: DELETE answers with the object instead of a Status. */
  returnDeletedObject: boolean
  /**
   * metadata.generation as the real strategies keep it: `spec` bumps on spec
   * changes, `content` on any change outside metadata, `none` leaves it unset
   * (Services, Nodes and Namespaces carry no generation on a real server).
   */
  generation: 'none' | 'spec' | 'content'
  nameRule: NameRule
  /** Field selector labels beyond metadata.name and metadata.namespace, with how to read them. */
  fieldLabels: Record<string, (o: KubeObject) => string>
  /** SMP: list fields (dotted path from the object root) that merge instead of replace. */
  patchLists: Record<string, ListStrategy>
  /** The storage this resource shares (events.k8s.io/v1 events live with core v1 events). */
  storage: string
  /** Served from a CustomResourceDefinition of this name (crds.ts): every version shares one storage, objects take the version asked for. */
  crd?: string
}

export const ALL_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'] as const
export const SUBRESOURCE_VERBS = ['get', 'patch', 'update'] as const

export function apiVersionOf (def: Pick<ResourceDef, 'group' | 'version'>): string {
  return def.group === '' ? def.version : `${def.group}/${def.version}`
}

/** A fully qualified key such as `services` or `endpointslices.discovery.k8s.io`. */
export function resourceKey (def: Pick<ResourceDef, 'group' | 'plural'>): string {
  return def.group === '' ? def.plural : `${def.plural}.${def.group}`
}

function str (v: unknown): string {
  if (v === undefined || v === null) return ''
  return typeof v === 'string' ? v : String(v)
}

function path (o: unknown, dotted: string): unknown {
  let cur: unknown = o
  for (const k of dotted.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined
    cur = (cur as Record<string, unknown>)[k]
  }
  return cur
}

function fieldAt (dotted: string): (o: KubeObject) => string {
  return (o) => str(path(o, dotted))
}

const metaLists: Record<string, ListStrategy> = {
  'metadata.finalizers': {},
  'metadata.ownerReferences': { mergeKey: 'uid' },
}

const coreEventFields: Record<string, (o: KubeObject) => string> = {
  'involvedObject.kind': fieldAt('involvedObject.kind'),
  'involvedObject.namespace': fieldAt('involvedObject.namespace'),
  'involvedObject.name': fieldAt('involvedObject.name'),
  'involvedObject.uid': fieldAt('involvedObject.uid'),
  'involvedObject.apiVersion': fieldAt('involvedObject.apiVersion'),
  'involvedObject.resourceVersion': fieldAt('involvedObject.resourceVersion'),
  'involvedObject.fieldPath': fieldAt('involvedObject.fieldPath'),
  reason: fieldAt('reason'),
  reportingComponent: fieldAt('reportingComponent'),
  source: fieldAt('source.component'),
  type: fieldAt('type'),
}

function def (d: Partial<ResourceDef> & Pick<ResourceDef, 'group' | 'version' | 'kind' | 'plural' | 'namespaced'>): ResourceDef {
  const full: ResourceDef = {
    singular: d.kind.toLowerCase(),
    shortNames: [],
    categories: [],
    statusSubresource: false,
    returnDeletedObject: false,
    generation: 'none',
    nameRule: 'dns1123Subdomain',
    fieldLabels: {},
    patchLists: {},
    storage: '',
    ...d,
  }
  full.patchLists = { ...metaLists, ...full.patchLists }
  if (full.storage === '') full.storage = resourceKey(full)
  return full
}

export const RESOURCES: readonly ResourceDef[] = [
  def({
    group: '',
    version: 'v1',
    kind: 'Namespace',
    plural: 'namespaces',
    namespaced: false,
    shortNames: ['ns'],
    statusSubresource: true,
    nameRule: 'dns1123Label',
    fieldLabels: { 'status.phase': fieldAt('status.phase') },
    patchLists: { 'status.conditions': { mergeKey: 'type' } },
  }),
  def({
    group: '',
    version: 'v1',
    kind: 'Node',
    plural: 'nodes',
    namespaced: false,
    shortNames: ['no'],
    statusSubresource: true,
    fieldLabels: { 'spec.unschedulable': (o) => str(path(o, 'spec.unschedulable') ?? false) },
    // NodeStatus.Addresses keeps patchMergeKey=type although types repeat (kubernetes#63953).
    patchLists: { 'status.conditions': { mergeKey: 'type' }, 'status.addresses': { mergeKey: 'type' }, 'spec.podCIDRs': {} },
  }),
  def({
    group: '',
    version: 'v1',
    kind: 'Service',
    plural: 'services',
    namespaced: true,
    shortNames: ['svc'],
    categories: ['all'],
    statusSubresource: true,
    returnDeletedObject: true,
    nameRule: 'dns1035Label',
    fieldLabels: { 'spec.clusterIP': fieldAt('spec.clusterIP'), 'spec.type': fieldAt('spec.type') },
    // ServicePort: patchMergeKey=port; ServiceStatus.Conditions: patchMergeKey=type.
    // LoadBalancerStatus.Ingress has no strategy, so a patch replaces the list.
    patchLists: { 'spec.ports': { mergeKey: 'port' }, 'status.conditions': { mergeKey: 'type' } },
  }),
  def({
    group: '',
    version: 'v1',
    kind: 'Endpoints',
    plural: 'endpoints',
    singular: 'endpoints',
    namespaced: true,
    shortNames: ['ep'],
  }),
  def({
    group: '',
    version: 'v1',
    kind: 'Event',
    plural: 'events',
    namespaced: true,
    shortNames: ['ev'],
    fieldLabels: coreEventFields,
  }),
  def({
    group: 'discovery.k8s.io',
    version: 'v1',
    kind: 'EndpointSlice',
    plural: 'endpointslices',
    namespaced: true,
    generation: 'content',
  }),
  def({
    group: 'networking.k8s.io',
    version: 'v1',
    kind: 'Ingress',
    plural: 'ingresses',
    namespaced: true,
    generation: 'spec',
    shortNames: ['ing'],
    statusSubresource: true,
  }),
  def({
    group: 'networking.k8s.io',
    version: 'v1',
    kind: 'IngressClass',
    plural: 'ingressclasses',
    namespaced: false,
    generation: 'spec',
  }),
  def({
    group: 'events.k8s.io',
    version: 'v1',
    kind: 'Event',
    plural: 'events',
    namespaced: true,
    shortNames: ['ev'],
    // Stored as core/v1 events; field labels are those of the stored form.
    fieldLabels: coreEventFields,
    storage: 'events',
  }),
  def({
    group: 'coordination.k8s.io',
    version: 'v1',
    kind: 'Lease',
    plural: 'leases',
    namespaced: true,
  }),
  def({
    group: 'apiextensions.k8s.io',
    version: 'v1',
    kind: 'CustomResourceDefinition',
    plural: 'customresourcedefinitions',
    namespaced: false,
    shortNames: ['crd', 'crds'],
    categories: ['api-extensions'],
    statusSubresource: true,
    generation: 'spec',
  }),
]

/** Builds a ResourceDef with the defaults above (crds.ts makes them from CRDs). */
export function makeDef (d: Partial<ResourceDef> & Pick<ResourceDef, 'group' | 'version' | 'kind' | 'plural' | 'namespaced'>): ResourceDef {
  return def(d)
}

/** Group → versions served, in the order discovery lists them. */
export function groups (defs: readonly ResourceDef[] = RESOURCES): Array<{ group: string, versions: string[] }> {
  const out: Array<{ group: string, versions: string[] }> = []
  for (const r of defs) {
    let g = out.find((x) => x.group === r.group)
    if (g === undefined) {
      g = { group: r.group, versions: [] }
      out.push(g)
    }
    if (!g.versions.includes(r.version)) g.versions.push(r.version)
  }
  return out
}

export function findResource (group: string, version: string, plural: string, defs: readonly ResourceDef[] = RESOURCES): ResourceDef | undefined {
  return defs.find((r) => r.group === group && r.version === version && r.plural === plural)
}

export function findByKind (apiVersion: string, kind: string, defs: readonly ResourceDef[] = RESOURCES): ResourceDef | undefined {
  return defs.find((r) => apiVersionOf(r) === apiVersion && r.kind === kind)
}

/**
 * Resolve a hook's resource name: a plural (`services`), a short name
 * (`svc`), a kind (`Service`) or a group-qualified plural
 * (`events.events.k8s.io`). Core wins over groups, as in kubectl.
 */
export function resolveResource (name: string, defs: readonly ResourceDef[] = RESOURCES): ResourceDef | undefined {
  const lower = name.toLowerCase()
  for (const r of defs) if (resourceKey(r) === lower) return r
  for (const r of defs) if (r.plural === lower || r.singular === lower || r.shortNames.includes(lower)) return r
  for (const r of defs) if (r.kind === name) return r
  return undefined
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/

export function isDns1123Label (s: string): boolean {
  return s.length <= 63 && DNS1123_LABEL.test(s)
}

export function isDns1123Subdomain (s: string): boolean {
  return s.length <= 253 && s.split('.').every((l) => DNS1123_LABEL.test(l))
}

/** One message per failure, worded as kube's validation package words them. */
export function nameErrors (rule: NameRule, s: string): string[] {
  switch (rule) {
    case 'dns1035Label':
      if (s.length > 63) return ['must be no more than 63 characters']
      return DNS1035_LABEL.test(s) ? [] : ["a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]
    case 'dns1123Label':
      if (s.length > 63) return ['must be no more than 63 characters']
      return DNS1123_LABEL.test(s) ? [] : ["a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]
    case 'dns1123Subdomain':
      if (s.length > 253) return ['must be no more than 253 characters']
      return isDns1123Subdomain(s) ? [] : ["a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
  }
}

/** Reads a field-selector label from an object, or undefined if the resource does not support it. */
export function fieldReader (r: ResourceDef, label: string): ((o: KubeObject) => string) | undefined {
  if (label === 'metadata.name') return (o) => str(o.metadata.name)
  if (label === 'metadata.namespace') return (o) => str(o.metadata.namespace)
  return r.fieldLabels[label]
}
