// `kind-tunnel proxy` takes the lane by default (--native-accept auto) for a
// plain L4 listener; --native-accept off and KT_NATIVE_ACCEPT=0 keep it in JS.
// Seen from outside through /metrics (kt_native_accept_listeners), and the
// proxy serves either way.
import t from 'tap'
import { startCli } from '../support/cli.js'
import { dial, readAll, startEcho } from '../support/net.js'
import { laneSkip } from './lane-proxy.js'

const skip = laneSkip()

const cases: Array<{ name: string, args: string[], env: NodeJS.ProcessEnv, lane: number }> = [
  { name: 'default (auto)', args: [], env: {}, lane: 1 },
  { name: '--native-accept off', args: ['--native-accept', 'off'], env: {}, lane: 0 },
  { name: 'KT_NATIVE_ACCEPT=0', args: [], env: { KT_NATIVE_ACCEPT: '0' }, lane: 0 },
]

for (const c of cases) {
  t.test(c.name, { skip }, async (t) => {
    const echo = await startEcho()
    t.teardown(() => echo.close())
    const px = await startCli(['proxy', '--listen', '127.0.0.1:0', '--backend', `127.0.0.1:${echo.port}`, '--metrics', '127.0.0.1:0', ...c.args], { env: c.env })
    t.teardown(() => px.stop('SIGKILL'))
    const port = (px.listening[0] as { port: number }).port
    const mport = Number(/:(\d+)$/.exec(px.stdout.find((l) => l.startsWith('metrics ')) ?? '')?.[1])
    const s = await dial(port)
    s.end('ping')
    t.equal((await readAll(s)).toString(), 'ping')
    // The client saw the end before the proxy's pair finished counting it
    // (the lane counts a pair once both directions are closed): scrape until
    // it shows, bounded.
    let text = ''
    for (let i = 0; i < 30; i++) {
      text = await (await fetch(`http://127.0.0.1:${mport}/metrics`)).text()
      if (/kt_connections_total\{[^}]*outcome="eof"[^}]*\} 1/.test(text)) break
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    t.match(text, new RegExp(`\\nkt_native_accept_listeners ${c.lane}\\n`))
    t.match(text, /kt_connections_total\{[^}]*outcome="eof"[^}]*\} 1/)
    const r = await px.stop('SIGTERM')
    t.equal(r.code, 0, 'drains and exits 0')
  })
}
