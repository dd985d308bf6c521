// Discovery documents: the legacy ones (/api, /apis, /api/v1, /apis/G/V)
// that client-go and kubectl fall back to, and the aggregated
// apidiscovery.k8s.io/v2 list (KEP-3352) kubectl asks for first.

import { ALL_VERBS, RESOURCES, SUBRESOURCE_VERBS, apiVersionOf, groups, type ResourceDef } from './resources.js'

function served (group: string, version: string, defs: readonly ResourceDef[]): ResourceDef[] {
  return defs.filter((r) => r.group === group && r.version === version)
}

export function apiVersions (serverAddress: string): Record<string, unknown> {
  return {
    kind: 'APIVersions',
    versions: ['v1'],
    serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }],
  }
}

function groupEntry (group: string, versions: string[]): Record<string, unknown> {
  const vs = versions.map((v) => ({ groupVersion: `${group}/${v}`, version: v }))
  return { name: group, versions: vs, preferredVersion: vs[0] }
}

export function apiGroupList (defs: readonly ResourceDef[] = RESOURCES): Record<string, unknown> {
  return {
    kind: 'APIGroupList',
    apiVersion: 'v1',
    groups: groups(defs).filter((g) => g.group !== '').map((g) => groupEntry(g.group, g.versions)),
  }
}

export function apiGroup (group: string, defs: readonly ResourceDef[] = RESOURCES): Record<string, unknown> | undefined {
  const g = groups(defs).find((x) => x.group === group && group !== '')
  if (g === undefined) return undefined
  return { kind: 'APIGroup', apiVersion: 'v1', ...groupEntry(g.group, g.versions) }
}

export function apiResourceList (group: string, version: string, all: readonly ResourceDef[] = RESOURCES): Record<string, unknown> | undefined {
  const defs = served(group, version, all)
  if (defs.length === 0) return undefined
  const resources: Array<Record<string, unknown>> = []
  for (const r of defs) {
    const e: Record<string, unknown> = { name: r.plural, singularName: r.singular, namespaced: r.namespaced, kind: r.kind, verbs: [...ALL_VERBS] }
    if (r.shortNames.length > 0) e.shortNames = r.shortNames
    if (r.categories.length > 0) e.categories = r.categories
    resources.push(e)
    if (r.statusSubresource) resources.push({ name: `${r.plural}/status`, singularName: '', namespaced: r.namespaced, kind: r.kind, verbs: [...SUBRESOURCE_VERBS] })
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: apiVersionOf({ group, version }), resources }
}

/** The apidiscovery.k8s.io list for /api (legacy core) or /apis (named groups). */
export function aggregatedDiscovery (legacy: boolean, apiVersion: string, defs: readonly ResourceDef[] = RESOURCES): Record<string, unknown> {
  const items = groups(defs).filter((g) => (g.group === '') === legacy).map((g) => ({
    metadata: legacy ? { creationTimestamp: null } : { name: g.group, creationTimestamp: null },
    versions: g.versions.map((v) => ({
      version: v,
      resources: served(g.group, v, defs).map((r) => {
        const kind = { group: r.group, version: r.version, kind: r.kind }
        const e: Record<string, unknown> = {
          resource: r.plural,
          responseKind: kind,
          scope: r.namespaced ? 'Namespaced' : 'Cluster',
          singularResource: r.singular,
          verbs: [...ALL_VERBS],
        }
        if (r.shortNames.length > 0) e.shortNames = r.shortNames
        if (r.categories.length > 0) e.categories = r.categories
        if (r.statusSubresource) e.subresources = [{ subresource: 'status', responseKind: kind, verbs: [...SUBRESOURCE_VERBS] }]
        return e
      }),
      freshness: 'Current',
    })),
  }))
  return { kind: 'APIGroupDiscoveryList', apiVersion, metadata: {}, items }
}
