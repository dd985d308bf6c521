// Kubernetes `Status` bodies, shaped as kube-apiserver sends them
// (k8s.io/apimachinery/pkg/api/errors). Clients branch on `code` and
// `reason` (client-node's informer re-lists on code 410; client-go's
// IsConflict looks at reason), so both must match the real server exactly.

import { KtError } from '../errors.js'

export interface StatusCause {
  reason: string
  message: string
  field?: string
}

export interface StatusDetails {
  name?: string
  group?: string
  kind?: string
  uid?: string
  causes?: StatusCause[]
  retryAfterSeconds?: number
}

export interface StatusBody {
  kind: 'Status'
  apiVersion: 'v1'
  metadata: Record<string, never>
  status: 'Failure' | 'Success'
  message?: string
  reason?: string
  details?: StatusDetails
  code: number
}

/**
 * An API error. The HTTP layer sends `body` with status `statusCode`; the
 * in-process hooks throw it as is, so tests can assert `err.reason`.
 */
export class ApiStatusError extends KtError {
  readonly statusCode: number
  readonly reason: string
  readonly body: StatusBody
  constructor (body: StatusBody) {
    super('KT_ERR_SIM_REQUEST', body.message ?? body.reason ?? 'request refused')
    this.name = 'ApiStatusError'
    this.statusCode = body.code
    this.reason = body.reason ?? ''
    this.body = body
  }
}

/** What an error names: a group-qualified plural, as in `services "web" not found`. */
export interface ResourceRef {
  group: string
  plural: string
}

function qualified (r: ResourceRef): string {
  return r.group === '' ? r.plural : `${r.plural}.${r.group}`
}

function failure (code: number, reason: string, message: string, details?: StatusDetails): ApiStatusError {
  const body: StatusBody = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }
  if (details !== undefined) body.details = details
  return new ApiStatusError(body)
}

function refDetails (r: ResourceRef, name: string): StatusDetails {
  const d: StatusDetails = { name, kind: r.plural }
  if (r.group !== '') d.group = r.group
  return d
}

export function notFound (r: ResourceRef, name: string): ApiStatusError {
  return failure(404, 'NotFound', `${qualified(r)} "${name}" not found`, refDetails(r, name))
}

/** Unknown path or resource: the body kube-apiserver's NotFound handler sends. */
export function pathNotFound (): ApiStatusError {
  return failure(404, 'NotFound', 'the server could not find the requested resource', {})
}

export function alreadyExists (r: ResourceRef, name: string): ApiStatusError {
  return failure(409, 'AlreadyExists', `${qualified(r)} "${name}" already exists`, refDetails(r, name))
}

/** The optimistic-concurrency message client-go's retry.RetryOnConflict expects. */
export const MODIFIED_MESSAGE = 'the object has been modified; please apply your changes to the latest version and try again'

export function conflict (r: ResourceRef, name: string, why: string = MODIFIED_MESSAGE): ApiStatusError {
  return failure(409, 'Conflict', `Operation cannot be fulfilled on ${qualified(r)} "${name}": ${why}`, refDetails(r, name))
}

export function badRequest (message: string): ApiStatusError {
  return failure(400, 'BadRequest', message)
}

export function unauthorized (): ApiStatusError {
  return failure(401, 'Unauthorized', 'Unauthorized')
}

export function forbidden (r: ResourceRef, name: string, why: string): ApiStatusError {
  const subject = name === '' ? qualified(r) : `${qualified(r)} "${name}"`
  return failure(403, 'Forbidden', `${subject} is forbidden: ${why}`, refDetails(r, name))
}

export function methodNotAllowed (): ApiStatusError {
  return failure(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource', {})
}

export function notAcceptable (): ApiStatusError {
  return failure(406, 'NotAcceptable', 'only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io')
}

/** 410: the RV is older than the retained history. client-node re-lists on code 410. */
export function expired (message: string): ApiStatusError {
  return failure(410, 'Expired', message)
}

export function requestTooLarge (limit: number): ApiStatusError {
  return failure(413, 'RequestEntityTooLarge', `Request entity too large: limit is ${limit}`)
}

export function unsupportedMediaType (message: string): ApiStatusError {
  return failure(415, 'UnsupportedMediaType', message)
}

export function tooManyRequests (retryAfterSeconds: number): ApiStatusError {
  return failure(429, 'TooManyRequests', 'Too many requests, please try again later.', { retryAfterSeconds })
}

export function internalError (message: string): ApiStatusError {
  return failure(500, 'InternalError', `Internal error occurred: ${message}`, { causes: [{ reason: '', message }] })
}

export function serviceUnavailable (message: string): ApiStatusError {
  return failure(503, 'ServiceUnavailable', message)
}

/** 504 for an RV newer than the store (kube-apiserver's watch cache answers the same). */
export function tooLargeResourceVersion (requested: number, current: number): ApiStatusError {
  return failure(504, 'Timeout', `Timeout: Too large resource version: ${requested}, current: ${current}`, {
    causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
    retryAfterSeconds: 1,
  })
}

/** A failure with an arbitrary code, for the fault-injection hook. */
export function injected (code: number, retryAfterSeconds?: number): ApiStatusError {
  const reasons: Record<number, string> = { 429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable', 504: 'Timeout' }
  const details: StatusDetails = {}
  if (retryAfterSeconds !== undefined) details.retryAfterSeconds = retryAfterSeconds
  return failure(code, reasons[code] ?? 'Unknown', `injected failure (HTTP ${code})`, details)
}

// Field errors (k8s.io/apimachinery/pkg/util/validation/field). The cause
// message leaves out the field path; the top-level message repeats it.

/** Go's %#v-ish rendering that kube uses in "Invalid value: X". */
function goValue (v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v)
  if (Array.isArray(v)) return `[]string{${v.map((x) => JSON.stringify(String(x))).join(', ')}}`
  return String(v)
}

export const fieldError = {
  invalid (field: string, value: unknown, detail: string): StatusCause {
    return { reason: 'FieldValueInvalid', message: `Invalid value: ${goValue(value)}: ${detail}`, field }
  },
  required (field: string, detail = ''): StatusCause {
    return { reason: 'FieldValueRequired', message: detail === '' ? 'Required value' : `Required value: ${detail}`, field }
  },
  duplicate (field: string, value: unknown): StatusCause {
    return { reason: 'FieldValueDuplicate', message: `Duplicate value: ${goValue(value)}`, field }
  },
  notSupported (field: string, value: unknown, supported: readonly string[]): StatusCause {
    return {
      reason: 'FieldValueNotSupported',
      message: `Unsupported value: ${goValue(value)}: supported values: ${supported.map((s) => JSON.stringify(s)).join(', ')}`,
      field,
    }
  },
  forbidden (field: string, detail: string): StatusCause {
    return { reason: 'FieldValueForbidden', message: `Forbidden: ${detail}`, field }
  },
}

/** 422 Invalid, with one cause per field error, as kube's NewInvalid builds it. */
export function invalid (kind: string, group: string, name: string, causes: StatusCause[]): ApiStatusError {
  const parts = causes.map((c) => c.field === undefined ? c.message : `${c.field}: ${c.message}`)
  const summary = parts.length === 1 ? parts[0] as string : `[${parts.join(', ')}]`
  const details: StatusDetails = { name, kind, causes }
  if (group !== '') details.group = group
  return failure(422, 'Invalid', `${kind} "${name}" is invalid: ${summary}`, details)
}

export function success (details: StatusDetails): StatusBody {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details, code: 200 }
}
