// CustomResourceDefinitions, served as a real API server serves them: a CRD
// written to apiextensions.k8s.io/v1 makes its resources appear at once in
// discovery (legacy and aggregated), in OpenAPI v3 (so kubectl delegates
// validation to the server), and at their URLs for get/list/watch/create/
// update/patch/delete, with a /status subresource when the CRD asks for one.
// Every served version shares one storage (conversion strategy None: the
// object is presented with the version asked for). Deleting the CRD deletes
// its objects (watchers see DELETED) and the resources leave discovery.
// Schemas are not enforced (the CRD's structural schema and CEL rules are
// out of scope); the CRD's own shape is validated.

import { fieldError, type StatusCause } from './status.js'
import { RESOURCES, makeDef, resourceKey, type KubeObject, type ResourceDef } from './resources.js'
import type { Strategy } from './strategies.js'

export const CRD_STORAGE = 'customresourcedefinitions.apiextensions.k8s.io'

type Obj = Record<string, unknown>

function asObj (v: unknown): Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? v as Obj : {}
}

function strings (v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []
}

interface CrdVersion { name: string, served: boolean, storage: boolean, status: boolean }

function versionsOf (spec: Obj): CrdVersion[] {
  const out: CrdVersion[] = []
  for (const raw of Array.isArray(spec.versions) ? spec.versions : []) {
    const v = asObj(raw)
    if (typeof v.name !== 'string') continue
    out.push({ name: v.name, served: v.served === true, storage: v.storage === true, status: asObj(v.subresources).status !== undefined })
  }
  return out
}

/** The ResourceDefs a CRD serves (its served versions), or [] when it is not well formed. */
export function defsOfCrd (crd: KubeObject): ResourceDef[] {
  const spec = asObj(crd.spec)
  const names = asObj(spec.names)
  const group = spec.group
  const kind = names.kind
  const plural = names.plural
  if (typeof group !== 'string' || typeof kind !== 'string' || typeof plural !== 'string') return []
  const namespaced = spec.scope !== 'Cluster'
  return versionsOf(spec).filter((v) => v.served).map((v) => makeDef({
    group,
    version: v.name,
    kind,
    plural,
    singular: typeof names.singular === 'string' && names.singular !== '' ? names.singular : kind.toLowerCase(),
    namespaced,
    shortNames: strings(names.shortNames),
    categories: strings(names.categories),
    statusSubresource: v.status,
    // Custom resources: generation moves on any change but metadata (and status, with the subresource).
    generation: v.status ? 'spec' : 'content',
    crd: crd.metadata.name as string,
  }))
}

function validateCrd (o: KubeObject): StatusCause[] {
  const errs: StatusCause[] = []
  const spec = asObj(o.spec)
  const names = asObj(spec.names)
  const group = spec.group
  if (typeof group !== 'string' || group === '') errs.push(fieldError.required('spec.group'))
  else if (!group.includes('.')) errs.push(fieldError.invalid('spec.group', group, 'should be a domain with at least one dot'))
  if (typeof names.plural !== 'string' || names.plural === '') errs.push(fieldError.required('spec.names.plural'))
  if (typeof names.kind !== 'string' || names.kind === '') errs.push(fieldError.required('spec.names.kind'))
  if (typeof group === 'string' && typeof names.plural === 'string' && o.metadata.name !== `${names.plural}.${group}`) {
    errs.push(fieldError.invalid('metadata.name', o.metadata.name, 'must be spec.names.plural+"."+spec.group'))
  }
  if (spec.scope !== 'Namespaced' && spec.scope !== 'Cluster') errs.push(fieldError.invalid('spec.scope', spec.scope, 'must be either Namespaced or Cluster'))
  const versions = versionsOf(spec)
  if (versions.length === 0) errs.push(fieldError.required('spec.versions', 'must have exactly one version marked as storage version'))
  else if (versions.filter((v) => v.storage).length !== 1) errs.push(fieldError.invalid('spec.versions', versions.map((v) => v.name), 'must have exactly one version marked as storage version'))
  return errs
}

/** The status the apiextensions controllers write: names accepted, established. */
function establish (o: KubeObject): void {
  const spec = asObj(o.spec)
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
  const stored = versionsOf(spec).filter((v) => v.storage).map((v) => v.name)
  const prev = asObj(o.status)
  const old = strings(prev.storedVersions)
  o.status = {
    acceptedNames: spec.names,
    conditions: [
      { type: 'NamesAccepted', status: 'True', reason: 'NoConflicts', message: 'no conflicts found', lastTransitionTime: now },
      { type: 'Established', status: 'True', reason: 'InitialNamesAccepted', message: 'the initial names have been accepted', lastTransitionTime: now },
    ],
    storedVersions: [...new Set([...old, ...stored])],
  }
}

export const crdStrategy: Strategy = {
  prepareCreate: establish,
  prepareUpdate: (next) => { establish(next) },
  validate: (o) => validateCrd(o),
}

/** The resources one API server serves: the built-in ones and those of its CRDs. */
export class Catalog {
  readonly #custom = new Map<string, ResourceDef[]>()
  #all: readonly ResourceDef[] = RESOURCES

  get all (): readonly ResourceDef[] {
    return this.#all
  }

  /** Follow a CRD write. Returns the storage key to drop when a CRD went away (or stopped serving). */
  apply (type: 'ADDED' | 'MODIFIED' | 'DELETED', crd: KubeObject): string | undefined {
    const name = crd.metadata.name as string
    const before = this.#custom.get(name)
    const defs = type === 'DELETED' ? [] : defsOfCrd(crd)
    // Built-in resources cannot be shadowed.
    const usable = defs.filter((d) => !RESOURCES.some((r) => r.group === d.group))
    if (usable.length === 0) this.#custom.delete(name)
    else this.#custom.set(name, usable)
    this.#all = [...RESOURCES, ...[...this.#custom.values()].flat()]
    const storage = before?.[0] !== undefined ? resourceKey(before[0]) : undefined
    return storage !== undefined && usable.length === 0 ? storage : undefined
  }
}
