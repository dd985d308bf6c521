// End to end with the real engine: host → Docker port mapping (127.0.0.1,
// ephemeral) → relay container → node container's NodePort, and back.
import t from 'tap'
import { waitFor } from '../support/wait.js'
import { createHash, randomBytes } from 'node:crypto'
import { connectDocker } from '../../src/docker/engine.js'
import { findCluster } from '../../src/docker/discover.js'
import { ensureRelay, removeRelay, listRelays, relayName, RELAY_LABEL, RELAY_CONFIG_LABEL } from '../../src/docker/relay-container.js'
import { RelayDialer } from '../../src/relay/client.js'
import { ListenerManager } from '../../src/dataplane/listener-manager.js'
import { Registry } from '../../src/observe/metrics.js'
import { silentLogger } from '../../src/observe/logger.js'
import type { Dialer } from '../../src/dataplane/dialer.js'
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { freeTcpUdpPort, udpClient } from '../udp/support.js'
import {
  dockerAvailable, useScratch, createNetwork, makeKindCluster, relayBaseImage, httpGet, readAll,
  docker as rawDocker, HTTP_PORT, ECHO_PORT,
} from '../support/docker.js'

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

const skip = await dockerAvailable()
if (skip !== null) t.plan(0, skip)
else {
  const prefix = await useScratch(t)
  const { docker } = await connectDocker()
  const [net, base] = await Promise.all([createNetwork(prefix), relayBaseImage()])
  const test = await makeKindCluster({ prefix, name: `${prefix}-a`, network: net, workers: 2 })
  const cluster = await findCluster({ docker, network: net.name, name: test.name })
  t.teardown(() => removeRelay(docker, cluster.name))

  const progress: string[] = []
  const info = await ensureRelay({ docker, cluster, base, connectTimeoutMs: 1000, onProgress: (l) => progress.push(l) })
  const dialer = new RelayDialer({ host: info.host, port: info.port, token: info.token, poolSize: 2, transport: 'pool' })
  t.teardown(() => dialer.close())

  t.test('the container: named, labelled, non-root, 127.0.0.1 only, token never in argv or env', async (t) => {
    t.equal(info.name, relayName(cluster.name))
    t.equal(info.reused, false)
    t.equal(info.host, '127.0.0.1')
    t.same(info.allow, cluster.nodes.map((n) => `${n.ipv4}/32`).sort())
    t.ok(progress.some((l) => l.startsWith('started ')), 'lifecycle reported through the callback')
    const c = await rawDocker.getContainer(info.containerId).inspect()
    t.equal(c.Name, `/${info.name}`)
    t.equal(c.Config.Labels[RELAY_LABEL], cluster.name)
    t.match(c.Config.Labels[RELAY_CONFIG_LABEL], /^[0-9a-f]{32}$/)
    t.equal(c.Config.User, '65532:65532')
    t.ok(c.NetworkSettings.Networks[net.name], 'on the cluster network')
    const bindings = Object.values(c.NetworkSettings.Ports).flat().filter((b) => b !== null) as Array<{ HostIp: string, HostPort: string }>
    t.ok(bindings.length > 0)
    for (const b of bindings) t.equal(b.HostIp, '127.0.0.1', 'published on loopback only')
    t.equal(Number(bindings[0]?.HostPort), info.port)
    const hex = info.token.toString('hex')
    t.equal(info.token.length, 32, '256-bit token')
    t.notOk(JSON.stringify(c.Config.Cmd).includes(hex), 'not in argv')
    t.notOk(JSON.stringify(c.Config.Env ?? []).includes(hex), 'not in env')
    t.same(c.HostConfig.CapDrop, ['ALL'])
    const top = await rawDocker.getContainer(info.containerId).top({ ps_args: '-o pid,uid,comm' }) as { Titles: string[], Processes: string[][] }
    const uidCol = top.Titles.findIndex((x: string) => x.toUpperCase() === 'UID')
    t.ok(top.Processes.length > 0 && top.Processes.every((p: string[]) => p[uidCol] === '65532'), 'the relay process runs as 65532')
  })

  t.test('each node answers through the relay, bytes intact both ways with half-close', async (t) => {
    t.ok(await dialer.warm(5000), 'pool warm')
    for (const n of test.nodes) {
      const s = await dialer.dial({ host: n.ip, port: HTTP_PORT, timeoutMs: 3000 })
      t.equal(await httpGet(s), `${n.name}\n`, `${n.name} via the relay`)
    }
    const payload = randomBytes(256 * 1024)
    const s = await dialer.dial({ host: test.nodes[1]?.ip as string, port: ECHO_PORT, timeoutMs: 3000 })
    const back = readAll(s, 15_000)
    // The echo service returns every byte, and closes only after our FIN: the
    // reply proves half-close went through the relay, its end proves the way back.
    s.end(payload)
    t.equal(sha(await back), sha(payload), '256 KiB echoed exactly')
    t.ok(dialer.stats().hits >= 1)
  })

  t.test('refusals through the container: codes, and nothing forwarded', async (t) => {
    const wrong = new RelayDialer({ host: info.host, port: info.port, token: randomBytes(32), poolSize: 0 })
    await t.rejects(wrong.dial({ host: test.nodes[0]?.ip as string, port: HTTP_PORT, timeoutMs: 3000 }, { answer: true }), { code: 'KT_ERR_RELAY_AUTH' })
    await wrong.close()
    const node = test.nodes[0]?.ip as string
    for (const [host, port] of [['127.0.0.1', HTTP_PORT], ['169.254.169.254', 80], ['169.254.169.254', HTTP_PORT], [node, 22], [node, 6443], [net.gateway, HTTP_PORT]] as Array<[string, number]>) {
      await t.rejects(dialer.dial({ host, port, timeoutMs: 3000 }, { answer: true }), { code: 'KT_ERR_RELAY_DENIED' }, `${host}:${port}`)
    }
  })

  t.test('UDP through the relay container: dig against dnsmasq on a node, 65,507-byte datagrams, the relay\'s own source address, socat, iperf3 -u', async (t) => {
    // Real servers in the node container's network namespace (nsenter), on its
    // address: dnsmasq on 30053, and a node:dgram echo on 30054 that answers
    // `who` with the sender's address.
    const node = test.nodes[0] as { id: string, ip: string }
    const pid = (await rawDocker.getContainer(node.id).inspect()).State.Pid
    const children: ChildProcess[] = []
    t.teardown(() => { for (const c of children) c.kill('SIGKILL') })
    const inNode = (cmd: string, args: string[]): void => {
      const c = spawn('nsenter', ['-t', String(pid), '-n', cmd, ...args], { stdio: 'ignore' })
      children.push(c)
    }
    inNode('/usr/sbin/dnsmasq', ['--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--bind-interfaces',
      `--listen-address=${node.ip}`, '--port=30053', '--host-record=web.kt.test,10.1.2.3', '--local=/kt.test/', '--pid-file=', '--user=root', '--log-facility=-'])
    inNode(process.execPath, ['-e', `const s = require('node:dgram').createSocket('udp4'); s.on('message', (m, r) => s.send(m.toString() === 'who' ? Buffer.from(r.address) : m, r.port, r.address)); s.bind(30054, ${JSON.stringify(node.ip)})`])
    const manager = new ListenerManager({ logger: silentLogger(), metrics: new Registry(), options: { accessLog: false }, dialers: new Map<string, Dialer>([['relay:e2e', dialer]]) })
    t.teardown(() => manager.close(0))
    const res = await manager.apply({ version: 1, listeners: [30053, 30054].map((p) => ({ host: p === 30053 ? '127.0.0.1' : '127.0.0.2', port: 0, protocol: 'udp' as const, routes: [], default: { id: `e2e/default/u:${p}/udp`, endpoints: [{ host: node.ip, port: p }], dialer: 'relay:e2e' } })) })
    t.same(res.failed, [])
    const dnsPort = res.bound.find((b) => b.host === '127.0.0.1')?.port as number
    const echoPort = res.bound.find((b) => b.host === '127.0.0.2')?.port as number
    const dig = (name: string): Promise<string> => new Promise((resolve) => {
      execFile('dig', ['@127.0.0.1', '-p', String(dnsPort), name, '+tries=1', '+time=2'], { timeout: 10_000 }, (_e, out) => resolve(out))
    })
    // dnsmasq may still be starting: ask again (bounded).
    await waitFor(async () => /web\.kt\.test\.\s+\d+\s+IN\s+A\s+10\.1\.2\.3/.test(await dig('web.kt.test')), 'dig through the relay to answer', 15_000)
    t.match(await dig('nope.kt.test'), /status: NXDOMAIN/, 'a negative answer comes back too')
    const c = await udpClient()
    t.teardown(() => c.close())
    await waitFor(async () => { c.send('who', echoPort, '127.0.0.2'); return await c.waitCount(1, 500).then(() => true, () => false) }, 'the echo server to answer', 10_000)
    const relayIp = (await rawDocker.getContainer(info.containerId).inspect()).NetworkSettings.Networks[net.name]?.IPAddress
    t.equal(c.inbox[0]?.toString(), relayIp, 'the node sees the relay container\'s own address')
    const big = randomBytes(65_507)
    const n = c.inbox.length
    c.send(big, echoPort, '127.0.0.2')
    await c.waitCount(n + 1)
    t.equal(sha(c.inbox[n] as Buffer), sha(big), 'the largest IPv4 datagram, byte-exact through the container')

    // socat, a real UDP client, against the echo.
    const viaSocat = await new Promise<string>((resolve) => {
      const p = execFile('socat', ['-t', '2', '-', `UDP4:127.0.0.2:${echoPort}`], { timeout: 10_000 }, (_e, out) => resolve(out))
      p.stdin?.end('hello through the relay\n')
    })
    t.equal(viaSocat, 'hello through the relay\n', 'socat through the relay container')

    // iperf3 -u: its TCP control connection and its UDP data on one port
    // number, both through the relay, to iperf3 -s in the node.
    inNode('iperf3', ['-s', '-1', '-B', node.ip, '-p', '30201'])
    // Listening before the first try: through the relay, a dial to a port not yet
    // open is a reset, which iperf3 reports as a failed test, not as refused.
    // (A probe connection would take the one session -1 serves.)
    const listening = (): Promise<boolean> => new Promise((resolve) => {
      execFile('nsenter', ['-t', String(pid), '-n', 'ss', '-ltnH', 'sport = :30201'], { timeout: 5000 }, (_e, o) => resolve(o.trim() !== ''))
    })
    await waitFor(listening, 'iperf3 -s listening in the node', 15_000)
    const front = await freeTcpUdpPort()
    const ups = { id: 'e2e/default/iperf:30201', endpoints: [{ host: node.ip, port: 30201 }], dialer: 'relay:e2e' }
    const iperfManager = new ListenerManager({ logger: silentLogger(), metrics: new Registry(), options: { accessLog: false }, dialers: new Map<string, Dialer>([['relay:e2e', dialer]]) })
    t.teardown(() => iperfManager.close(0))
    const both = await iperfManager.apply({
      version: 1,
      listeners: [
        { host: '127.0.0.3', port: front, routes: [], default: ups },
        { host: '127.0.0.3', port: front, protocol: 'udp' as const, routes: [], default: { ...ups, id: 'e2e/default/iperf:30201/udp' } },
      ],
    })
    t.same(both.failed, [])
    let out = ''
    await waitFor(async () => {
      out = await new Promise<string>((resolve) => {
        execFile('iperf3', ['-c', '127.0.0.3', '-p', String(front), '-u', '-b', '8M', '-t', '1', '-l', '1200', '-J', '--connect-timeout', '3000'], { timeout: 20_000 }, (_e, o) => resolve(o))
      })
      return !/Connection refused|unable to connect/.test(out)
    }, () => `iperf3 -s in the node to take the control connection (last: ${out.slice(0, 200)})`, 15_000)
    const report = JSON.parse(out) as { error?: string, end?: { sum?: { packets: number, lost_packets: number } } }
    const sum = report.end?.sum
    if (sum === undefined) { t.fail(`iperf3 -u through the relay container: ${report.error ?? out.slice(0, 400)}`); return }
    t.ok(sum.packets > 100 && sum.lost_packets / sum.packets < 0.5, `iperf3 -u through the relay container: ${sum.packets} packets, ${sum.lost_packets} lost`)
  })

  t.test('mux through the container: HTTP per node, 256 KiB echoed, and iperf3 (TCP, a server that takes one session) through the data plane', async (t) => {
    const mux = new RelayDialer({ host: info.host, port: info.port, token: info.token, poolSize: 0, transport: 'mux' })
    t.teardown(() => mux.close())
    await waitFor(() => mux.stats().mux?.carriers === 2, 'two mux connections to the relay container', 10_000, { seen: () => mux.stats() })
    for (const n of test.nodes) {
      const s = await mux.dial({ host: n.ip, port: HTTP_PORT, timeoutMs: 3000 })
      t.equal(await httpGet(s), `${n.name}\n`, `${n.name} via a mux stream`)
    }
    const payload = randomBytes(256 * 1024)
    const s = await mux.dial({ host: test.nodes[1]?.ip as string, port: ECHO_PORT, timeoutMs: 3000 })
    const back = readAll(s, 15_000)
    s.end(payload)
    t.equal(sha(await back), sha(payload), '256 KiB echoed exactly, half-close through the stream')
    const node = test.nodes[0] as { id: string, ip: string }
    const pid = (await rawDocker.getContainer(node.id).inspect()).State.Pid
    const server = spawn('nsenter', ['-t', String(pid), '-n', 'iperf3', '-s', '-1', '-B', node.ip, '-p', '30202'], { stdio: 'ignore' })
    t.teardown(() => { server.kill('SIGKILL') })
    const front = await freeTcpUdpPort()
    const manager = new ListenerManager({ logger: silentLogger(), metrics: new Registry(), options: { accessLog: false }, dialers: new Map<string, Dialer>([['relay:mux', mux]]) })
    t.teardown(() => manager.close(0))
    const applied = await manager.apply({ version: 1, listeners: [{ host: '127.0.0.3', port: front, routes: [], default: { id: 'e2e/default/iperf-mux:30202', endpoints: [{ host: node.ip, port: 30202 }], dialer: 'relay:mux' } }] })
    t.same(applied.failed, [])
    let out = ''
    await waitFor(async () => {
      out = await new Promise<string>((resolve) => {
        execFile('iperf3', ['-c', '127.0.0.3', '-p', String(front), '-t', '1', '-J', '--connect-timeout', '3000'], { timeout: 20_000 }, (_e, o) => resolve(o))
      })
      return !/Connection refused|unable to connect|control socket/.test(out)
    }, () => `iperf3 -s in the node to take the control connection (last: ${out.slice(0, 200)})`, 15_000)
    const end = (JSON.parse(out) as { end: { sum_received?: { bytes: number } } }).end
    t.ok((end.sum_received?.bytes ?? 0) > 1_000_000, `iperf3 through mux streams: ${end.sum_received?.bytes ?? 0} bytes received`)
    t.match(mux.stats(), { transport: 'mux', hits: 0, misses: 0 }, 'no pooled connection was used')
  })

  t.test('ensureRelay again: the same container and token are reused', async (t) => {
    const again = await ensureRelay({ docker, cluster, base, connectTimeoutMs: 1000 })
    t.equal(again.reused, true)
    t.equal(again.containerId, info.containerId)
    t.equal(again.port, info.port)
    t.ok(again.token.equals(info.token), 'token read back from the container')
  })

  t.test('a killed node: an error code within the connect timeout, never a hang', async (t) => {
    const victim = test.nodes.find((n) => n.name.endsWith('-worker2'))
    if (victim === undefined) return
    await rawDocker.getContainer(victim.id).kill()
    const started = Date.now()
    const err = await dialer.dial({ host: victim.ip, port: HTTP_PORT, timeoutMs: 3000 }, { answer: true }).then(() => null, (e: unknown) => e)
    const ms = Date.now() - started
    t.match(err, { code: /^(KT_ERR_CONNECT_TIMEOUT|KT_ERR_RELAY_UNREACHABLE)$/ })
    t.ok(ms < 2500, `answered in ${ms} ms (relay connect timeout 1000 ms)`)
    // The other nodes still work through the same relay.
    const s = await dialer.dial({ host: test.nodes[0]?.ip as string, port: HTTP_PORT, timeoutMs: 3000 })
    t.equal(await httpGet(s), `${test.nodes[0]?.name}\n`)
  })

  t.test('a changed config replaces the container', async (t) => {
    const replaced = await ensureRelay({ docker, cluster, base, connectTimeoutMs: 1500 })
    t.equal(replaced.reused, false)
    t.not(replaced.containerId, info.containerId)
    t.notOk(replaced.token.equals(info.token), 'a fresh token')
    const gone = await rawDocker.getContainer(info.containerId).inspect().then(() => false, () => true)
    t.ok(gone, 'the old container is removed')
    const d = new RelayDialer({ host: replaced.host, port: replaced.port, token: replaced.token, poolSize: 2 })
    t.teardown(() => d.close())
    const s = await d.dial({ host: test.nodes[0]?.ip as string, port: HTTP_PORT, timeoutMs: 3000 })
    t.equal(await httpGet(s), `${test.nodes[0]?.name}\n`)

    t.test('the relay container dies: the pool drops its dead connections, dials fail fast', async (t) => {
      t.ok(await d.warm(5000))
      await rawDocker.getContainer(replaced.containerId).kill()
      await waitFor(() => d.stats().idle === 0, 'no dead connection stays pooled', 5000)
      const started = Date.now()
      await t.rejects(d.dial({ host: test.nodes[0]?.ip as string, port: HTTP_PORT, timeoutMs: 3000 }), { code: 'KT_ERR_RELAY_DOWN' })
      t.ok(Date.now() - started < 2000, 'no hang')
    })

    t.test('a stopped relay is restarted by ensureRelay, with its token', async (t) => {
      const back = await ensureRelay({ docker, cluster, base, connectTimeoutMs: 1500 })
      t.equal(back.reused, true)
      t.equal(back.containerId, replaced.containerId)
      t.ok(back.token.equals(replaced.token))
      const d2 = new RelayDialer({ host: back.host, port: back.port, token: back.token, poolSize: 0 })
      const s2 = await d2.dial({ host: test.nodes[0]?.ip as string, port: HTTP_PORT, timeoutMs: 3000 })
      t.equal(await httpGet(s2), `${test.nodes[0]?.name}\n`)
      await d2.close()
    })
  })

  t.test('removeRelay leaves no container', async (t) => {
    t.equal(await removeRelay(docker, cluster.name), 1)
    t.same((await listRelays(docker)).filter((r) => r.cluster === cluster.name), [])
    t.equal(await removeRelay(docker, cluster.name), 0, 'idempotent')
  })
}
