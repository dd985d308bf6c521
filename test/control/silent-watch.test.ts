// A watch that goes silent (no event, no bookmark) is never trusted: the
// informer tears it down after silenceMs and starts over with a re-list.
// The silence is made for real: a TCP forwarder between the client and the
// API server stops forwarding the connections it holds (a dead path that
// never sends a FIN or RST), while new connections pass.

import t from 'tap'
import { once } from 'node:events'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { httpGet, ingressOf, lbService, sleep, startHarness, waitFor, within } from './fixtures/harness.js'

interface Forwarder { port: number, freeze (): number, close (): Promise<void> }

async function startForwarder (host: string, port: number): Promise<Forwarder> {
  const pairs = new Set<[Socket, Socket]>()
  const srv = createServer((client) => {
    const up = connect({ host, port })
    const pair: [Socket, Socket] = [client, up]
    pairs.add(pair)
    const drop = (): void => { pairs.delete(pair); client.destroy(); up.destroy() }
    client.on('error', drop)
    up.on('error', drop)
    client.on('close', drop)
    up.on('close', drop)
    client.pipe(up)
    up.pipe(client)
  })
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  return {
    port: (srv.address() as AddressInfo).port,
    freeze: () => {
      for (const [client, up] of pairs) {
        client.unpipe(up)
        up.unpipe(client)
        client.pause()
        up.pause()
      }
      return pairs.size
    },
    close: async () => {
      for (const [a, b] of pairs) { a.destroy(); b.destroy() }
      await new Promise<void>((resolve) => srv.close(() => resolve()))
    },
  }
}

t.test('a silent watch is restarted and the routes converge', async (t) => {
  const h = await startHarness(t, { start: false, api: { bookmarkIntervalMs: 100 } })
  const fwd = await startForwarder('127.0.0.1', h.api.port)
  t.teardown(() => fwd.close())
  const kubeconfig = h.api.kubeconfig().replace(h.api.url, `http://127.0.0.1:${fwd.port}`)
  await h.startController({ kubeconfig, informers: { silenceMs: 800 } })
  await within(h.ctl.synced, 5000, 'synced')

  // Quiet but alive: bookmarks keep the watches trusted past silenceMs.
  await sleep(1200)
  const quiet = h.ctl.snapshot().informers
  t.ok(quiet.every((i) => i.stalls === 0 && i.watching), 'no stall while bookmarks arrive')
  t.ok(quiet.every((i) => i.lastEventAt !== undefined), 'bookmarks count as activity')

  const frozen = fwd.freeze()
  t.ok(frozen >= 3, `${frozen} connections frozen`)
  h.api.create(lbService('web', [{ port: 18080 }]))
  await h.serveNodePorts('web')
  const t0 = Date.now()
  const ip = await waitFor(() => ingressOf(h.api, 'web')[0]?.ip, 'status through a restarted watch', 6000, { everyMs: 20 })
  t.comment(`served ${Date.now() - t0} ms after the freeze (silenceMs 800)`)
  t.match(await httpGet(ip, 18080), /^node=/)
  const svc = h.ctl.snapshot().informers.find((i) => i.resource === 'services')
  t.ok((svc?.stalls ?? 0) >= 1, `the services watch was torn down for silence (${svc?.stalls ?? 0})`)
  t.equal(svc?.lastError?.code, 'KT_ERR_KUBE_WATCH_STALLED')
  t.ok((svc?.lists ?? 0) >= 2, 'and re-listed')
})
