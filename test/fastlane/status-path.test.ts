// `kind-tunnel status` says which path carries each listener: `native` (the
// accept lane) or `js`, and why a listener is not native, so a slow listener
// can be explained without reading the source.
import t from 'tap'
import { ListenerManager } from '../../src/dataplane/listener-manager.js'
import { silentLogger } from '../../src/observe/logger.js'
import { Registry } from '../../src/observe/metrics.js'
import { formatListeners } from '../../src/app/render.js'
import { startServer } from '../support/net.js'
import { laneSkip, startLaneProxy } from './lane-proxy.js'

t.test('native for lane listeners, js with the reason for the others', { skip: laneSkip() }, async (t) => {
  const a = await startServer((s) => { s.end('A') })
  t.teardown(() => a.close())
  const u = { id: 'u', endpoints: [{ host: '127.0.0.1', port: a.port }] }
  const px = await startLaneProxy([
    { host: '127.0.0.1', port: 0, routes: [], default: u },
    { host: '127.0.0.2', port: 0, routes: [{ names: ['x.test'], upstream: { ...u, id: 'r' } }], default: u },
    { host: '127.0.0.3', port: 0, routes: [], default: { ...u, id: 'pp', proxyProtocol: 'v2' } },
    { host: '127.0.0.4', port: 0, routes: [], default: { ...u, id: 'pool', poolSize: 3 } },
    { host: '127.0.0.5', port: 0, routes: [], default: { ...u, id: 'hash', policy: 'client-ip-hash' } },
    { host: '127.0.0.6', port: 0, routes: [], default: { id: 'named', endpoints: [{ host: 'localhost', port: a.port }] } },
  ])
  t.teardown(() => px.close())
  const byHost = new Map(px.manager.snapshot().listeners.map((l) => [l.key.split(':')[0], l]))
  t.same(['1', '2', '3', '4', '5', '6'].map((i) => byHost.get(`127.0.0.${i}`)?.path), ['native', 'native', 'js', 'js', 'js', 'js'])
  t.equal(byHost.get('127.0.0.1')?.pathReason, undefined, 'no reason for a native listener')
  t.equal(byHost.get('127.0.0.3')?.pathReason, 'PROXY protocol v2 (pp)')
  t.equal(byHost.get('127.0.0.4')?.pathReason, 'warm pool of 3 (pool)')
  t.equal(byHost.get('127.0.0.5')?.pathReason, 'policy client-ip-hash (hash)')
  t.equal(byHost.get('127.0.0.6')?.pathReason, 'backend localhost is a name, not an address')
  const lines = formatListeners({ listeners: px.manager.snapshot().listeners })
  t.equal(lines[0], 'listeners:')
  t.match(lines[1], /^ {2}127\.0\.0\.1:\d+ +0 active, 0 accepted, native lane$/)
  t.match(lines[3], /^ {2}127\.0\.0\.3:\d+ +0 active, 0 accepted, js \(PROXY protocol v2 \(pp\)\)$/)
})

t.test('without the lane, every listener is js and says why', async (t) => {
  const mgr = new ListenerManager({ logger: silentLogger(), metrics: new Registry(), nativeAccept: 'off' })
  t.teardown(() => mgr.close(0))
  await mgr.apply({ version: 1, listeners: [{ host: '127.0.0.1', port: 0, routes: [], default: { id: 'u', endpoints: [{ host: '127.0.0.1', port: 9 }] } }] })
  const [l] = mgr.snapshot().listeners
  t.equal(l?.path, 'js')
  t.match(l?.pathReason, /^native (addon off or not built|accept lane off)$/)
  t.same(formatListeners({ listeners: [] }), [], 'no listeners, no section')
})
