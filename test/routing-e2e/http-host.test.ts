// HTTP/1.x routing by Host (and by absolute-form target) with the real curl.
import t from 'tap'
import { createServer, type Server } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { startProxy, waitFor } from '../support/net.js'
import { runTool } from '../support/tool-env.js'

const run = runTool  // without the sanitizer runtime under test:asan / test:tsan

async function named (name: string): Promise<{ server: Server, port: number }> {
  const server = createServer((req, res) => { res.end(`${name} saw host=${req.headers.host ?? '-'} url=${req.url ?? ''}\n`) })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { server, port: (server.address() as AddressInfo).port }
}

t.test('Host routing end to end', async (t) => {
  const web = await named('web')
  const api = await named('api')
  const def = await named('default')
  t.teardown(() => { for (const s of [web, api, def]) s.server.close() })
  const px = await startProxy([{
    host: '127.0.0.1',
    port: 0,
    routes: [
      { names: ['web.default.localhost'], upstream: { id: 'web', endpoints: [{ host: '127.0.0.1', port: web.port }] } },
      { names: ['api.test'], upstream: { id: 'api', endpoints: [{ host: '127.0.0.1', port: api.port }] } },
    ],
    default: { id: 'def', endpoints: [{ host: '127.0.0.1', port: def.port }] },
  }])
  t.teardown(() => px.close())
  const url = `http://127.0.0.1:${px.port}/`
  const curl = async (...args: string[]): Promise<string> => (await run('curl', ['-s', '--max-time', '10', ...args])).stdout

  t.match(await curl('-H', 'Host: web.default.localhost', url), /^web /, 'Host header routes')
  t.match(await curl('-H', `Host: API.TEST:${px.port}`, url), /^api /, 'Host with a port and uppercase routes')
  t.match(await curl(`http://web.default.localhost:${px.port}/x`), /^web .*url=\/x/, 'curl resolves *.localhost to loopback itself')
  t.match(await curl('-H', 'Host: nobody.test', url), /^default /, 'unknown host goes to the default')
  t.match(await curl('--http1.0', '-H', 'Host:', url), /^default /, 'HTTP/1.0 without Host goes to the default')
  // Absolute-form target wins over Host (RFC 9112 §3.2.2).
  t.match(await curl('--request-target', `http://api.test:${px.port}/abs`, '-H', 'Host: web.default.localhost', url), /^api .*url=http:\/\/api\.test/, 'absolute-form target wins')
  // The first request decides the route for the whole keep-alive connection.
  const both = await curl('-H', 'Host: web.default.localhost', url, '-H', 'Host: web.default.localhost', url)
  t.equal(both.match(/^web /gm)?.length, 2, 'keep-alive connection keeps its route')

  const decisions = px.registry.counter('kt_route_decisions_total', '')
  await waitFor(() => decisions.total({ outcome: 'host' }) >= 5, 'host decisions counted', 2000)
})
