// Through the native lane: the global and per-listener connection caps are
// enforced natively (excess closed and counted as max_connections), and
// running out of descriptors (ulimit -n 64, through the CLI) never crashes or
// spins the process, is counted, and service recovers once fds free up.
import t from 'tap'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { closeKind, dial, l4, readAll, sleep, startEcho, upstream, waitFor } from '../support/net.js'
import { within } from '../support/wait.js'
import { startCli } from '../support/cli.js'
import { laneSkip, startLaneProxy } from './lane-proxy.js'

const skip = laneSkip()

t.test('global and per-listener caps: excess closed and counted', { skip }, async (t) => {
  const echo = await startEcho()
  t.teardown(() => echo.close())
  const px = await startLaneProxy([l4(upstream('u', echo.port), { maxConnections: 2 }), l4(upstream('u', echo.port))], { maxConnections: 3 })
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
  const conns = px.registry.counter('kt_connections_total', '')
  await waitFor(() => conns.total({ outcome: 'max_connections' }) === 2, 'two refusals counted', 2000)
  t.equal(px.manager.connectionCount, 3, 'three open')
  for (const c of held) c.end()
  await waitFor(() => px.manager.connectionCount === 0, 'connections released', 3000)
  const again = await dial(px.ports[0] as number, px.hosts[0])
  again.end('served again')
  t.equal((await readAll(again)).toString(), 'served again', 'serves again once below the cap')
})

// ThreadSanitizer's runtime cannot start a process limited to 64 descriptors (npm run test:tsan).
const tsan = process.env['KT_NATIVE_VARIANT'] === 'tsan' ? 'the TSAN runtime cannot start under ulimit -n 64' : false

t.test('EMFILE under ulimit -n 64: no crash, no spin, counted, and service recovers', { skip: skip || tsan }, async (t) => {
  const echo = await startEcho()
  t.teardown(() => echo.close())
  const px = await startCli(['proxy', '--listen', '127.0.0.1:0', '--backend', `127.0.0.1:${echo.port}`, '--max-connections', '1000', '--metrics', '127.0.0.1:0'], { shellPrefix: 'ulimit -n 64' })
  t.teardown(() => px.stop('SIGKILL'))
  const port = (px.listening[0] as { port: number }).port
  const metricsPort = Number(/:(\d+)$/.exec(px.stdout.find((l) => l.startsWith('metrics ')) ?? '')?.[1])
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
  await sleep(300)
  t.equal(px.child.exitCode, null, 'the proxy is still running')
  // Backing off, not spinning: the process stays well under a core while the backlog waits.
  const cpu0 = cpuTicks(px.child.pid as number)
  await sleep(500)
  const used = cpuTicks(px.child.pid as number) - cpu0
  t.ok(used < 25, `CPU while out of fds: ${used} ticks in 500 ms`)
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
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
  const exhausted = /kt_accept_errors_total\{[^}]*code="EMFILE"[^}]*\} (\d+)/.exec(text) ?? /kt_upstream_connect_errors_total\{[^}]*code="EMFILE"[^}]*\} (\d+)/.exec(text)
  t.ok(exhausted !== null && Number(exhausted[1]) > 0, 'fd exhaustion counted')
  // The warning is written by the child when a fold sees EMFILE; its stderr
  // reaches us through a pipe, possibly after the scrape: poll, bounded.
  const warned = (): boolean => px.stderr.some((l) => l.includes('"level":40') && l.includes('EMFILE'))
  await waitFor(warned, 'the EMFILE warning on stderr', 3000).catch(() => {})
  t.ok(warned(), 'the EMFILE condition was logged as a warning')
  const r = await px.stop('SIGTERM')
  t.equal(r.code, 0)
})

function cpuTicks (pid: number): number {
  // /proc/PID/stat fields 14 and 15: utime and stime, in clock ticks (100/s).
  const f = readStat(pid).split(') ')[1]?.split(' ') ?? []
  return Number(f[11]) + Number(f[12])
}

import { readFileSync } from 'node:fs'
function readStat (pid: number): string {
  return readFileSync(`/proc/${pid}/stat`, 'utf8')
}
