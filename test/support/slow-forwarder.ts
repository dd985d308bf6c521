// A userspace forwarder with a slow onward connect, standing in for Docker
// Desktop's port forwarder (or a relay): it accepts at once, then waits
// `delayMs` before connecting to the real backend, and relays both ways. The
// client's early bytes wait in its socket meanwhile; none are lost. This
// kernel has no netem qdisc, so the delay lives here. Loopback only.

import { connect, createServer, type Server, type Socket } from 'node:net'
import type { Endpoint } from '../../src/routing/types.js'

export interface SlowForwarder {
  readonly endpoint: Endpoint
  /** Connections accepted, and onward connects completed. */
  readonly stats: { accepts: number, onward: number }
  close (): Promise<void>
}

export async function startSlowForwarder (target: Endpoint, delayMs: number, host = '127.0.0.1'): Promise<SlowForwarder> {
  const stats = { accepts: 0, onward: 0 }
  const live = new Set<Socket>()
  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    stats.accepts++
    live.add(client)
    let up: Socket | undefined
    const teardown = (): void => {
      clearTimeout(timer)
      client.destroy()
      up?.destroy()
      live.delete(client)
      if (up !== undefined) live.delete(up)
    }
    client.on('error', teardown)
    client.on('close', teardown)
    const timer = setTimeout(() => {
      const u = connect({ host: target.host, port: target.port, allowHalfOpen: true })
      up = u
      live.add(u)
      u.on('error', teardown)
      u.on('close', teardown)
      u.once('connect', () => {
        stats.onward++
        client.pipe(u)
        u.pipe(client)
        client.resume()
      })
    }, delayMs)
  })
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, host, () => resolve()) })
  const port = (server.address() as { port: number }).port
  return {
    endpoint: { host, port },
    stats,
    close: () => new Promise<void>((resolve) => {
      for (const s of live) s.destroy()
      server.close(() => resolve())
    }),
  }
}
