// The access-log line, one per connection at close, for both paths (the JS
// connection in listener.ts, the native lane's close record in fastlane.ts):
// same keys, same order. Untrusted names go under their own key, never into
// the message.

import type { Logger } from '../observe/logger.js'

export interface AccessRecord {
  listener: string
  client: string
  clientPort: number
  route: string | undefined
  name: string | undefined
  upstream: string | undefined
  backend: string | undefined
  attempts: number
  bytesIn: number
  bytesOut: number
  ms: number
  cause: string
  error: string | undefined
}

export function logAccess (log: Logger, r: AccessRecord): void {
  log.info({
    listener: r.listener,
    client: r.client,
    clientPort: r.clientPort,
    route: r.route,
    name: r.name,
    upstream: r.upstream,
    backend: r.backend,
    attempts: r.attempts,
    bytesIn: r.bytesIn,
    bytesOut: r.bytesOut,
    ms: r.ms,
    cause: r.cause,
    error: r.error,
  }, 'connection closed')
}
