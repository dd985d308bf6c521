// One listener, several TLS backends, routed by SNI without terminating TLS:
// each is reached by name with the real curl and openssl, and shows its own certificate.
import t from 'tap'
import { connect as tlsConnect } from 'node:tls'
import { startProxy, waitFor } from '../support/net.js'
import { runTool } from '../support/tool-env.js'
import { startTlsBackend, type TlsBackend } from '../support/tls.js'
import type { ListenerSpec } from '../../src/routing/types.js'

const run = runTool  // without the sanitizer runtime under test:asan / test:tsan

t.test('SNI routing end to end', async (t) => {
  const a = await startTlsBackend('a.example.test')
  const b = await startTlsBackend('b.example.test')
  const wild = await startTlsBackend('x.apps.test')
  const def = await startTlsBackend('default.test')
  t.teardown(() => Promise.all([a, b, wild, def].map((x: TlsBackend) => x.close())))
  const up = (x: TlsBackend) => ({ id: x.cn, endpoints: [{ host: '127.0.0.1', port: x.port }] })
  const listener: ListenerSpec = {
    host: '127.0.0.1',
    port: 0,
    routes: [
      { names: ['a.example.test'], upstream: up(a) },
      { names: ['b.example.test'], upstream: up(b) },
      { names: ['*.apps.test'], upstream: up(wild) },
    ],
    default: up(def),
  }
  const px = await startProxy([listener])
  t.teardown(() => px.close())
  const port = px.port

  for (const x of [a, b]) {
    const r = await run('curl', ['-sk', '-v', '--max-time', '10', '--resolve', `${x.cn}:${port}:127.0.0.1`, `https://${x.cn}:${port}/`])
    t.equal(r.stdout, `backend=${x.cn}\n`, `curl reaches ${x.cn}`)
    t.match(r.stderr, new RegExp(`subject: CN=${x.cn.replace(/\./g, '\\.')}`), `curl sees ${x.cn}'s certificate`)
  }

  // openssl s_client: uppercase and a trailing dot still route; no -servername goes to the default.
  const sclient = async (servername: string | undefined): Promise<string> => {
    const args = ['s_client', '-connect', `127.0.0.1:${port}`, '-brief']
    if (servername !== undefined) args.push('-servername', servername)
    else args.push('-noservername')
    const r = await run('sh', ['-c', `printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' | openssl ${args.map((x) => `'${x}'`).join(' ')} 2>&1`], { timeout: 10_000 })
    return r.stdout
  }
  t.match(await sclient('A.EXAMPLE.TEST'), /Peer certificate: CN = a\.example\.test/, 'uppercase SNI routes')
  t.match(await sclient('b.example.test.'), /Peer certificate: CN = b\.example\.test/, 'trailing-dot SNI routes')
  t.match(await sclient(undefined), /Peer certificate: CN = default\.test/, 'no SNI goes to the default')
  t.match(await sclient('unknown.test'), /Peer certificate: CN = default\.test/, 'an unknown name goes to the default')

  // Wildcards match one or more labels, but not the bare suffix.
  const nodeTls = (servername: string): Promise<string> => new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
      resolve((s.getPeerCertificate().subject as { CN: string }).CN)
      s.end()
    })
    s.on('error', reject)
  })
  t.equal(await nodeTls('one.apps.test'), 'x.apps.test', '*.apps.test matches one label')
  t.equal(await nodeTls('two.one.apps.test'), 'x.apps.test', '*.apps.test matches two labels')
  t.equal(await nodeTls('apps.test'), 'default.test', '*.apps.test does not match apps.test')

  const decisions = px.registry.counter('kt_route_decisions_total', '')
  // On the native lane decisions arrive through its event ring, folded on a
  // tick: wait for both counts, and the SNI count must not overshoot.
  await waitFor(() => decisions.total({ outcome: 'sni' }) >= 6 && decisions.total({ outcome: 'default' }) >= 3,
    () => `decisions counted (sni ${decisions.total({ outcome: 'sni' })} of 6, default ${decisions.total({ outcome: 'default' })} of 3)`, 5000)
  t.equal(decisions.total({ outcome: 'sni' }), 6, 'sni decisions counted, one per SNI-routed connection')
})
