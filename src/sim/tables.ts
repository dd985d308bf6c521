// Server-side printing: the `meta.k8s.io/v1 Table` kubectl asks for on
// `kubectl get`. Columns and cell formats follow kube's printers
// (pkg/printers/internalversion/printers.go) so the output reads as it does
// against a real cluster.

import type { KubeObject, ResourceDef } from './resources.js'

export interface Column {
  name: string
  type: 'string' | 'integer' | 'date' | 'number' | 'boolean'
  format: string
  description: string
  priority: number
}

type Cell = string | number | boolean
type Printer = { columns: Column[], row: (o: KubeObject, now: number) => Cell[] }

function col (name: string, description: string, opts: Partial<Column> = {}): Column {
  return { name, type: 'string', format: '', description, priority: 0, ...opts }
}

const NAME = col('Name', 'Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names', { format: 'name' })
const AGE = col('Age', 'CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata')

function obj (v: unknown): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? v as Record<string, unknown> : {}
}

function arr (v: unknown): unknown[] {
  return Array.isArray(v) ? v : []
}

function str (v: unknown, dflt = ''): string {
  return typeof v === 'string' && v !== '' ? v : dflt
}

/**
 * kube's duration.HumanDuration: seconds up to 2m, minutes with seconds up
 * to 10m, minutes to 3h, hours with minutes to 8h, hours to 2d, days with
 * hours to 8d, days to 2y, years with days to 8y, then years.
 */
export function humanDuration (ms: number): string {
  const seconds = Math.floor(ms / 1000)
  if (seconds < -1) return '<invalid>'
  if (seconds < 0) return '0s'
  if (seconds < 120) return `${seconds}s`
  const minutes = Math.floor(seconds / 60)
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`
  if (minutes < 180) return `${minutes}m`
  const hours = Math.floor(minutes / 60)
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`
  if (hours < 48) return `${hours}h`
  if (hours < 192) return hours % 24 === 0 ? `${hours / 24}d` : `${Math.floor(hours / 24)}d${hours % 24}h`
  const days = Math.floor(hours / 24)
  if (hours < 24 * 365 * 2) return `${days}d`
  const years = Math.floor(days / 365)
  if (hours < 24 * 365 * 8) return days % 365 === 0 ? `${years}y` : `${years}y${days % 365}d`
  return `${years}y`
}

function age (ts: unknown, now: number): string {
  if (typeof ts !== 'string' || ts === '') return '<unknown>'
  const t = Date.parse(ts)
  return Number.isNaN(t) ? '<unknown>' : humanDuration(now - t)
}

function created (o: KubeObject, now: number): string {
  return age(o.metadata.creationTimestamp, now)
}

/** "a,b,c + N more..." as kube's listWithMoreString, or <unset>. */
function listWithMore (items: string[], max = 3): string {
  if (items.length === 0) return '<unset>'
  const shown = items.slice(0, max).join(',')
  return items.length > max ? `${shown} + ${items.length - max} more...` : shown
}

function formatLabels (m: unknown): string {
  const e = Object.entries(obj(m)).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
  return e.length === 0 ? '<none>' : e.map(([k, v]) => `${k}=${String(v)}`).join(',')
}

// ---- services ----

// Server-side printing always runs with Wide: true (pkg/printers/storage), so
// unlike kubectl's client-side printer nothing is cut to 13 characters.
function loadBalancerIngress (status: unknown): string {
  const ings = arr(obj(obj(status).loadBalancer).ingress)
  const parts: string[] = []
  for (const i of ings) {
    const e = obj(i)
    if (str(e.ip) !== '') parts.push(str(e.ip))
    else if (str(e.hostname) !== '') parts.push(str(e.hostname))
  }
  return parts.join(',')
}

function serviceExternalIP (o: KubeObject): string {
  const spec = obj(o.spec)
  const externalIPs = arr(spec.externalIPs).map(String)
  switch (spec.type) {
    case 'ClusterIP':
    case 'NodePort':
      return externalIPs.length > 0 ? externalIPs.join(',') : '<none>'
    case 'LoadBalancer': {
      const lb = loadBalancerIngress(o.status)
      const results = [...(lb === '' ? [] : lb.split(',')), ...externalIPs]
      return results.length > 0 ? results.join(',') : '<pending>'
    }
    case 'ExternalName':
      return str(spec.externalName)
    default:
      return '<unknown>'
  }
}

function servicePorts (o: KubeObject): string {
  const ports = arr(obj(o.spec).ports).map(obj)
  if (ports.length === 0) return '<none>'
  return ports.map((p) => {
    const proto = str(p.protocol, 'TCP')
    return typeof p.nodePort === 'number' && p.nodePort > 0 ? `${String(p.port)}:${p.nodePort}/${proto}` : `${String(p.port)}/${proto}`
  }).join(',')
}

const services: Printer = {
  columns: [
    NAME,
    col('Type', 'The type of the service.'),
    col('Cluster-IP', 'The IP address of the service.'),
    col('External-IP', 'The external IP address of the service.'),
    col('Port(s)', 'The ports of the service.'),
    AGE,
    col('Selector', 'Route service traffic to pods with label keys and values matching this selector.', { priority: 1 }),
  ],
  row: (o, now) => {
    const spec = obj(o.spec)
    const ips = arr(spec.clusterIPs)
    const clusterIP = ips.length > 0 ? String(ips[0]) : '<none>'
    return [str(o.metadata.name), str(spec.type), clusterIP, serviceExternalIP(o), servicePorts(o), created(o, now), formatLabels(spec.selector)]
  },
}

// ---- nodes ----

function nodeAddress (o: KubeObject, type: string): string {
  for (const a of arr(obj(o.status).addresses)) {
    const e = obj(a)
    if (e.type === type) return str(e.address, '<none>')
  }
  return '<none>'
}

const nodes: Printer = {
  columns: [
    NAME,
    col('Status', 'The status of the node'),
    col('Roles', 'The roles of the node'),
    AGE,
    col('Version', 'Kubelet Version reported by the node.'),
    col('Internal-IP', 'List of addresses reachable to the node. Queried from cloud provider, if available.', { priority: 1 }),
    col('External-IP', 'List of addresses reachable to the node. Queried from cloud provider, if available.', { priority: 1 }),
    col('OS-Image', 'OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).', { priority: 1 }),
    col('Kernel-Version', 'Kernel Version reported by the node from \'uname -r\' (e.g. 3.16.0-0.bpo.4-amd64).', { priority: 1 }),
    col('Container-Runtime', 'ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).', { priority: 1 }),
  ],
  row: (o, now) => {
    const status = obj(o.status)
    const states: string[] = []
    for (const c of arr(status.conditions)) {
      const e = obj(c)
      if (e.type === 'Ready') states.push(e.status === 'True' ? 'Ready' : 'NotReady')
    }
    if (states.length === 0) states.push('Unknown')
    if (obj(o.spec).unschedulable === true) states.push('SchedulingDisabled')
    const roles = new Set<string>()
    for (const [k, v] of Object.entries(o.metadata.labels ?? {})) {
      if (k.startsWith('node-role.kubernetes.io/')) { const r = k.slice('node-role.kubernetes.io/'.length); if (r !== '') roles.add(r) } else if (k === 'kubernetes.io/role' && v !== '') roles.add(v)
    }
    const info = obj(status.nodeInfo)
    return [
      str(o.metadata.name), states.join(','), roles.size === 0 ? '<none>' : [...roles].sort().join(','), created(o, now),
      str(info.kubeletVersion), nodeAddress(o, 'InternalIP'), nodeAddress(o, 'ExternalIP'),
      str(info.osImage, '<unknown>'), str(info.kernelVersion, '<unknown>'), str(info.containerRuntimeVersion, '<unknown>'),
    ]
  },
}

// ---- endpointslices / endpoints ----

const endpointSlices: Printer = {
  columns: [
    NAME,
    col('AddressType', 'The type of addresses contained in the EndpointSlice'),
    col('Ports', 'The ports of the EndpointSlice'),
    col('Endpoints', 'The endpoints of the EndpointSlice'),
    AGE,
  ],
  row: (o, now) => {
    const ports = arr(o.ports).map((p) => {
      const e = obj(p)
      return typeof e.port === 'number' ? String(e.port) : str(e.name, '*')
    })
    const addrs: string[] = []
    for (const ep of arr(o.endpoints)) for (const a of arr(obj(ep).addresses)) addrs.push(String(a))
    return [str(o.metadata.name), str(o.addressType), listWithMore(ports), listWithMore(addrs), created(o, now)]
  },
}

const endpoints: Printer = {
  columns: [NAME, col('Endpoints', 'Endpoints of the service'), AGE],
  row: (o, now) => {
    const list: string[] = []
    for (const sub of arr(o.subsets)) {
      const s = obj(sub)
      const ports = arr(s.ports).map((p) => obj(p).port)
      for (const a of arr(s.addresses)) {
        const ip = str(obj(a).ip)
        if (ports.length === 0) list.push(ip)
        for (const p of ports) list.push(`${ip}:${String(p)}`)
      }
    }
    return [str(o.metadata.name), list.length === 0 ? '<none>' : listWithMore(list), created(o, now)]
  },
}

// ---- the rest ----

const namespaces: Printer = {
  columns: [NAME, col('Status', 'The status of the namespace'), AGE],
  row: (o, now) => [str(o.metadata.name), str(obj(o.status).phase), created(o, now)],
}

const ingresses: Printer = {
  columns: [
    NAME,
    col('Class', 'The name of the IngressClass resource that should be used for this Ingress'),
    col('Hosts', 'Hosts that incoming requests are matched against before the ingress rule'),
    col('Address', 'Address is a list containing ingress points for the load-balancer'),
    col('Ports', 'Ports of TLS configurations that open'),
    AGE,
  ],
  row: (o, now) => {
    const spec = obj(o.spec)
    const hosts = arr(spec.rules).map((r) => str(obj(r).host)).filter((h) => h !== '')
    const lb = loadBalancerIngress(o.status)
    return [
      str(o.metadata.name), str(spec.ingressClassName, '<none>'), hosts.length === 0 ? '*' : listWithMore(hosts, 4),
      lb, arr(spec.tls).length > 0 ? '80, 443' : '80', created(o, now),
    ]
  },
}

const ingressClasses: Printer = {
  columns: [NAME, col('Controller', 'Controller that is responsible for handling this class'), col('Parameters', 'A reference to a resource with additional parameters'), AGE],
  row: (o, now) => {
    const spec = obj(o.spec)
    const p = obj(spec.parameters)
    const params = str(p.kind) === '' ? '<none>' : `${str(p.kind)}/${str(p.name)}`
    return [str(o.metadata.name), str(spec.controller), params, created(o, now)]
  },
}

const events: Printer = {
  columns: [
    col('Last Seen', 'Time when last event occurred'),
    col('Type', 'Type of this event (Normal, Warning), new types could be added in the future.'),
    col('Reason', 'Reason is why the action was taken. It is human-readable. This field can have at most 128 characters.'),
    col('Object', 'The object that this event is about.'),
    col('Subobject', 'The subobject that this event is about.', { priority: 1 }),
    col('Source', 'The component reporting this event.', { priority: 1 }),
    col('Message', 'A human-readable description of the status of this operation.'),
    col('First Seen', 'The first time this event was recorded.', { priority: 1 }),
    col('Count', 'The number of times this event has occurred.', { priority: 1 }),
    NAME,
  ],
  row: (o, now) => {
    // Stored or events.k8s.io form: read either spelling.
    const involved = obj(o.involvedObject ?? o.regarding)
    const series = obj(o.series)
    const last = str(series.lastObservedTime) || str(o.lastTimestamp ?? o.deprecatedLastTimestamp) || str(o.eventTime)
    const first = str(o.firstTimestamp ?? o.deprecatedFirstTimestamp) || str(o.eventTime)
    const source = obj(o.source ?? o.deprecatedSource)
    const src = str(source.component) !== '' ? [str(source.component), str(source.host)].filter((x) => x !== '').join(', ') : str(o.reportingComponent ?? o.reportingController)
    const count = typeof series.count === 'number' ? series.count : (typeof (o.count ?? o.deprecatedCount) === 'number' ? (o.count ?? o.deprecatedCount) as number : 1)
    return [
      last === '' ? '<unknown>' : age(last, now), str(o.type), str(o.reason),
      `${str(involved.kind).toLowerCase()}/${str(involved.name)}`, str(involved.fieldPath), src,
      str(o.message ?? o.note).trim(), first === '' ? '<unknown>' : age(first, now), count, str(o.metadata.name),
    ]
  },
}

const leases: Printer = {
  columns: [NAME, col('Holder', 'The holder of the lease.'), AGE],
  row: (o, now) => [str(o.metadata.name), str(obj(o.spec).holderIdentity), created(o, now)],
}

const generic: Printer = {
  columns: [NAME, AGE],
  row: (o, now) => [str(o.metadata.name), created(o, now)],
}

const PRINTERS: Record<string, Printer> = {
  services,
  nodes,
  namespaces,
  endpoints,
  events,
  'events.events.k8s.io': events,
  'endpointslices.discovery.k8s.io': endpointSlices,
  'ingresses.networking.k8s.io': ingresses,
  'ingressclasses.networking.k8s.io': ingressClasses,
  'leases.coordination.k8s.io': leases,
}

export type IncludeObject = 'None' | 'Metadata' | 'Object'

export interface TableOptions {
  /** Table apiVersion the client asked for: meta.k8s.io/v1 or v1beta1. */
  apiVersion: string
  includeObject: IncludeObject
  /** Omit column definitions (watch events after the first). */
  noHeaders?: boolean
  resourceVersion?: string
  continue?: string
  remainingItemCount?: number
}

export function renderTable (def: ResourceDef, key: string, items: KubeObject[], opts: TableOptions): Record<string, unknown> {
  const p = PRINTERS[key] ?? generic
  const now = Date.now()
  const metadata: Record<string, unknown> = {}
  if (opts.resourceVersion !== undefined) metadata.resourceVersion = opts.resourceVersion
  if (opts.continue !== undefined) metadata.continue = opts.continue
  if (opts.remainingItemCount !== undefined) metadata.remainingItemCount = opts.remainingItemCount
  return {
    kind: 'Table',
    apiVersion: opts.apiVersion,
    metadata,
    columnDefinitions: opts.noHeaders === true ? [] : p.columns,
    rows: items.map((o) => {
      const row: Record<string, unknown> = { cells: p.row(o, now) }
      if (opts.includeObject === 'Object') row.object = { ...o, kind: def.kind, apiVersion: o.apiVersion }
      else if (opts.includeObject === 'Metadata') row.object = { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata }
      return row
    }),
  }
}
