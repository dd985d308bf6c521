// Per-kind behaviour on writes: defaulting, validation and allocation, after
// the REST strategies in kubernetes/pkg/registry. Only what a LoadBalancer
// controller, kubectl and the demo can observe is modelled.

import { isIP, isIPv4 } from 'node:net'
import { fieldError, internalError, invalid, type StatusCause } from './status.js'
import { intToIpv4, ipv4ToInt, nodePortAllocator, serviceIpAllocator, type Cidr, type RangeAllocator } from './allocator.js'
import { isDns1123Label, isDns1123Subdomain, type KubeObject } from './resources.js'

/** Allocation side effects of one write, undone if the write fails. */
export class AllocationTx {
  private readonly undo: Array<() => void> = []
  private readonly after: Array<() => void> = []
  onRollback (f: () => void): void { this.undo.push(f) }
  onCommit (f: () => void): void { this.after.push(f) }
  rollback (): void { for (const f of this.undo.reverse()) f(); this.undo.length = 0 }
  commit (): void { for (const f of this.after) f(); this.after.length = 0 }
}

export interface Strategy {
  /** Decode-time defaulting: runs on every write of the main resource and of status. */
  defaults?: (o: KubeObject) => void
  /** Create only: fields the server resets (most kinds drop a client's status). */
  prepareCreate?: (o: KubeObject) => void
  /** Update of the main resource: carry over allocated values, drop type-dependent fields. */
  prepareUpdate?: (next: KubeObject, old: KubeObject) => void
  validate?: (o: KubeObject, old: KubeObject | undefined) => StatusCause[]
  validateStatus?: (o: KubeObject) => StatusCause[]
  /** Take what the object needs (IPs, ports); throws ApiStatusError. */
  allocate?: (o: KubeObject, old: KubeObject | undefined, tx: AllocationTx) => void
  /** The object is gone: give back what it held. */
  release?: (o: KubeObject) => void
}

type Obj = Record<string, unknown>

function asObj (v: unknown): Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? v as Obj : {}
}

function specOf (o: KubeObject): Obj {
  if (o.spec === undefined || o.spec === null || typeof o.spec !== 'object') o.spec = {}
  return o.spec as Obj
}

const PROTOCOLS = ['SCTP', 'TCP', 'UDP'] as const

interface SvcPort { name?: string, protocol?: string, port?: unknown, targetPort?: unknown, nodePort?: unknown }

function portsOf (spec: Obj): SvcPort[] {
  return Array.isArray(spec.ports) ? spec.ports as SvcPort[] : []
}

function isPortNumber (v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535
}

function needsNodePorts (spec: Obj): boolean {
  return spec.type === 'NodePort' || (spec.type === 'LoadBalancer' && spec.allocateLoadBalancerNodePorts !== false)
}

function needsHealthCheckNodePort (spec: Obj): boolean {
  return spec.type === 'LoadBalancer' && spec.externalTrafficPolicy === 'Local'
}

function externallyAccessible (spec: Obj): boolean {
  return spec.type === 'NodePort' || spec.type === 'LoadBalancer' || (Array.isArray(spec.externalIPs) && spec.externalIPs.length > 0)
}

function allocatedPorts (spec: Obj): Set<number> {
  const s = new Set<number>()
  for (const p of portsOf(spec)) if (typeof p.nodePort === 'number' && p.nodePort > 0) s.add(p.nodePort)
  if (typeof spec.healthCheckNodePort === 'number' && spec.healthCheckNodePort > 0) s.add(spec.healthCheckNodePort)
  return s
}

function clusterIpOf (spec: Obj): string | undefined {
  const ip = spec.clusterIP
  return typeof ip === 'string' && ip !== '' && ip !== 'None' ? ip : undefined
}

// validateLoadBalancerClassField (pkg/apis/core/validation/validation.go).
function loadBalancerClassErrors (spec: Obj, old: Obj | undefined): StatusCause[] {
  const errs: StatusCause[] = []
  const cls = spec.loadBalancerClass
  if (old !== undefined && old.type === 'LoadBalancer' && spec.type === 'LoadBalancer' && cls !== old.loadBalancerClass) {
    errs.push(fieldError.invalid('spec.loadBalancerClass', cls ?? null, 'may not change once set'))
  }
  if (cls === undefined || cls === null) return errs
  if (spec.type !== 'LoadBalancer') {
    errs.push(fieldError.forbidden('spec.loadBalancerClass', "may only be used when `type` is 'LoadBalancer'"))
  } else if (typeof cls !== 'string' || !QUALIFIED_NAME_RE.test(cls)) {
    errs.push(fieldError.invalid('spec.loadBalancerClass', cls, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"))
  }
  return errs
}

// ValidateQualifiedName: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
const QUALIFIED_NAME_RE = /^(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/

const CIDR_RE = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/

export interface ServiceNetwork {
  cidr: Cidr
  nodePortRange: readonly [number, number]
}

/** Services: defaults, validation and the ClusterIP / NodePort allocators. */
export class ServiceStrategy implements Strategy {
  readonly ips: RangeAllocator
  readonly ports: RangeAllocator

  constructor (readonly net: ServiceNetwork) {
    this.ips = serviceIpAllocator(net.cidr)
    this.ports = nodePortAllocator(net.nodePortRange[0], net.nodePortRange[1])
  }

  // SetDefaults_Service plus the REST layer's defaulting (pkg/apis/core/v1/defaults.go).
  defaults = (o: KubeObject): void => {
    const spec = specOf(o)
    spec.type ??= 'ClusterIP'
    spec.sessionAffinity ??= 'None'
    if (spec.sessionAffinity === 'ClientIP') spec.sessionAffinityConfig ??= { clientIP: { timeoutSeconds: 10800 } }
    for (const p of portsOf(spec)) {
      p.protocol ??= 'TCP'
      if (p.targetPort === undefined || p.targetPort === 0 || p.targetPort === '') p.targetPort = p.port
    }
    if (spec.type === 'NodePort' || spec.type === 'LoadBalancer') spec.externalTrafficPolicy ??= 'Cluster'
    if (spec.type !== 'ExternalName') {
      spec.internalTrafficPolicy ??= 'Cluster'
      spec.ipFamilyPolicy ??= 'SingleStack'
      spec.ipFamilies ??= ['IPv4']
      const ip = spec.clusterIP
      const ips = spec.clusterIPs
      if (typeof ip === 'string' && ip !== '' && (!Array.isArray(ips) || ips.length === 0)) spec.clusterIPs = [ip]
      if ((ip === undefined || ip === '') && Array.isArray(ips) && typeof ips[0] === 'string') spec.clusterIP = ips[0]
    }
    if (spec.type === 'LoadBalancer') spec.allocateLoadBalancerNodePorts ??= true
    const status = asObj(o.status)
    o.status = status
    status.loadBalancer ??= {}
    // LoadBalancerIPMode (beta, on by default since 1.30): an ingress with an IP defaults to VIP.
    const ingress = asObj(status.loadBalancer).ingress
    if (Array.isArray(ingress)) {
      for (const ing of ingress) {
        const e = asObj(ing)
        if (typeof e.ip === 'string' && e.ip !== '' && e.ipMode === undefined) e.ipMode = 'VIP'
      }
    }
  }

  prepareCreate = (o: KubeObject): void => {
    o.status = { loadBalancer: {} }
  }

  // patchAllocatedValues and dropTypeDependentFields (pkg/registry/core/service/storage/storage.go).
  prepareUpdate = (next: KubeObject, old: KubeObject): void => {
    const n = specOf(next)
    const o = specOf(old)
    if (n.type !== 'ExternalName' && o.type !== 'ExternalName') {
      if ((n.clusterIP === undefined || n.clusterIP === '') && o.clusterIP !== undefined) {
        n.clusterIP = o.clusterIP
        n.clusterIPs = o.clusterIPs
      }
    }
    if (needsNodePorts(o) && needsNodePorts(n)) {
      // Matched by port name, as the real server does: renaming a port re-allocates.
      const byName = new Map<string, unknown>()
      for (const p of portsOf(o)) byName.set(p.name ?? '', p.nodePort)
      for (const p of portsOf(n)) {
        if (p.nodePort === undefined || p.nodePort === 0) {
          const prev = byName.get(p.name ?? '')
          if (typeof prev === 'number' && prev > 0) p.nodePort = prev
        }
      }
    }
    if (needsHealthCheckNodePort(o) && needsHealthCheckNodePort(n) && (n.healthCheckNodePort === undefined || n.healthCheckNodePort === 0)) {
      n.healthCheckNodePort = o.healthCheckNodePort
    }
    // A type change drops the fields the new type cannot carry, unless the user changed them.
    const sameNodePorts = JSON.stringify(portsOf(n).map((p) => p.nodePort)) === JSON.stringify(portsOf(o).map((p) => p.nodePort))
    if (!needsNodePorts(n) && n.type !== 'LoadBalancer' && n.type !== 'NodePort' && sameNodePorts) {
      for (const p of portsOf(n)) delete p.nodePort
    }
    if (!needsHealthCheckNodePort(n) && n.healthCheckNodePort === o.healthCheckNodePort) delete n.healthCheckNodePort
    if (n.type !== 'LoadBalancer' && n.allocateLoadBalancerNodePorts === o.allocateLoadBalancerNodePorts) delete n.allocateLoadBalancerNodePorts
    if (!externallyAccessible(n) && n.externalTrafficPolicy === o.externalTrafficPolicy) delete n.externalTrafficPolicy
    // Leaving LoadBalancer drops an unchanged class (canSetLoadBalancerClass).
    if (o.type === 'LoadBalancer' && n.type !== 'LoadBalancer' && n.loadBalancerClass === o.loadBalancerClass) delete n.loadBalancerClass
    // "Clear the load-balancer status if it is no longer appropriate": every
    // update of a non-LoadBalancer Service, so a type change takes the status
    // away before any load-balancer controller sees it.
    if (n.type !== 'LoadBalancer') next.status = { ...asObj(next.status), loadBalancer: {} }
    if (n.type === 'ExternalName' && o.type !== 'ExternalName' && n.clusterIP === o.clusterIP) {
      delete n.clusterIP
      delete n.clusterIPs
      delete n.ipFamilies
      delete n.ipFamilyPolicy
      delete n.internalTrafficPolicy
    }
  }

  validate = (o: KubeObject, old: KubeObject | undefined): StatusCause[] => {
    const spec = specOf(o)
    const errs: StatusCause[] = []
    const types = ['ClusterIP', 'ExternalName', 'LoadBalancer', 'NodePort']
    if (!types.includes(spec.type as string)) errs.push(fieldError.notSupported('spec.type', spec.type, types))
    const ports = portsOf(spec)
    if (spec.type === 'ExternalName') {
      if (typeof spec.externalName !== 'string' || spec.externalName === '') errs.push(fieldError.required('spec.externalName'))
      else if (!isDns1123Subdomain(spec.externalName.replace(/\.$/, ''))) errs.push(fieldError.invalid('spec.externalName', spec.externalName, 'must be a valid DNS name'))
    } else if (ports.length === 0 && spec.clusterIP !== 'None') {
      errs.push(fieldError.required('spec.ports'))
    }
    const names = new Set<string>()
    const portProto = new Set<string>()
    const nodePortProto = new Set<string>()
    ports.forEach((p, i) => {
      const f = `spec.ports[${i}]`
      if (ports.length > 1 && (p.name === undefined || p.name === '')) errs.push(fieldError.required(`${f}.name`))
      if (p.name !== undefined && p.name !== '') {
        if (!isDns1123Label(p.name)) errs.push(fieldError.invalid(`${f}.name`, p.name, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"))
        if (names.has(p.name)) errs.push(fieldError.duplicate(`${f}.name`, p.name))
        names.add(p.name)
      }
      if (!isPortNumber(p.port)) errs.push(fieldError.invalid(`${f}.port`, p.port, 'must be between 1 and 65535, inclusive'))
      if (!PROTOCOLS.includes(p.protocol as typeof PROTOCOLS[number])) errs.push(fieldError.notSupported(`${f}.protocol`, p.protocol, PROTOCOLS))
      const key = `${String(p.port)}/${String(p.protocol)}`
      if (portProto.has(key)) errs.push(fieldError.duplicate(f, key))
      portProto.add(key)
      const tp = p.targetPort
      if (!(isPortNumber(tp) || (typeof tp === 'string' && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(tp) && tp.length <= 15 && /[a-z]/.test(tp)))) {
        errs.push(fieldError.invalid(`${f}.targetPort`, tp, 'must contain at least one letter or number (a-z, 0-9)'))
      }
      if (p.nodePort !== undefined && p.nodePort !== 0) {
        if (spec.type === 'ClusterIP' || spec.type === 'ExternalName') {
          errs.push(fieldError.forbidden(`${f}.nodePort`, `may not be used when \`type\` is '${String(spec.type)}'`))
        } else if (!isPortNumber(p.nodePort)) {
          errs.push(fieldError.invalid(`${f}.nodePort`, p.nodePort, 'must be between 1 and 65535, inclusive'))
        } else {
          const nk = `${p.nodePort}/${String(p.protocol)}`
          if (nodePortProto.has(nk)) errs.push(fieldError.duplicate(`${f}.nodePort`, p.nodePort))
          nodePortProto.add(nk)
        }
      }
    })
    const etp = spec.externalTrafficPolicy
    if (externallyAccessible(spec)) {
      if (etp === undefined) errs.push(fieldError.required('spec.externalTrafficPolicy'))
      else if (etp !== 'Cluster' && etp !== 'Local') errs.push(fieldError.notSupported('spec.externalTrafficPolicy', etp, ['Cluster', 'Local']))
    } else if (etp !== undefined && etp !== '') {
      errs.push(fieldError.invalid('spec.externalTrafficPolicy', etp, 'may only be set for externally-accessible services'))
    }
    const hc = spec.healthCheckNodePort
    if (hc !== undefined && hc !== 0 && !needsHealthCheckNodePort(spec)) {
      errs.push(fieldError.invalid('spec.healthCheckNodePort', hc, "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
    }
    if (spec.allocateLoadBalancerNodePorts !== undefined && spec.type !== 'LoadBalancer') {
      errs.push(fieldError.forbidden('spec.allocateLoadBalancerNodePorts', "may only be used when `type` is 'LoadBalancer'"))
    }
    errs.push(...loadBalancerClassErrors(spec, old === undefined ? undefined : specOf(old)))
    if (!['None', 'ClientIP'].includes(spec.sessionAffinity as string)) errs.push(fieldError.notSupported('spec.sessionAffinity', spec.sessionAffinity, ['ClientIP', 'None']))
    if (Array.isArray(spec.loadBalancerSourceRanges) && spec.loadBalancerSourceRanges.length > 0) {
      if (spec.type !== 'LoadBalancer') errs.push(fieldError.forbidden('spec.loadBalancerSourceRanges', "may only be used when `type` is 'LoadBalancer'"))
      spec.loadBalancerSourceRanges.forEach((r: unknown, i: number) => {
        const m = typeof r === 'string' ? CIDR_RE.exec(r.trim()) : null
        const ok = m !== null && isIP(m[1] as string) !== 0 && Number(m[2]) <= (isIPv4(m[1] as string) ? 32 : 128)
        if (!ok) errs.push(fieldError.invalid(`spec.loadBalancerSourceRanges[${i}]`, r, 'must be a list of IP ranges. For example, 10.240.0.0/24,10.250.0.0/24 '))
      })
    }
    if (Array.isArray(spec.externalIPs)) {
      spec.externalIPs.forEach((ip: unknown, i: number) => {
        if (typeof ip !== 'string' || isIP(ip) === 0) errs.push(fieldError.invalid(`spec.externalIPs[${i}]`, ip, 'must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)'))
      })
    }
    if (spec.type !== 'ExternalName') {
      const fams = Array.isArray(spec.ipFamilies) ? spec.ipFamilies : []
      fams.forEach((f: unknown, i: number) => {
        if (f !== 'IPv4') errs.push(fieldError.invalid(`spec.ipFamilies[${i}]`, f, 'not configured on this cluster'))
      })
      if (spec.ipFamilyPolicy === 'RequireDualStack') errs.push(fieldError.invalid('spec.ipFamilyPolicy', spec.ipFamilyPolicy, 'this cluster is not configured for dual-stack services'))
      else if (!['SingleStack', 'PreferDualStack'].includes(spec.ipFamilyPolicy as string)) errs.push(fieldError.notSupported('spec.ipFamilyPolicy', spec.ipFamilyPolicy, ['PreferDualStack', 'RequireDualStack', 'SingleStack']))
      const ip = spec.clusterIP
      if (ip === 'None' && spec.type !== 'ClusterIP') errs.push(fieldError.invalid('spec.clusterIPs[0]', 'None', "may only be set when `type` is 'ClusterIP'"))
      if (typeof ip === 'string' && ip !== '' && ip !== 'None' && !isIPv4(ip)) errs.push(fieldError.invalid('spec.clusterIPs[0]', ip, 'must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)'))
      const ips = spec.clusterIPs
      if (Array.isArray(ips) && ips.length > 0 && ips[0] !== ip) errs.push(fieldError.invalid('spec.clusterIPs[0]', ips[0], 'must match `clusterIP`'))
    } else if (spec.clusterIP !== undefined && spec.clusterIP !== '') {
      errs.push(fieldError.forbidden('spec.clusterIP', 'may not be set for ExternalName services'))
    }
    if (old !== undefined) {
      const o = specOf(old)
      const oldIp = o.clusterIP
      if (spec.type !== 'ExternalName' && o.type !== 'ExternalName' && typeof oldIp === 'string' && oldIp !== '' && spec.clusterIP !== oldIp) {
        errs.push(fieldError.invalid('spec.clusterIPs[0]', [spec.clusterIP], 'may not change once set'))
      }
    }
    return errs
  }

  validateStatus = (o: KubeObject): StatusCause[] => {
    const errs: StatusCause[] = []
    const ingress = asObj(asObj(o.status).loadBalancer).ingress
    if (ingress === undefined || ingress === null) return errs
    if (!Array.isArray(ingress)) return [fieldError.invalid('status.loadBalancer.ingress', ingress, 'must be a list')]
    // ValidateLoadBalancerStatus since 1.29 (AllowServiceLBStatusOnNonLB off, locked off in 1.32).
    if (specOf(o).type !== 'LoadBalancer' && ingress.length > 0) {
      return [fieldError.forbidden('status.loadBalancer.ingress', "may only be used when `spec.type` is 'LoadBalancer'")]
    }
    ingress.forEach((raw: unknown, i: number) => {
      const e = asObj(raw)
      const f = `status.loadBalancer.ingress[${i}]`
      if (e.ip !== undefined && e.ip !== '' && (typeof e.ip !== 'string' || isIP(e.ip) === 0)) errs.push(fieldError.invalid(`${f}.ip`, e.ip, 'must be a valid IP address'))
      if (e.hostname !== undefined && e.hostname !== '') {
        if (typeof e.hostname !== 'string' || !isDns1123Subdomain(e.hostname)) errs.push(fieldError.invalid(`${f}.hostname`, e.hostname, 'a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters'))
        else if (isIP(e.hostname) !== 0) errs.push(fieldError.invalid(`${f}.hostname`, e.hostname, 'must be a DNS name, not an IP address'))
      }
      if (e.ipMode !== undefined) {
        if (e.ip === undefined || e.ip === '') errs.push(fieldError.forbidden(`${f}.ipMode`, 'may not be specified when `ip` is not set'))
        else if (e.ipMode !== 'VIP' && e.ipMode !== 'Proxy') errs.push(fieldError.notSupported(`${f}.ipMode`, e.ipMode, ['Proxy', 'VIP']))
      }
      if (e.ports !== undefined) {
        if (!Array.isArray(e.ports)) errs.push(fieldError.invalid(`${f}.ports`, e.ports, 'must be a list'))
        else {
          e.ports.forEach((rp: unknown, j: number) => {
            const p = asObj(rp)
            if (!isPortNumber(p.port)) errs.push(fieldError.invalid(`${f}.ports[${j}].port`, p.port, 'must be between 1 and 65535, inclusive'))
            if (!PROTOCOLS.includes(p.protocol as typeof PROTOCOLS[number])) errs.push(p.protocol === undefined ? fieldError.required(`${f}.ports[${j}].protocol`) : fieldError.notSupported(`${f}.ports[${j}].protocol`, p.protocol, PROTOCOLS))
          })
        }
      }
    })
    return errs
  }

  allocate = (o: KubeObject, old: KubeObject | undefined, tx: AllocationTx): void => {
    const spec = specOf(o)
    const name = o.metadata.name ?? ''
    const errs: StatusCause[] = []
    const oldSpec = old === undefined ? undefined : specOf(old)
    const oldIp = oldSpec === undefined || oldSpec.type === 'ExternalName' ? undefined : clusterIpOf(oldSpec)
    const range = `The range of valid IPs is ${this.net.cidr.text}`

    if (spec.type !== 'ExternalName') {
      const ip = spec.clusterIP
      if (ip === undefined || ip === '') {
        const n = this.ips.allocate()
        if (n === undefined) throw internalError('failed to allocate a serviceIP: range is full')
        tx.onRollback(() => this.ips.release(n))
        spec.clusterIP = intToIpv4(n)
        spec.clusterIPs = [spec.clusterIP]
      } else if (ip !== 'None' && ip !== oldIp) {
        const n = ipv4ToInt(ip as string)
        if (!this.ips.inRange(n)) errs.push(fieldError.invalid('spec.clusterIPs', [ip], `failed to allocate IP ${String(ip)}: the provided IP (${String(ip)}) is not in the valid range. ${range}`))
        else if (!this.ips.reserve(n)) errs.push(fieldError.invalid('spec.clusterIPs', [ip], `failed to allocate IP ${String(ip)}: provided IP is already allocated`))
        else tx.onRollback(() => this.ips.release(n))
      }
    }
    if (oldIp !== undefined && clusterIpOf(spec) !== oldIp) tx.onCommit(() => this.ips.release(ipv4ToInt(oldIp)))

    const held = oldSpec === undefined ? new Set<number>() : allocatedPorts(oldSpec)
    const taken = new Set<number>()
    const portRange = `The range of valid ports is ${this.net.nodePortRange[0]}-${this.net.nodePortRange[1]}`
    const claim = (v: number, field: string): void => {
      if (taken.has(v)) return
      if (held.has(v)) { taken.add(v); return }
      if (!this.ports.inRange(v)) { errs.push(fieldError.invalid(field, v, `provided port is not in the valid range. ${portRange}`)); return }
      if (!this.ports.reserve(v)) { errs.push(fieldError.invalid(field, v, 'provided port is already allocated')); return }
      taken.add(v)
      tx.onRollback(() => this.ports.release(v))
    }
    const fresh = (): number => {
      const v = this.ports.allocate()
      if (v === undefined) throw internalError('failed to allocate a nodePort: range is full')
      taken.add(v)
      tx.onRollback(() => this.ports.release(v))
      return v
    }
    if (spec.type === 'NodePort' || spec.type === 'LoadBalancer') {
      const ports = portsOf(spec)
      ports.forEach((p, i) => { if (typeof p.nodePort === 'number' && p.nodePort > 0) claim(p.nodePort, `spec.ports[${i}].nodePort`) })
      if (needsNodePorts(spec) && errs.length === 0) {
        // One nodePort per port number: TCP and UDP on the same port share it.
        const byNumber = new Map<unknown, number>()
        for (const p of ports) if (typeof p.nodePort === 'number' && p.nodePort > 0) byNumber.set(p.port, p.nodePort)
        for (const p of ports) {
          if (typeof p.nodePort === 'number' && p.nodePort > 0) continue
          const v = byNumber.get(p.port) ?? fresh()
          byNumber.set(p.port, v)
          p.nodePort = v
        }
      }
    }
    if (needsHealthCheckNodePort(spec) && errs.length === 0) {
      const hc = spec.healthCheckNodePort
      if (typeof hc === 'number' && hc > 0) claim(hc, 'spec.healthCheckNodePort')
      else spec.healthCheckNodePort = fresh()
    }
    if (errs.length > 0) {
      tx.rollback()
      throw invalid('Service', '', name, errs)
    }
    for (const v of held) if (!taken.has(v)) tx.onCommit(() => this.ports.release(v))
  }

  release = (o: KubeObject): void => {
    const spec = specOf(o)
    if (spec.type !== 'ExternalName') {
      const ip = clusterIpOf(spec)
      if (ip !== undefined) this.ips.release(ipv4ToInt(ip))
    }
    for (const v of allocatedPorts(spec)) this.ports.release(v)
  }
}

const namespaceStrategy: Strategy = {
  defaults (o) {
    const spec = specOf(o)
    spec.finalizers ??= ['kubernetes']
    const status = asObj(o.status)
    status.phase ??= 'Active'
    o.status = status
  },
  prepareCreate (o) {
    o.status = { phase: 'Active' }
  },
}

const ADDRESS_TYPES = ['FQDN', 'IPv4', 'IPv6']

const endpointSliceStrategy: Strategy = {
  defaults (o) {
    if (Array.isArray(o.ports)) {
      for (const p of o.ports) {
        const e = asObj(p)
        e.protocol ??= 'TCP'
      }
    }
    o.endpoints ??= []
  },
  validate (o) {
    const errs: StatusCause[] = []
    const at = o.addressType
    if (at === undefined) errs.push(fieldError.required('addressType'))
    else if (!ADDRESS_TYPES.includes(at as string)) errs.push(fieldError.notSupported('addressType', at, ADDRESS_TYPES))
    const eps = Array.isArray(o.endpoints) ? o.endpoints : []
    eps.forEach((raw: unknown, i: number) => {
      const addrs = asObj(raw).addresses
      if (!Array.isArray(addrs) || addrs.length === 0) { errs.push(fieldError.required(`endpoints[${i}].addresses`, 'must contain at least 1 address')); return }
      addrs.forEach((a: unknown, j: number) => {
        const f = `endpoints[${i}].addresses[${j}]`
        if (at === 'IPv4' && (typeof a !== 'string' || !isIPv4(a))) errs.push(fieldError.invalid(f, a, 'must be a valid IPv4 address'))
        if (at === 'IPv6' && (typeof a !== 'string' || isIP(a) !== 6)) errs.push(fieldError.invalid(f, a, 'must be a valid IPv6 address'))
      })
    })
    const ports = Array.isArray(o.ports) ? o.ports : []
    ports.forEach((raw: unknown, i: number) => {
      const p = asObj(raw)
      if (p.port !== undefined && p.port !== null && !(typeof p.port === 'number' && Number.isInteger(p.port) && p.port >= 0 && p.port <= 65535)) {
        errs.push(fieldError.invalid(`ports[${i}].port`, p.port, 'must be between 0 and 65535, inclusive'))
      }
      if (!PROTOCOLS.includes(p.protocol as typeof PROTOCOLS[number])) errs.push(fieldError.notSupported(`ports[${i}].protocol`, p.protocol, PROTOCOLS))
    })
    return errs
  },
}

const ingressStrategy: Strategy = {
  prepareCreate (o) {
    o.status = {}
  },
}

export function strategies (net: ServiceNetwork): { services: ServiceStrategy, byStorage: ReadonlyMap<string, Strategy> } {
  const services = new ServiceStrategy(net)
  const byStorage = new Map<string, Strategy>([
    ['services', services],
    ['namespaces', namespaceStrategy],
    ['endpointslices.discovery.k8s.io', endpointSliceStrategy],
    ['ingresses.networking.k8s.io', ingressStrategy],
  ])
  return { services, byStorage }
}
