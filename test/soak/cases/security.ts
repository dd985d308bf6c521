// Case 7: security checks. A socket audit (ss) of `proxy` and `demo` (which
// runs `up`'s code), wildcard binds refused, the privileged helper refusing
// hostile requests, the relay refusing what is outside its allowlist, and a
// review of docs/rbac.yaml against the rules issue #9 allows.

import { execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadAllYaml } from '@kubernetes/client-node'
import { startRelay } from '../../../src/relay/server.js'
import { encodeConnect, encodeAuth, REPLY_LEN, Status, statusName } from '../../../src/relay/protocol.js'
import { silentLogger } from '../../../src/observe/logger.js'
import { Registry } from '../../../src/observe/metrics.js'
import { repoRoot } from '../../fixtures/peek-helpers.js'
import { createNetns, netnsAvailable } from '../../support/netns.js'
import { exitedAndDrained } from '../../support/cli.js'
import { runCase, type CaseRun, type CaseResult } from '../lib/case.js'
import { onLines } from '../lib/rpc.js'
import { CLI, sleep, startProxyCli, startWorker, waitFor } from '../lib/proc.js'

// ---- socket audit ------------------------------------------------------------

interface Listening { proto: string, local: string, pid: number }

/** Every listening TCP and UDP socket of `pids`, from `ss -ltnpH` / `ss -lunpH`. */
export function listeningSockets (pids: ReadonlySet<number>): Listening[] {
  const out: Listening[] = []
  for (const [proto, flags] of [['tcp', '-ltnpH'], ['udp', '-lunpH']] as const) {
    const text = execFileSync('ss', [flags], { encoding: 'utf8', timeout: 5000 })
    for (const line of text.split('\n')) {
      const cols = line.trim().split(/\s+/)
      if (cols.length < 5) continue
      for (const m of line.matchAll(/pid=(\d+),/g)) {
        if (pids.has(Number(m[1]))) { out.push({ proto, local: cols[3] as string, pid: Number(m[1]) }); break }
      }
    }
  }
  return out
}

/** A wildcard local address as ss prints it: 0.0.0.0:P, [::]:P, *:P, or with a %iface. */
export function isWildcard (local: string): boolean {
  return /^(0\.0\.0\.0|\[::\]|\*|\[::ffff:0\.0\.0\.0\])(%[^:]+)?:/.test(local)
}

/** `pid` and all its descendants (from /proc). */
function processTree (pid: number): Set<number> {
  const parent = new Map<number, number>()
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'utf8')
      parent.set(Number(d), Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]))
    } catch {}
  }
  const tree = new Set([pid])
  for (let grew = true; grew;) {
    grew = false
    for (const [p, pp] of parent) if (!tree.has(p) && tree.has(pp)) { tree.add(p); grew = true }
  }
  return tree
}

/** `p`, or `fallback` after `ms`; the timer is cleared either way (no lingering handle). */
async function within<T, F> (p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined
  const t = new Promise<F>((resolve) => { timer = setTimeout(() => resolve(fallback), ms) })
  try { return await Promise.race([p, t]) } finally { clearTimeout(timer) }
}

async function freePort (): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1')
  await once(s, 'listening')
  const p = (s.address() as AddressInfo).port
  await new Promise((resolve) => s.close(resolve))
  return p
}

function auditFigure (c: CaseRun, what: string, socks: Listening[]): void {
  c.figure(`listening sockets of ${what}`, socks.map((s) => `${s.proto} ${s.local}`).join(', ') || 'none')
  const wild = socks.filter((s) => isWildcard(s.local))
  c.check(`${what}: nothing on 0.0.0.0 or ::`, socks.length > 0 && wild.length === 0, wild.map((s) => s.local).join(', '))
}

/** Run the CLI once; resolves with its exit code and stderr. */
function runCliOnce (args: string[], timeoutMs = 15_000): Promise<{ code: number | null, stderr: string }> {
  const env = { ...process.env }
  delete env.TAP
  const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  return exitedAndDrained(child).then((code) => { clearTimeout(timer); return { code, stderr } })
}

export function socketAudit (opts: { demo: boolean }, log: (m: string) => void = () => {}): Promise<CaseResult> {
  return runCase('security-sockets', 'Socket audit (ss -ltnp / -lunp) and wildcard refusals', log, async (c) => {
    const be = await startWorker('backend', { mode: 'line' })
    c.defer(() => be.stop())
    const eb = be.listening[0] as { host: string, port: number }
    const px = await startProxyCli(['--listen', '127.0.0.1:0', '--listen', '127.0.0.2:0', '--route', `a.test=${eb.host}:${eb.port}`, '--backend', `${eb.host}:${eb.port}`, '--metrics', '127.0.0.1:0'])
    c.defer(() => px.stop('SIGKILL'))
    auditFigure(c, '`kind-tunnel proxy`', listeningSockets(new Set([px.pid])))

    for (const [flag, value] of [['--listen', '0.0.0.0:0'], ['--listen', '[::]:0'], ['--metrics', '0.0.0.0:0']] as const) {
      const args = flag === '--listen' ? ['proxy', '--listen', value, '--backend', '127.0.0.1:9'] : ['proxy', '--listen', '127.0.0.1:0', '--backend', '127.0.0.1:9', '--metrics', value]
      const r = await runCliOnce(args)
      c.check(`proxy ${flag} ${value} is refused: exit 2, KT_ERR_WILDCARD_BIND, one line, no stack`, r.code === 2 && /^error KT_ERR_WILDCARD_BIND: /.test(r.stderr) && r.stderr.trim().split('\n').length === 1, `exit ${String(r.code)}: ${r.stderr.trim().slice(0, 120)}`)
    }

    if (!opts.demo) return
    const help = await runCliOnce(['demo', '--help'])
    if (help.code !== 0) { c.note('`demo` is not in this build: its audit was skipped.'); return }
    const state = mkdtempSync(join(tmpdir(), 'kt-soak-demo-'))
    c.defer(() => rmSync(state, { recursive: true, force: true }))
    // Its own ports and IP range, so it cannot collide with another demo on this machine.
    const pool = `127.${241 + Math.floor(Math.random() * 8)}.${Math.floor(Math.random() * 250)}.0/24`
    const args = ['demo', '--json-logs', '--state-dir', state, '--http-port', String(await freePort()), '--https-port', String(await freePort()), '--ip-pool', pool, '--service-port', '8000', '--metrics', '127.0.0.1:0']
    const env = { ...process.env }
    delete env.TAP
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    c.defer(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        const t = setTimeout(() => child.kill('SIGKILL'), 15_000)
        await once(child, 'exit')
        clearTimeout(t)
      }
    })
    let ready = false
    const lines: string[] = []
    onLines(child.stdout, (l) => { lines.push(l); if (l === 'ready') ready = true })
    const errTail: string[] = []
    onLines(child.stderr, (l) => { errTail.push(l); if (errTail.length > 20) errTail.shift() })
    const ok = await waitFor(() => ready || child.exitCode !== null, '`demo` ready or exited', 60_000, { everyMs: 100 }).then(() => true, () => false)
    if (!ok || !ready) {
      c.check('`demo` came up', false, `exit ${String(child.exitCode)}: ${errTail.slice(-3).join(' | ').slice(0, 300)}`)
      return
    }
    await sleep(500)
    auditFigure(c, '`kind-tunnel demo` (the `up` code path, with its embedded API server and simulated nodes)', listeningSockets(processTree(child.pid as number)))
    child.kill('SIGTERM')
    const [code] = await within(once(child, 'exit'), 20_000, [null]) as [number | null]
    c.check('`demo` stops on SIGTERM', code !== null, `exit ${String(code)}`)
  })
}

// ---- the privileged helper -----------------------------------------------------

/** Requests a hostile agent might send; each must be refused before anything runs. */
export function hostileHelperLines (): string[] {
  const ips = [
    '1.2.3.4;id', '127.240.0.5;id', '127.240.0.5 && id', '$(id)', '`id`', '127.240.0.5|reboot', '--help', '-h', '-alias',
    '127.240.0.5 dev eth0', '127.240.0.5\n127.240.0.6', '127.240.0.5/8', '127.240.0.5%lo', ' 127.240.0.5',
    '10.0.0.1', '8.8.8.8', '127.0.0.1', '127.241.0.1', '127.240.0.0', '127.240.255.255', '0.0.0.0', '::', '::1',
    '::ffff:127.240.0.5', '0x7ff00005', '2130706433', '127.240.5', '169.254.169.254', 'localhost', '', 'a'.repeat(300),
  ]
  const lines: string[] = []
  for (const ip of ips) {
    lines.push(JSON.stringify({ verb: 'add', ip }))
    lines.push(JSON.stringify({ verb: 'remove', ip }))
  }
  lines.push(
    JSON.stringify({ verb: 'exec', ip: '127.240.0.5' }),
    JSON.stringify({ verb: 'add; id', ip: '127.240.0.5' }),
    JSON.stringify({ verb: 'add', ip: '127.240.0.5', dev: 'eth0' }),
    JSON.stringify({ verb: 'add', ip: '127.240.0.5', args: ['--force'] }),
    JSON.stringify({ verb: 'add', ip: ['127.240.0.5'] }),
    JSON.stringify({ verb: 'add', ip: 2130706433 }),
    JSON.stringify({ verb: 'list', ip: '127.240.0.5' }),
    '{"verb":"add","ip":"127.240.0.5","__proto__":{"x":1}}',
    '{"verb":"add","ip":"127.240.0.5","constructor":{"prototype":{"x":1}}}',
    '["add","127.240.0.5"]',
    'add 127.240.0.5',
    '{"verb":"add","ip":"127.240.0.5"',
    'null',
    JSON.stringify({ verb: 'add', ip: '127.240.0.5', pad: 'x'.repeat(2000) }),
  )
  return lines
}

export function helperRefusals (log: (m: string) => void = () => {}): Promise<CaseResult> {
  return runCase('security-helper', 'The privileged helper refuses injection attempts and IPs outside its pool', log, async (c) => {
    const loBefore = execFileSync('ip', ['-o', 'addr', 'show', 'dev', 'lo'], { encoding: 'utf8' })
    const env = { ...process.env }
    delete env.TAP
    const child = spawn(process.execPath, [CLI, 'helper', '--ip-pool', '127.240.0.0/16'], { env, stdio: ['pipe', 'pipe', 'pipe'] })
    c.defer(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
    const answers: Array<Record<string, unknown>> = []
    onLines(child.stdout, (l) => { try { answers.push(JSON.parse(l) as Record<string, unknown>) } catch { answers.push({ unparsable: l }) } })
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const hostile = hostileHelperLines()
    for (const l of hostile) child.stdin.write(`${l}\n`)
    child.stdin.write(`${JSON.stringify({ id: 'alive', verb: 'list' })}\n`)
    await waitFor(() => answers.length >= hostile.length + 1, 'an answer to every line', 15_000).catch(() => undefined) // the counts below show a shortfall
    child.stdin.end()
    const [code] = await within(once(child, 'exit'), 10_000, [null]) as [number | null]
    const refusals = answers.slice(0, hostile.length)
    const refused = refusals.filter((a) => a.ok === false && a.code === 'KT_ERR_ADDRESS_REFUSED').length
    const loAfter = execFileSync('ip', ['-o', 'addr', 'show', 'dev', 'lo'], { encoding: 'utf8' })
    c.figure('hostile requests sent / refused with KT_ERR_ADDRESS_REFUSED', `${hostile.length} / ${refused}`)
    c.check('every hostile request refused with KT_ERR_ADDRESS_REFUSED', refused === hostile.length, refusals.filter((a) => a.code !== 'KT_ERR_ADDRESS_REFUSED').map((a) => JSON.stringify(a).slice(0, 80)).join(' | '))
    c.check('the helper kept serving: a list afterwards is answered', answers[hostile.length]?.ok === true && answers[hostile.length]?.id === 'alive')
    c.check('loopback addresses unchanged', loBefore === loAfter)
    c.check('the helper exits 0 when its input ends, with nothing on stderr', code === 0 && stderr === '', `exit ${String(code)} ${stderr.slice(0, 100)}`)
  })
}

// ---- the relay allowlist ----------------------------------------------------------

function relayExchange (port: number, bytes: Buffer, payload?: string): Promise<{ reply: number[], echo: string }> {
  return new Promise((resolve) => {
    const s: Socket = connect({ host: '127.0.0.1', port })
    const parts: Buffer[] = []
    const timer = setTimeout(() => s.destroy(), 5000)
    s.on('error', () => {})
    s.on('data', (d: Buffer) => {
      parts.push(d)
      const all = Buffer.concat(parts)
      // Two replies (AUTH's, then BIND's), each version, status, info.
      if (payload !== undefined && all.length === 2 * REPLY_LEN && all[REPLY_LEN + 1] === Status.OK) s.end(payload)
    })
    s.once('close', () => {
      clearTimeout(timer)
      const all = Buffer.concat(parts)
      resolve({ reply: [...all.subarray(0, 2 * REPLY_LEN)], echo: all.subarray(2 * REPLY_LEN).toString() })
    })
    s.once('connect', () => { s.write(bytes) })
  })
}

export function relayAllowlist (log: (m: string) => void = () => {}): Promise<CaseResult> {
  return runCase('security-relay', 'The relay refuses what is outside its allowlist', log, async (c) => {
    if (!netnsAvailable()) { c.note('skipped: needs ip netns (root) for an allowed, non-loopback destination'); return }
    const ns = createNetns()
    c.defer(() => ns.remove())
    // A NodePort-range echo inside the namespace: the one allowed destination.
    const node = await startWorker('backend', { mode: 'line', host: ns.nsIp, port: 30080 }, { wrap: ['ip', 'netns', 'exec', ns.name] })
    c.defer(() => node.stop())
    const token = randomBytes(32)
    const relay = await startRelay({ host: '127.0.0.1', port: 0, token, allow: [`${ns.nsIp}/32`], connectTimeoutMs: 1000, headerTimeoutMs: 1000, metrics: new Registry(), logger: silentLogger() })
    c.defer(() => relay.destroy())
    const port = relay.address.port
    const ok = await relayExchange(port, Buffer.concat([encodeAuth(token, { ack: true }), encodeConnect({ address: ns.nsIp, port: 30080 }, undefined, false, true)]), 'hello relay\n')
    c.check('an allowlisted node IP and NodePort is dialled and spliced', ok.reply[1] === Status.OK && ok.reply[REPLY_LEN + 1] === Status.OK && ok.echo === 'hello relay\n', `reply ${ok.reply.join(',')} echo ${JSON.stringify(ok.echo)}`)
    const denied: Array<[string, number]> = [
      ['127.0.0.1', 30080], ['127.0.0.53', 30080], ['::1', 30080], ['::ffff:127.0.0.1', 30080],
      ['169.254.169.254', 80], ['169.254.169.254', 30080], ['0.0.0.0', 30080], ['224.0.0.1', 30080],
      [ns.nsIp, 22], [ns.nsIp, 6443], [ns.nsIp, 29999], [ns.nsIp, 32768], [ns.hostIp, 30080], ['10.0.0.1', 30080],
    ]
    const outcomes: string[] = []
    let allDenied = true
    for (const [address, p] of denied) {
      const r = await relayExchange(port, Buffer.concat([encodeAuth(token, { ack: true }), encodeConnect({ address, port: p }, undefined, false, true)]))
      outcomes.push(`${address}:${p} ${statusName(r.reply[REPLY_LEN + 1] ?? -1)}`)
      if (!(r.reply[1] === Status.OK && r.reply[REPLY_LEN + 1] === Status.DENIED)) allDenied = false
    }
    c.check(`every destination outside the allowlist refused with DENIED (${denied.length})`, allDenied, outcomes.filter((o) => !o.endsWith(' denied')).join(', '))
    const bad = await relayExchange(port, Buffer.concat([encodeAuth(randomBytes(32), { ack: true }), encodeConnect({ address: ns.nsIp, port: 30080 }, undefined, false, true)]))
    c.check('a wrong token is refused with AUTH before any BIND is read', bad.reply[1] === Status.AUTH)
    c.figure('relay destinations tried / denied / dialled', `${denied.length + 1} / ${relay.counters.refusedDenied} / ${relay.counters.dialed}`)
    c.check('only the allowlisted destination was ever dialled', relay.counters.dialed === 1 && relay.counters.refusedDenied === denied.length)
  })
}

// ---- RBAC review -------------------------------------------------------------------

interface Rule { apiGroups?: string[], resources?: string[], verbs?: string[], resourceNames?: string[], nonResourceURLs?: string[] }

/** What issue #9 allows, as `verb resource[.group]`. */
export const ISSUE_RBAC: readonly string[] = [
  'get services', 'list services', 'watch services', 'patch services/status', 'update services',
  'list nodes', 'watch nodes', 'list endpointslices.discovery.k8s.io', 'watch endpointslices.discovery.k8s.io',
  'create events', 'patch events', 'create events.events.k8s.io', 'patch events.events.k8s.io',
]

export function grants (rules: readonly Rule[]): string[] {
  const out = new Set<string>()
  for (const r of rules) {
    for (const g of r.apiGroups ?? ['']) {
      for (const res of r.resources ?? []) {
        for (const v of r.verbs ?? []) {
          const [base, sub] = res.split('/')
          out.add(`${v} ${base as string}${g === '' ? '' : `.${g}`}${sub === undefined ? '' : `/${sub}`}`)
        }
      }
    }
    for (const u of r.nonResourceURLs ?? []) for (const v of r.verbs ?? []) out.add(`${v} url:${u}`)
  }
  return [...out].sort()
}

export function rbacReview (log: (m: string) => void = () => {}): Promise<CaseResult> {
  return runCase('security-rbac', 'RBAC manifest (docs/rbac.yaml) reviewed', log, async (c) => {
    const file = join(repoRoot(), 'docs', 'rbac.yaml')
    let text: string
    try { text = readFileSync(file, 'utf8') } catch { c.check('docs/rbac.yaml exists', false); return }
    const docs = loadAllYaml(text) as Array<{ kind?: string, rules?: Rule[], metadata?: { name?: string }, roleRef?: { name?: string } }>
    const roles = docs.filter((d) => d.kind === 'ClusterRole' || d.kind === 'Role')
    const rules = roles.flatMap((r) => r.rules ?? [])
    const g = grants(rules)
    c.figure('rules granted', g.join(', '))
    c.check('no wildcard anywhere (apiGroups, resources, verbs)', !rules.some((r) => [...(r.apiGroups ?? []), ...(r.resources ?? []), ...(r.verbs ?? [])].includes('*')))
    c.check('no secrets, configmaps, pods, or other workloads', !g.some((x) => /\b(secrets|configmaps|pods|deployments|daemonsets|statefulsets|serviceaccounts|roles|rolebindings|clusterroles|clusterrolebindings)\b/.test(x)))
    c.check('no delete, deletecollection, escalate, bind or impersonate', !g.some((x) => /^(delete|deletecollection|escalate|bind|impersonate) /.test(x)))
    const writes = g.filter((x) => !/^(get|list|watch) /.test(x))
    c.figure('write verbs', writes.join(', '))
    c.check('writes only: Services (finalizer), services/status, events', writes.every((x) => /^(patch|update) services$|^patch services\/status$|^(create|patch) events(\.events\.k8s\.io)?$/.test(x)), writes.join(', '))
    const extra = g.filter((x) => !ISSUE_RBAC.includes(x))
    c.figure('granted beyond the list in issue #9', extra.length === 0 ? 'none' : extra.join(', '))
    const missing = ['get services', 'list services', 'watch services', 'patch services/status', 'list nodes', 'watch nodes', 'list endpointslices.discovery.k8s.io', 'watch endpointslices.discovery.k8s.io', 'create events', 'patch events'].filter((x) => !g.includes(x))
    c.check('everything the controller needs is granted', missing.length === 0, missing.join(', '))
    c.check('bound to one ServiceAccount only', docs.filter((d) => d.kind === 'ClusterRoleBinding' || d.kind === 'RoleBinding').every((b) => ((b as { subjects?: unknown[] }).subjects ?? []).length === 1))
  })
}
