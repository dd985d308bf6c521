// Issue 15: the data plane's modules reached into each other
// (connection -> listener -> listener-manager -> fastlane -> listener ...),
// so none could be read or tested alone. Now they share context.ts and the
// graph is acyclic. This also holds the module boundaries docs/architecture.md
// states ("Modules (src/)": who may import what).
import t from 'tap'
import { fileURLToPath } from 'node:url'
import { cycles, readGraph } from '../support/import-graph.js'

const src = fileURLToPath(new URL('../../../src/', import.meta.url))
const g = readGraph(src)
const folder = (m: string): string => m.includes('/') ? m.slice(0, m.indexOf('/')) : ''

/** Imports of modules under `from` that `bad` refuses, as "module -> import". */
function offenders (from: (m: string) => boolean, bad: (dep: string) => boolean): string[] {
  const out: string[] = []
  for (const [m, deps] of g.edges) if (from(m)) for (const d of deps) if (bad(d)) out.push(`${m} -> ${d}`)
  return out
}

t.test('the reader sees the data plane', async (t) => {
  t.ok(g.edges.get('dataplane/listener-manager.ts')?.includes('dataplane/listener.ts'), 'listener-manager imports listener')
  t.ok((g.edges.get('dataplane/fastlane.ts') ?? []).includes('dataplane/context.ts'))
})

t.test('src/dataplane has no import cycle (type imports included)', async (t) => {
  t.same(cycles(g, (m) => m.startsWith('dataplane/')).map((c) => c.join(' -> ')), [])
})

t.test('module boundaries of docs/architecture.md', async (t) => {
  const net = (d: string): boolean => d === 'node:net' || d === 'node:tls' || d === 'net' || d === 'tls'
  t.same(offenders((m) => folder(m) === 'cli', (d) => net(d) || d === '@kubernetes/client-node' || d === 'dockerode'), [], 'cli/ imports no net, tls, k8s client or dockerode')
  t.same(offenders((m) => folder(m) !== 'control', (d) => d === '@kubernetes/client-node'), [], 'only control/ imports @kubernetes/client-node')
  t.same(offenders((m) => folder(m) !== 'docker', (d) => d === 'dockerode'), [], 'only docker/ imports dockerode')
  t.same(offenders((m) => folder(m) === 'dataplane', (d) => folder(d) === 'control' || folder(d) === 'docker'), [], 'dataplane/ imports neither control/ nor docker/')
  t.same(offenders((m) => folder(m) === 'routing', (d) => ['node:tls', 'node:fs', 'node:fs/promises', 'node:http', 'node:child_process', 'node:timers/promises'].includes(d) || d.startsWith('observe/')), [], 'routing/ is pure: no I/O, no logging (node:net only for isIP)')
  t.same(offenders((m) => folder(m) === 'observe', (d) => !d.includes(':') && d.includes('/') && !d.startsWith('observe/') && d !== 'errors.ts' && !d.startsWith('@') && d.endsWith('.ts')), [], 'observe/ imports no other module')
})

t.test('no file in src/ over 500 lines without its reason written at its top (issue 15)', async (t) => {
  const { readdirSync, readFileSync } = await import('node:fs')
  const { join } = await import('node:path')
  const long: string[] = []
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name)
      if (e.isDirectory()) { if (e.name !== 'build' && e.name !== 'node_modules') walk(p); continue }
      if (!/\.(ts|c|h)$/.test(e.name)) continue
      const text = readFileSync(p, 'utf8')
      const lines = text.split('\n')
      if (lines.length <= 500) continue
      // the leading comment block: // lines (TS, C) or a /* */ block (C)
      const head = lines.slice(0, 60).join('\n')
      if (!/Over 500 lines/i.test(head)) long.push(`${p.slice(src.length)} (${lines.length} lines)`)
    }
  }
  walk(src)
  t.same(long, [], 'each says "Over 500 lines: <why>" in its leading comment')
})
