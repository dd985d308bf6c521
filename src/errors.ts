// The one registry of kind-tunnel error codes. Codes are stable: scripts and
// tests match on `err.code`, never on the message. A code is never reused for
// a different condition; retire it instead.

export const ErrorCodes = {
  // input and configuration (CLI exit status 2)
  KT_ERR_INVALID_ARG: 'an option or argument is malformed',
  KT_ERR_INVALID_ADDRESS: 'a HOST:PORT value is malformed',
  KT_ERR_WILDCARD_BIND: 'a wildcard bind address was refused',
  KT_ERR_INVALID_ROUTE: 'a --route value is malformed',
  KT_ERR_INVALID_CIDR: 'a CIDR value is malformed',
  KT_ERR_INVALID_PROTOCOL: 'a --listen protocol suffix is not /tcp or /udp',
  // listeners and connections
  KT_ERR_LISTEN: 'a listener could not bind',
  KT_ERR_CONNECT_TIMEOUT: 'an upstream connect timed out',
  KT_ERR_CONNECT_FAILED: 'every upstream connect attempt failed',
  KT_ERR_NO_BACKEND: 'the route has no usable backend',
  KT_ERR_NO_ROUTE: 'no route matched and the listener has no default',
  KT_ERR_PEEK_TIMEOUT: 'the client did not send a routable first flight in time',
  KT_ERR_PEEK_TOO_LARGE: 'the first flight exceeded the peek limit',
  KT_ERR_MAX_CONNECTIONS: 'a connection cap was reached',
  KT_ERR_SOURCE_DENIED: 'the client address is outside loadBalancerSourceRanges',
  KT_ERR_IDLE_TIMEOUT: 'the connection was idle too long',
  KT_ERR_DRAIN_TIMEOUT: 'the connection outlived the drain period',
  KT_ERR_ALL_UNHEALTHY: 'every backend of a route is unhealthy',
  // addresses and the privileged helper
  KT_ERR_ADDRESS_REFUSED: 'the address helper refused the request',
  KT_ERR_ADDRESS_COMMAND: 'the platform address command failed',
  // kubernetes
  KT_ERR_KUBECONFIG: 'no usable kubeconfig',
  KT_ERR_KUBE_FORBIDDEN: 'the API server refused an operation (401/403)',
  KT_ERR_KUBE_CONFLICT: 'the API server reported a conflict (409)',
  KT_ERR_KUBE_API: 'an API server request failed',
  KT_ERR_IP_POOL_EXHAUSTED: 'no free address is left in the IP pool',
  // docker and the relay
  KT_ERR_DOCKER_UNAVAILABLE: 'the Docker engine cannot be reached',
  KT_ERR_NO_CLUSTER: 'no kind cluster was found',
  KT_ERR_RELAY_AUTH: 'the relay refused the token',
  KT_ERR_RELAY_HEADER: 'the relay header is malformed',
  KT_ERR_RELAY_DENIED: 'the relay refused the destination',
  KT_ERR_RELAY_UNREACHABLE: 'the relay could not reach the destination',
  KT_ERR_RELAY_PROTOCOL: 'the relay answered something unexpected',
  KT_ERR_UDP_RELAY: 'a UDP flow needs a relay that carries UDP (an older relay image, or a dialer without UDP)',
  KT_ERR_RELAY_FRAME: 'a UDP datagram frame over the relay is malformed or larger than 65,507 bytes',
  KT_ERR_RELAY_MUX: 'a frame of a multiplexed relay connection is malformed, or the connection carrying the stream was lost',
  // the control socket
  KT_ERR_NOT_RUNNING: 'no kind-tunnel up is running',
  KT_ERR_STATE_FILE: 'the state file is unreadable',
  // the test API server (src/sim)
  KT_ERR_SIM_REQUEST: 'the test API server refused an in-process request',
  // the native splice fast path (src/dataplane/native)
  KT_ERR_NATIVE_FD: 'a socket has no usable file descriptor for the native splicer',
  KT_ERR_NATIVE_HANDOFF: 'a socket was not in a state that can be handed to the native splicer',
  KT_ERR_NATIVE_CLOSED: 'the native splicer is closed',
  KT_ERR_NATIVE_SPLICE: 'the native splicer could not take the pair',
  KT_ERR_NATIVE_UNAVAILABLE: 'the native splice fast path was required but cannot be loaded',
  KT_ERR_NATIVE_LANE_FULL: 'every backend slot of the native accept lane is in use',
  // docker discovery and the relay container (src/docker, src/relay)
  KT_ERR_CLUSTER_AMBIGUOUS: 'several kind clusters match and none was named',
  KT_ERR_RELAY_DOWN: 'the relay container cannot be reached through its published port',
  KT_ERR_RELAY_IMAGE: 'the relay image could not be built',
  KT_ERR_RELAY_CONTAINER: 'the relay container could not be created or started',
  // kind-tunnel up, down, status, demo (src/app)
  KT_ERR_ALREADY_RUNNING: 'another kind-tunnel up runs with the same state dir',
  KT_ERR_SIDECAR: 'sidecar mode cannot find the container network to serve on',
  KT_ERR_CLEANUP: 'some of what up changed could not be undone',
  KT_ERR_NOT_READY: 'up did not become ready in time',
  // the Kubernetes controller (src/control)
  KT_ERR_KUBE_WATCH_STALLED: 'a watch delivered nothing, not even a bookmark, for too long and was restarted',
  KT_ERR_LB_CONFLICT: 'another load-balancer controller (cloud-provider-kind?) already serves the Service; kind-tunnel leaves it alone',
} as const

export type ErrorCode = keyof typeof ErrorCodes

export class KtError extends Error {
  readonly code: ErrorCode
  constructor (code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ErrorCodes[code], options)
    this.code = code
    this.name = 'KtError'
  }
}

/** Bad user input. The CLI prints `error KT_ERR_...: message` and exits 2. */
export class InvalidArgumentError extends KtError {
  constructor (code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
    this.name = 'InvalidArgumentError'
  }
}

export function isKtError (err: unknown): err is KtError {
  return err instanceof KtError
}

/** The code of any error: ours, or Node's errno code (ECONNREFUSED, ...). */
export function errorCode (err: unknown): string {
  if (err instanceof KtError) return err.code
  if (err !== null && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code
  return 'UNKNOWN'
}
