// The kind-tunnel side of @kubernetes/client-node: loading a kubeconfig,
// the typed API clients, per-request timeouts and content types, and the
// mapping of API failures to KT_ERR_* codes. control/ is the only importer of
// the client in the product (design.md, module boundaries).

import { existsSync } from 'node:fs'
import {
  ApisApi, CoreV1Api, CustomObjectsApi, DiscoveryV1Api, KubeConfig, NetworkingV1Api, Observable,
  type Cluster, type ConfigurationOptions, type ObservableMiddleware, type RequestContext, type ResponseContext,
} from '@kubernetes/client-node'
import { InvalidArgumentError, KtError, type ErrorCode } from '../errors.js'

export const RBAC_DOC = 'docs/rbac.yaml'

/** An API failure with the HTTP status (when there was one) and the Status reason. */
export class KubeApiError extends KtError {
  readonly status: number | undefined
  readonly reason: string | undefined
  constructor (code: ErrorCode, message: string, o: { status?: number | undefined, reason?: string | undefined, cause?: unknown } = {}) {
    super(code, message, { cause: o.cause })
    this.name = 'KubeApiError'
    this.status = o.status
    this.reason = o.reason
  }
}

/** What a request did, for error messages: `patch services/status "default/web"`. */
export interface KubeOp {
  readonly verb: string
  /** Plural, with `/status` for the subresource. */
  readonly resource: string
  readonly namespace?: string | undefined
  readonly name?: string | undefined
}

function describeOp (op: KubeOp): string {
  if (op.name !== undefined) return `${op.verb} ${op.resource} "${op.namespace !== undefined ? `${op.namespace}/` : ''}${op.name}"`
  return `${op.verb} ${op.resource}${op.namespace !== undefined ? ` in namespace ${op.namespace}` : ' (all namespaces)'}`
}

function httpStatusOf (err: unknown): number | undefined {
  if (err === null || typeof err !== 'object') return undefined
  const e = err as { code?: unknown, statusCode?: unknown }
  // ApiException carries the HTTP status in `code`; Watch errors in `statusCode`.
  if (typeof e.statusCode === 'number') return e.statusCode
  if (typeof e.code === 'number') return e.code
  return undefined
}

/** The Kubernetes Status (message, reason) in an ApiException body, when it has one. */
function statusOf (err: unknown): { message?: string, reason?: string } {
  if (err === null || typeof err !== 'object') return {}
  let body = (err as { body?: unknown }).body
  if (typeof body === 'string') {
    try { body = JSON.parse(body) } catch { return {} }
  }
  if (body === null || typeof body !== 'object') return {}
  const b = body as { message?: unknown, reason?: unknown }
  return {
    ...(typeof b.message === 'string' ? { message: b.message.slice(0, 300) } : {}),
    ...(typeof b.reason === 'string' ? { reason: b.reason } : {}),
  }
}

/**
 * Map any failure of an API request to a KtError: 401/403 → KT_ERR_KUBE_FORBIDDEN
 * (naming the verb and resource, pointing at docs/rbac.yaml), 409 →
 * KT_ERR_KUBE_CONFLICT, anything else → KT_ERR_KUBE_API. KtErrors pass through.
 */
export function kubeError (err: unknown, op: KubeOp): KtError {
  if (err instanceof KtError) return err
  const status = httpStatusOf(err)
  const st = statusOf(err)
  const what = describeOp(op)
  const detail = st.message !== undefined ? `: ${st.message}` : ''
  if (status === 401) {
    return new KubeApiError('KT_ERR_KUBE_FORBIDDEN', `the API server did not accept kind-tunnel's credentials to ${what} (HTTP 401)${detail}; check the user in the kubeconfig`, { status, reason: st.reason, cause: err })
  }
  if (status === 403) {
    return new KubeApiError('KT_ERR_KUBE_FORBIDDEN', `the API server refused to let kind-tunnel ${what} (HTTP 403)${detail}; grant the permissions in ${RBAC_DOC}`, { status, reason: st.reason, cause: err })
  }
  if (status === 409) {
    return new KubeApiError('KT_ERR_KUBE_CONFLICT', `${what}: conflict (HTTP 409)${detail}`, { status, reason: st.reason, cause: err })
  }
  if (status !== undefined) {
    return new KubeApiError('KT_ERR_KUBE_API', `${what}: HTTP ${status}${detail}`, { status, reason: st.reason, cause: err })
  }
  const e = err as { code?: unknown, name?: unknown, message?: unknown } | null
  const sys = e !== null && typeof e === 'object' && typeof e.code === 'string' ? ` (${e.code})` : ''
  const msg = e !== null && typeof e === 'object' && typeof e.message === 'string' ? e.message.split('\n')[0] ?? '' : String(err)
  const timedOut = e !== null && typeof e === 'object' && (e.name === 'AbortError' || e.name === 'TimeoutError')
  return new KubeApiError('KT_ERR_KUBE_API', `${what}: ${timedOut ? 'timed out' : msg}${sys}`, { cause: err })
}

/** The HTTP status behind an error from kubeError, if any. */
export function statusCodeOf (err: unknown): number | undefined {
  return err instanceof KubeApiError ? err.status : httpStatusOf(err)
}

/**
 * Load a kubeconfig given as YAML text or as a file path. Refuses with
 * KT_ERR_KUBECONFIG (one line, no stack) when it cannot be read or names no
 * current cluster.
 */
export function loadKubeConfig (source: string): KubeConfig {
  const kc = new KubeConfig()
  const looksLikeText = source.includes('\n') || /^\s*(apiVersion|kind|clusters)\s*:/.test(source) || source.trimStart().startsWith('{')
  try {
    if (looksLikeText) {
      kc.loadFromString(source)
    } else {
      if (!existsSync(source)) throw new Error(`no such file ${JSON.stringify(source)}`)
      kc.loadFromFile(source)
    }
  } catch (err) {
    const why = err instanceof Error ? err.message.split('\n')[0] : String(err)
    throw new InvalidArgumentError('KT_ERR_KUBECONFIG', `cannot read the kubeconfig${looksLikeText ? '' : ` ${source}`}: ${why}`)
  }
  const cluster = kc.getCurrentCluster()
  if (cluster === null || typeof cluster.server !== 'string' || cluster.server === '') {
    throw new InvalidArgumentError('KT_ERR_KUBECONFIG', `the kubeconfig has no current context with a cluster server (current-context: ${JSON.stringify(kc.getCurrentContext() ?? '')})`)
  }
  let url: URL
  try {
    url = new URL(cluster.server)
  } catch {
    throw new InvalidArgumentError('KT_ERR_KUBECONFIG', `the kubeconfig's server ${JSON.stringify(cluster.server)} is not a URL`)
  }
  if (url.protocol === 'http:') {
    // client-node refuses plain http unless skipTLSVerify is set ("HTTP
    // protocol is not allowed when skipTLSVerify is not set"); there is no
    // TLS to verify, and kubectl talks to such servers (kubectl proxy, the
    // demo's API server) as they are.
    kc.clusters = kc.clusters.map((c: Cluster): Cluster => c.name === cluster.name ? { ...c, skipTLSVerify: true } : c)
  } else if (url.protocol !== 'https:') {
    throw new InvalidArgumentError('KT_ERR_KUBECONFIG', `the kubeconfig's server ${JSON.stringify(cluster.server)} is neither http nor https`)
  }
  return kc
}

export interface KubeClients {
  readonly kc: KubeConfig
  readonly core: CoreV1Api
  readonly discovery: DiscoveryV1Api
  readonly networking: NetworkingV1Api
  /** Discovery (`/apis`), for the Gateway API. */
  readonly apis: ApisApi
  /** Gateway API objects (custom resources). */
  readonly custom: CustomObjectsApi
  /** The API server URL, for logs. */
  readonly server: string
}

export function makeClients (kc: KubeConfig): KubeClients {
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    discovery: kc.makeApiClient(DiscoveryV1Api),
    networking: kc.makeApiClient(NetworkingV1Api),
    apis: kc.makeApiClient(ApisApi),
    custom: kc.makeApiClient(CustomObjectsApi),
    server: kc.getCurrentCluster()?.server ?? '',
  }
}

/** Default bound on one API request (client-node sets none). */
export const REQUEST_TIMEOUT_MS = 30_000

/**
 * Per-request options: an absolute timeout (a hung API server must not hang
 * the reconcile loop) and, for patches, the Content-Type (client-node's
 * default for PATCH is JSON Patch).
 */
export function requestOptions (o: { timeoutMs?: number, contentType?: string } = {}): ConfigurationOptions {
  const timeoutMs = o.timeoutMs ?? REQUEST_TIMEOUT_MS
  // The object-parameter API hands these to the observable layer as they
  // are, so each hook returns client-node's own Observable.
  const mw: ObservableMiddleware = {
    pre: (ctx: RequestContext) => {
      ctx.setSignal(AbortSignal.timeout(timeoutMs))
      if (o.contentType !== undefined) ctx.setHeaderParam('Content-Type', o.contentType)
      return new Observable(Promise.resolve(ctx))
    },
    post: (res: ResponseContext) => new Observable(Promise.resolve(res)),
  }
  return { middleware: [mw], middlewareMergeStrategy: 'append' }
}

export const MERGE_PATCH = 'application/merge-patch+json'
