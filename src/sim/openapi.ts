// A minimal OpenAPI v3 surface. kubectl create/replace/apply validate by
// default (--validate=strict): they fetch /openapi/v3, and for the object's
// group-version look for a PATCH operation tagged with its
// x-kubernetes-group-version-kind that declares a `fieldValidation` query
// parameter; if found they delegate validation to the server. Without any
// OpenAPI kubectl refuses to create. Schemas are left empty: `kubectl
// explain` and client-side apply schemas are out of scope.

import { createHash } from 'node:crypto'
import { RESOURCES, groups, type ResourceDef } from './resources.js'

function gvPath (group: string, version: string): string {
  return group === '' ? `api/${version}` : `apis/${group}/${version}`
}

export function openapiV3Doc (group: string, version: string, all: readonly ResourceDef[] = RESOURCES): Record<string, unknown> | undefined {
  const defs = all.filter((r) => r.group === group && r.version === version)
  if (defs.length === 0) return undefined
  const paths: Record<string, unknown> = {}
  for (const r of defs) {
    const base = `/${gvPath(group, version)}` + (r.namespaced ? `/namespaces/{namespace}/${r.plural}` : `/${r.plural}`)
    const gvk = { group, version, kind: r.kind }
    const op = (action: string, id: string): Record<string, unknown> => ({
      operationId: id,
      'x-kubernetes-action': action,
      'x-kubernetes-group-version-kind': gvk,
      parameters: [
        { name: 'dryRun', in: 'query', schema: { type: 'string', uniqueItems: true } },
        { name: 'fieldManager', in: 'query', schema: { type: 'string', uniqueItems: true } },
        { name: 'fieldValidation', in: 'query', schema: { type: 'string', uniqueItems: true } },
      ],
      responses: { 200: { description: 'OK' } },
    })
    const id = `${group === '' ? 'core' : group.split('.')[0]}${version}${r.kind}`
    paths[base] = { post: op('post', `create${id}`) }
    paths[`${base}/{name}`] = { put: op('put', `replace${id}`), patch: op('patch', `patch${id}`) }
  }
  return {
    openapi: '3.0.0',
    info: { title: 'Kubernetes', version: 'v1.32.0' },
    paths,
    components: { schemas: {} },
  }
}

export function openapiV3Root (defs: readonly ResourceDef[] = RESOURCES): Record<string, unknown> {
  const paths: Record<string, unknown> = {}
  for (const g of groups(defs)) {
    for (const v of g.versions) {
      const p = gvPath(g.group, v)
      const hash = createHash('sha512').update(JSON.stringify(openapiV3Doc(g.group, v, defs))).digest('hex').toUpperCase()
      paths[p] = { serverRelativeURL: `/openapi/v3/${p}?hash=${hash}` }
    }
  }
  return { paths }
}

/** Maps `/openapi/v3/api/v1` or `/openapi/v3/apis/G/V` segments to a document. */
export function openapiV3ForSegments (segs: string[], defs: readonly ResourceDef[] = RESOURCES): Record<string, unknown> | undefined {
  if (segs[0] === 'api' && segs.length === 2) return openapiV3Doc('', segs[1] as string, defs)
  if (segs[0] === 'apis' && segs.length === 3) return openapiV3Doc(segs[1] as string, segs[2] as string, defs)
  return undefined
}
