// Idle timeout, connection caps, and EMFILE under ulimit -n 64.
import t from 'tap'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { closeKind, dial, l4, readAll, sleep, startEcho, startProxy, upstream, waitFor } from '../support/net.js'
import { within } from '../support/wait.js'
import { startCli } from '../support/cli.js'

t.test('an idle connection is closed after --idle-timeout', async (t) => {
  const echo = await startEcho()
  t.teardown(() => echo.close())
  const px = await startProxy([l4(upstream('u', echo.port))], { idleTimeoutMs: 800 })
  t.teardown(() => px.close())
  const c = await dial(px.port, px.host)
  const kind = closeKind(c)
  // Activity keeps it open (a write every 100 ms against an 800 ms timeout:
  // a loaded machine would have to stall a write by 700 ms to close it)...
  let last = Date.now()
  for (let i = 0; i < 6; i++) { c.write('ping'); last = Date.now(); await sleep(100) }
  t.equal(c.destroyed, false, 'still open while active')
  await kind
  const idle = Date.now() - last
  t.ok(idle >= 750 && idle < 3000, `closed after going idle (${idle} ms)`)
  await waitFor(() => px.registry.counter('kt_connections_total', '').total({ outcome: 'idle_timeout' }) === 1, 'idle_timeout counted', 2000)
})

t.test('--max-connections: excess connections are closed and counted, global and per listener', async (t) => {
  const echo = await startEcho()
  t.teardown(() => echo.close())
  const px = await startProxy([l4(upstream('u', echo.port), { maxConnections: 2 }), l4(upstream('u', echo.port))], { maxConnections: 3 })
  t.teardown(() => px.close())
  const held: Socket[] = []
  for (let i = 0; i < 2; i++) {
    const c = await dial(px.ports[0] as number, px.hosts[0])
    c.write('x'); await once(c, 'data'); held.push(c)
  }
  const over = await dial(px.ports[0] as number, px.hosts[0])
  t.ok(['end', 'close', 'reset'].includes(await closeKind(over)), 'third on listener 0 refused (per-listener cap 2)')
  const third = await dial(px.ports[1] as number, px.hosts[1])
  third.write('y'); await once(third, 'data'); held.push(third)
  const overGlobal = await dial(px.ports[1] as number, px.hosts[1])
  t.ok(['end', 'close', 'reset'].includes(await closeKind(overGlobal)), 'fourth overall refused (global cap 3)')
  t.equal(px.registry.counter('kt_connections_total', '').total({ outcome: 'max_connections' }), 2)
  for (const c of held) c.end()
  await waitFor(() => px.manager.connectionCount === 0, 'connections released', 3000)
  const again = await dial(px.ports[0] as number, px.hosts[0])
  again.end('served again')
  t.equal((await readAll(again)).toString(), 'served again', 'serves again once below the cap')
})

t.test('EMFILE under ulimit -n 64 never crashes, and service recovers', async (t) => {
  const echo = await startEcho()
  t.teardown(() => echo.close())
  // max-connections is set high on purpose so the fd limit, not the cap, is hit.
  const px = await startCli(['proxy', '--listen', '127.0.0.1:0', '--backend', `127.0.0.1:${echo.port}`, '--max-connections', '1000'], { shellPrefix: 'ulimit -n 64' })
  t.teardown(() => px.stop('SIGKILL'))
  const port = (px.listening[0] as { port: number }).port
  const clients: Socket[] = []
  for (let i = 0; i < 80; i++) {
    try {
      const c = await Promise.race([dial(port), sleep(500).then(() => undefined)])
      if (c === undefined) break
      c.on('error', () => {})
      c.write('z')
      clients.push(c)
    } catch { break }
  }
  await waitFor(() => px.stderr.some((l) => l.includes('"level":40') && l.includes('EMFILE')), 'the EMFILE condition logged as a warning', 5000)
  t.equal(px.child.exitCode, null, 'the proxy is still running')
  for (const c of clients) c.destroy()
  // While still out of descriptors the proxy sheds new clients (a reset);
  // once the closes reach it, one is served again.
  let last = ''
  const echoed = async (): Promise<boolean> => {
    const c = connect({ port, host: '127.0.0.1' })
    c.on('error', () => {})
    try {
      await within(once(c, 'connect'), 2000, 'connect')
      c.end('recovered')
      last = (await within(readAll(c), 2000, 'the echo')).toString()
      return last === 'recovered'
    } finally { c.destroy() }
  }
  await waitFor(echoed, () => `the proxy to serve again once descriptors free up (last echo: ${JSON.stringify(last)})`, 15_000)
  const r = await px.stop('SIGTERM')
  t.equal(r.code, 0)
})

t.test('each command loads only its own modules: the CLI starts under ulimit -n 40', async (t) => {
  // Node's module loader reads a program's files several at a time; when the
  // CLI imported every command's modules, 56 descriptors were not enough to start.
  const { execFile } = await import('node:child_process')
  const { CLI } = await import('../support/cli.js')
  for (const cmd of ['proxy', 'status', 'down', 'doctor']) {
    const r = await new Promise<{ code: number | null, out: string }>((resolve) => {
      execFile('/bin/sh', ['-c', 'ulimit -n 40; exec "$0" "$@"', process.execPath, CLI, cmd, '--help'], { timeout: 30_000 }, (err, stdout, stderr) => {
        resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? 1, out: stdout + stderr })
      })
    })
    t.equal(r.code, 0, `${cmd} --help under ulimit -n 40${r.code === 0 ? '' : `: ${r.out.split('\n').find((l) => l.includes('EMFILE')) ?? r.out.slice(0, 200)}`}`)
  }
})
