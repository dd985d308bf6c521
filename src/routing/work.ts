// The working state computeRoutes' phases share (issue #15: computeRoutes
// was one function whose phases mutated shared objects; the objects are
// still shared, but each phase is its own function with its inputs named).

import type { KubeService, KubeServicePort } from './kube.js'
import type { UpstreamSpec } from './types.js'

// PortStatus.error values: provider errors take the `domain/CamelCase` form
// (core/v1 PortStatus doc comment).
export const PORT_ERROR_PROTOCOL = 'kind-tunnel.dev/ProtocolNotSupported'
export const PORT_ERROR_NO_NODE_PORT = 'kind-tunnel.dev/NoNodePort'
export const PORT_ERROR_SHADOWED = 'kind-tunnel.dev/PortShadowed'

/**
 * What computeRoutes found wrong with a Service: `failed` (it is not served)
 * or `warning` (served, with something ignored). Which of these become
 * Kubernetes Events, and when, is control-plane work (control/status-plan.ts).
 */
export interface Finding {
  readonly kind: 'failed' | 'warning'
  /** CamelCase (an Event's `reason` when it becomes one). */
  readonly reason: string
  readonly message: string
}

export interface WorkPort {
  spec: KubeServicePort
  port: number
  protocol: string
  nodePort?: number
  error?: string
  message?: string
  upstream?: UpstreamSpec
  listeners: string[]
}

export interface Work {
  svc: KubeService
  key: string
  namespace: string
  name: string
  findings: Finding[]
  failed?: { reason: string, message: string }
  ports: WorkPort[]
  sourceRanges?: string[]
  ip?: string
  hostname?: string
  names: string[]
  wonNames: Set<string>
  /** Names per Service port from the Gateways it fronts. */
  gatewayPorts: Array<{ port: number, scheme: 'http' | 'https', names: readonly string[] }>
}

/** One Service port on one listener, with the names it asks for there; `won` is filled once conflicts are settled. */
export interface Claim { work: Work, upstream: UpstreamSpec, servicePort: number, names: string[], won: Set<string> }

export interface ListenerDraft { host: string, port: number, claims: Claim[], udp?: WorkPort[] }
