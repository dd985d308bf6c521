// Real UDP clients and servers through `kind-tunnel proxy --listen .../udp`:
// dig against dnsmasq, iperf3 -u (TCP control + UDP data on one port), socat.
import t from 'tap'
import { spawn, execFile } from 'node:child_process'
import { once } from 'node:events'
import { freeTcpUdpPort, startUdpCli } from './support.js'

function run (cmd: string, args: string[], timeoutMs = 20_000, input?: string): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    const c = execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (typeof err.code === 'number' ? err.code : 1), stdout, stderr })
    })
    if (input !== undefined) c.stdin?.end(input)
  })
}

function startDaemon (cmd: string, args: string[]): { stop: () => Promise<void>, output: () => string } {
  const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  c.stdout.on('data', (d: Buffer) => { out += d.toString() })
  c.stderr.on('data', (d: Buffer) => { out += d.toString() })
  return {
    output: () => out,
    stop: async () => {
      if (c.exitCode === null && c.signalCode === null) { c.kill('SIGTERM'); await once(c, 'exit') }
    },
  }
}

async function waitUntil (fn: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  for (;;) {
    if (await fn()) return
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

t.test('dig against dnsmasq on a loopback port', async (t) => {
  const dnsPort = await freeTcpUdpPort()
  const dns = startDaemon('/usr/sbin/dnsmasq', ['--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--bind-interfaces',
    '--listen-address=127.0.0.1', `--port=${dnsPort}`, '--host-record=web.kt.test,10.1.2.3', '--local=/kt.test/', '--pid-file=', '--user=root', '--log-facility=-'])
  t.teardown(async () => { await dns.stop() })
  // dnsmasq answers once it listens.
  await waitUntil(async () => (await run('dig', ['@127.0.0.1', '-p', String(dnsPort), 'web.kt.test', '+short', '+tries=1', '+time=1'])).stdout.trim() === '10.1.2.3', 10_000, `dnsmasq to answer (${dns.output()})`)
  const p = await startUdpCli(['--listen', '127.0.0.1:0/udp', '--backend', `127.0.0.1:${dnsPort}`])
  t.teardown(async () => { await p.stop() })
  for (let i = 0; i < 3; i++) {
    const r = await run('dig', ['@127.0.0.1', '-p', String(p.udpPort()), 'web.kt.test', '+short', '+tries=1', '+time=3'])
    t.equal(r.stdout.trim(), '10.1.2.3', `query ${i + 1} answered through the tunnel: ${r.stderr}`)
  }
  const nx = await run('dig', ['@127.0.0.1', '-p', String(p.udpPort()), 'nope.kt.test', '+tries=1', '+time=3'])
  t.match(nx.stdout, /status: NXDOMAIN/, 'a negative answer comes back too')
})

t.test('iperf3 -u: TCP control and UDP data through one port number', async (t) => {
  const srvPort = await freeTcpUdpPort()
  const front = await freeTcpUdpPort()
  const srv = startDaemon('iperf3', ['-s', '-1', '-B', '127.0.0.1', '-p', String(srvPort)])
  t.teardown(async () => { await srv.stop() })
  const p = await startUdpCli(['--listen', `127.0.0.1:${front}`, '--listen', `127.0.0.1:${front}/udp`, '--backend', `127.0.0.1:${srvPort}`, '--access-log=false'], 2)
  t.teardown(async () => { await p.stop() })
  let r = { code: 1 as number | null, stdout: '', stderr: '' }
  // The server may still be starting: retry the connect (bounded).
  await waitUntil(async () => {
    r = await run('iperf3', ['-c', '127.0.0.1', '-p', String(front), '-u', '-b', '8M', '-t', '2', '-l', '1400', '-J'], 30_000)
    return r.code === 0 || !/Connection refused/.test(r.stdout + r.stderr)
  }, 15_000, 'iperf3 to connect')
  t.equal(r.code, 0, r.stderr)
  const j = JSON.parse(r.stdout) as { end: { sum: { packets: number, lost_packets: number, bytes: number } } }
  const sum = j.end.sum
  t.ok(sum.packets > 1000, `packets ${sum.packets}`)
  t.ok(sum.bytes > 1_000_000, `bytes ${sum.bytes}`)
  // iperf3 itself loses a few percent on this loaded 2-core machine even direct; most must arrive.
  t.ok(sum.lost_packets / sum.packets < 0.2, `loss ${sum.lost_packets}/${sum.packets}`)
})

t.test('socat client and server', async (t) => {
  const srvPort = await freeTcpUdpPort()
  const srv = startDaemon('socat', [`UDP4-RECVFROM:${srvPort},bind=127.0.0.1,fork`, 'SYSTEM:tr a-z A-Z'])
  t.teardown(async () => { await srv.stop() })
  const p = await startUdpCli(['--listen', '127.0.0.1:0/udp', '--backend', `127.0.0.1:${srvPort}`, '--access-log=false'])
  t.teardown(async () => { await p.stop() })
  let r = { code: 1 as number | null, stdout: '', stderr: '' }
  await waitUntil(async () => {
    r = await run('socat', ['-t', '2', '-', `UDP4:127.0.0.1:${p.udpPort()}`], 10_000, 'hello through kind-tunnel\n')
    return r.stdout !== ''
  }, 15_000, 'socat to get an answer')
  t.equal(r.stdout, 'HELLO THROUGH KIND-TUNNEL\n')
})
