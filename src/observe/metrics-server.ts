// Serves the registry as Prometheus text on GET /metrics (and a liveness
// probe on /healthz). Bound to the address the user gave, loopback by default.

import { createServer, type Server } from 'node:http'
import type { Registry } from './metrics.js'

export interface MetricsServer {
  readonly host: string
  readonly port: number
  close (): Promise<void>
}

export function startMetricsServer (registry: Registry, host: string, port: number): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET') { res.writeHead(405).end(); return }
    const path = (req.url ?? '/').split('?')[0]
    if (path === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(registry.render())
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n')
    } else {
      res.writeHead(404).end()
    }
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host, port }, () => {
      server.removeListener('error', reject)
      const a = server.address()
      const bound = a !== null && typeof a === 'object' ? a.port : port
      resolve({
        host,
        port: bound,
        close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => { resolve() }) }),
      })
    })
  })
}
