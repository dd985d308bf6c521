// The three patch formats kube-apiserver accepts besides server-side apply:
// RFC 7386 JSON merge patch, RFC 6902 JSON patch, and strategic merge patch
// (k8s.io/apimachinery/pkg/util/strategicpatch), driven by the list
// strategies in resources.ts.

import { isDeepStrictEqual } from 'node:util'
import { badRequest, ApiStatusError, type StatusBody } from './status.js'
import type { ListStrategy } from './resources.js'

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json }
type JsonMap = { [k: string]: Json }

export function isMap (v: unknown): v is JsonMap {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function clone<T> (v: T): T {
  return structuredClone(v)
}

/** 422 for a patch that decodes but does not apply (jsonpatch errors in kube's patcher). */
function unprocessable (message: string): ApiStatusError {
  const body: StatusBody = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: 'Invalid', details: { causes: [{ reason: 'FieldValueInvalid', message }] }, code: 422 }
  return new ApiStatusError(body)
}

// RFC 7386 §2: null removes a member; a non-object patch replaces the target.
export function mergePatch (target: Json | undefined, patch: Json): Json {
  if (!isMap(patch)) return clone(patch)
  const out: JsonMap = isMap(target) ? clone(target) : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = mergePatch(out[k], v)
  }
  return out
}

// RFC 6901 JSON pointer.
function parsePointer (p: string): string[] {
  if (p === '') return []
  if (!p.startsWith('/')) throw unprocessable(`invalid JSON pointer: ${JSON.stringify(p)}`)
  return p.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'))
}

function arrayIndex (tok: string, len: number, allowEnd: boolean): number {
  if (allowEnd && tok === '-') return len
  if (!/^(0|[1-9][0-9]*)$/.test(tok)) throw unprocessable(`invalid array index: ${tok}`)
  const i = Number(tok)
  if (i > len || (!allowEnd && i === len)) throw unprocessable(`array index out of bounds: ${tok}`)
  return i
}

function parentOf (doc: Json, tokens: string[], path: string): { parent: Json, last: string } {
  let cur: Json = doc
  for (const tok of tokens.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(tok, cur.length, false)] as Json
    else if (isMap(cur) && Object.hasOwn(cur, tok)) cur = cur[tok] as Json
    else throw unprocessable(`doc is missing path: "${path}": missing value`)
  }
  return { parent: cur, last: tokens[tokens.length - 1] as string }
}

function getAt (doc: Json, path: string): Json {
  const tokens = parsePointer(path)
  if (tokens.length === 0) return doc
  const { parent, last } = parentOf(doc, tokens, path)
  if (Array.isArray(parent)) return parent[arrayIndex(last, parent.length, false)] as Json
  if (isMap(parent) && Object.hasOwn(parent, last)) return parent[last] as Json
  throw unprocessable(`doc is missing path: "${path}": missing value`)
}

function addAt (doc: Json, path: string, value: Json): Json {
  const tokens = parsePointer(path)
  if (tokens.length === 0) return value
  const { parent, last } = parentOf(doc, tokens, path)
  if (Array.isArray(parent)) parent.splice(arrayIndex(last, parent.length, true), 0, value)
  else if (isMap(parent)) parent[last] = value
  else throw unprocessable(`doc is missing path: "${path}": missing value`)
  return doc
}

function removeAt (doc: Json, path: string): Json {
  const tokens = parsePointer(path)
  if (tokens.length === 0) throw unprocessable('cannot remove the whole document')
  const { parent, last } = parentOf(doc, tokens, path)
  if (Array.isArray(parent)) parent.splice(arrayIndex(last, parent.length, false), 1)
  else if (isMap(parent) && Object.hasOwn(parent, last)) delete parent[last]
  else throw unprocessable(`doc is missing path: "${path}": missing value`)
  return doc
}

// RFC 6902 §4: operations apply in order; any failure aborts the whole patch.
export function jsonPatch (doc: Json, ops: Json): Json {
  if (!Array.isArray(ops)) throw badRequest('json: cannot unmarshal object into Go value of type jsonpatch.Patch')
  let out = clone(doc)
  for (const raw of ops) {
    if (!isMap(raw) || typeof raw.op !== 'string' || typeof raw.path !== 'string') throw badRequest('invalid JSON patch operation: missing op or path')
    const path = raw.path
    const from = typeof raw.from === 'string' ? raw.from : undefined
    const needsValue = raw.op === 'add' || raw.op === 'replace' || raw.op === 'test'
    if (needsValue && !Object.hasOwn(raw, 'value')) throw unprocessable(`missing value for ${raw.op} operation`)
    const value = raw.value as Json
    switch (raw.op) {
      case 'add':
        out = addAt(out, path, clone(value))
        break
      case 'remove':
        out = removeAt(out, path)
        break
      case 'replace':
        getAt(out, path)
        if (path === '') { out = clone(value); break }
        out = addAt(removeAt(out, path), path, clone(value))
        break
      case 'move': {
        if (from === undefined) throw unprocessable('missing from for move operation')
        if (path.startsWith(from + '/')) throw unprocessable(`cannot move ${from} into its own child ${path}`)
        const v = getAt(out, from)
        out = addAt(removeAt(out, from), path, v)
        break
      }
      case 'copy': {
        if (from === undefined) throw unprocessable('missing from for copy operation')
        out = addAt(out, path, clone(getAt(out, from)))
        break
      }
      case 'test':
        if (!isDeepStrictEqual(getAt(out, path), value)) throw unprocessable(`testing value ${path} failed: test failed`)
        break
      default:
        throw badRequest(`Unexpected kind: ${raw.op}`)
    }
  }
  return out
}

// Strategic merge patch directives (strategicpatch/patch.go).
const DIRECTIVE = '$patch'
const RETAIN_KEYS = '$retainKeys'
const DELETE_PRIMITIVE = '$deleteFromPrimitiveList/'
const SET_ORDER = '$setElementOrder/'

function stripDirectives (v: Json): Json {
  if (Array.isArray(v)) return v.filter((x) => !(isMap(x) && x[DIRECTIVE] !== undefined && Object.keys(x).length === 1)).map(stripDirectives)
  if (!isMap(v)) return v
  const out: JsonMap = {}
  for (const [k, x] of Object.entries(v)) if (!k.startsWith('$')) out[k] = stripDirectives(x)
  return out
}

/**
 * Applies a strategic merge patch. `lists` maps dotted paths (from the object
 * root, list items transparent) to their patch strategy; any other list is
 * replaced, as lists without a `patchStrategy` tag are.
 */
export function strategicMerge (original: Json, patch: Json, lists: Readonly<Record<string, ListStrategy>>): Json {
  if (!isMap(patch)) throw badRequest('strategic merge patch must be a JSON object')
  const r = mergeMap(isMap(original) ? original : {}, patch, '', lists)
  return r ?? {}
}

function mergeMap (orig: JsonMap, patch: JsonMap, path: string, lists: Readonly<Record<string, ListStrategy>>): JsonMap | undefined {
  const directive = patch[DIRECTIVE]
  if (directive === 'delete') return undefined
  if (directive === 'replace') return stripDirectives(patch) as JsonMap
  if (directive !== undefined && directive !== 'merge') throw badRequest(`unknown patch type: ${String(directive)} in map: ${JSON.stringify(patch)}`)
  const out: JsonMap = clone(orig)
  const orders: Array<[string, Json]> = []
  for (const [k, v] of Object.entries(patch)) {
    if (!k.startsWith(DELETE_PRIMITIVE)) continue
    const field = k.slice(DELETE_PRIMITIVE.length)
    if (!Array.isArray(v)) throw badRequest(`${k} must be a list`)
    const cur = out[field]
    if (Array.isArray(cur)) out[field] = cur.filter((x) => !v.some((d) => isDeepStrictEqual(d, x)))
  }
  for (const [k, v] of Object.entries(patch)) {
    if (k === DIRECTIVE || k === RETAIN_KEYS || k.startsWith(DELETE_PRIMITIVE)) continue
    if (k.startsWith(SET_ORDER)) { orders.push([k.slice(SET_ORDER.length), v]); continue }
    const child = path === '' ? k : `${path}.${k}`
    if (v === null) { delete out[k]; continue }
    if (isMap(v)) {
      const merged = mergeMap(isMap(out[k]) ? out[k] : {}, v, child, lists)
      if (merged === undefined) delete out[k]
      else out[k] = merged
      continue
    }
    if (Array.isArray(v)) {
      const strategy = lists[child]
      out[k] = strategy === undefined ? stripDirectives(v) : mergeList(Array.isArray(out[k]) ? out[k] : [], v, strategy, child, lists)
      continue
    }
    out[k] = v
  }
  for (const [field, order] of orders) {
    const cur = out[field]
    const strategy = lists[path === '' ? field : `${path}.${field}`]
    if (Array.isArray(cur) && Array.isArray(order)) out[field] = applyOrder(cur, order, strategy?.mergeKey)
  }
  const retain = patch[RETAIN_KEYS]
  if (Array.isArray(retain)) {
    for (const k of Object.keys(out)) if (!retain.includes(k)) delete out[k]
  }
  return out
}

function mergeList (orig: Json[], patch: Json[], strategy: ListStrategy, path: string, lists: Readonly<Record<string, ListStrategy>>): Json[] {
  if (patch.some((x) => isMap(x) && x[DIRECTIVE] === 'replace')) return stripDirectives(patch) as Json[]
  const key = strategy.mergeKey
  if (key === undefined) {
    // patchStrategy=merge on scalars: a set union in original order (metadata.finalizers).
    const out = clone(orig)
    for (const v of patch) if (!out.some((x) => isDeepStrictEqual(x, v))) out.push(clone(v))
    return out
  }
  let out = clone(orig)
  for (const item of patch) {
    if (!isMap(item)) throw badRequest(`expected a map in list ${path} with merge key ${key}, got ${JSON.stringify(item)}`)
    if (!Object.hasOwn(item, key)) throw badRequest(`map: ${JSON.stringify(item)} does not contain declared merge key: ${key}`)
    const id = item[key]
    if (item[DIRECTIVE] === 'delete') {
      out = out.filter((x) => !(isMap(x) && isDeepStrictEqual(x[key], id)))
      continue
    }
    const idx = out.findIndex((x) => isMap(x) && isDeepStrictEqual(x[key], id))
    if (idx === -1) out.push(mergeMap({}, item, path, lists) ?? {})
    else out[idx] = mergeMap(out[idx] as JsonMap, item, path, lists) ?? {}
  }
  return out
}

function applyOrder (items: Json[], order: Json[], key: string | undefined): Json[] {
  const rank = (x: Json): number => {
    const i = order.findIndex((o) => key === undefined ? isDeepStrictEqual(o, x) : isMap(o) && isMap(x) && isDeepStrictEqual(o[key], x[key]))
    return i === -1 ? order.length : i
  }
  return items.map((x, i) => ({ x, i, r: rank(x) })).sort((a, b) => a.r - b.r || a.i - b.i).map((e) => e.x)
}

export type PatchType = 'json' | 'merge' | 'strategic'

export const PATCH_CONTENT_TYPES: Readonly<Record<string, PatchType>> = {
  'application/json-patch+json': 'json',
  'application/merge-patch+json': 'merge',
  'application/strategic-merge-patch+json': 'strategic',
}

export function applyPatch (type: PatchType, doc: Json, patch: Json, lists: Readonly<Record<string, ListStrategy>>): Json {
  switch (type) {
    case 'json': return jsonPatch(doc, patch)
    case 'merge': return mergePatch(doc, patch)
    case 'strategic': return strategicMerge(doc, patch, lists)
  }
}
