// A small dependency-cruiser-style reader of src/: every import, export-from
// and dynamic import() of every .ts file, type-only ones included (a type
// cycle couples modules as much as a value one). Relative specifiers resolve
// to src/ paths (.js -> .ts); the rest stay as written (node:net, dockerode).

import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'

export interface ImportGraph {
  /** src-relative path (dataplane/listener.ts) -> what it imports (src-relative paths, or package / node: names). */
  readonly edges: ReadonlyMap<string, readonly string[]>
}

const SPEC = /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|(?:^|[\s;])import\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm

function files (dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...files(p))
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p)
  }
  return out
}

export function readGraph (srcDir: string): ImportGraph {
  const edges = new Map<string, string[]>()
  for (const file of files(srcDir)) {
    const text = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '')
    const deps = new Set<string>()
    for (const m of text.matchAll(SPEC)) {
      const spec = m[1] ?? m[2] ?? m[3]
      if (spec === undefined) continue
      if (spec.startsWith('.')) deps.add(relative(srcDir, resolve(dirname(file), spec.replace(/\.js$/, '.ts'))))
      else deps.add(spec)
    }
    edges.set(relative(srcDir, file), [...deps])
  }
  return { edges }
}

/** Every cycle among the modules `within` accepts (each reported once, as a path that returns to its start). */
export function cycles (g: ImportGraph, within: (m: string) => boolean): string[][] {
  const out: string[][] = []
  const state = new Map<string, 'open' | 'done'>()
  const stack: string[] = []
  const visit = (m: string): void => {
    state.set(m, 'open')
    stack.push(m)
    for (const d of g.edges.get(m) ?? []) {
      if (!within(d) || !g.edges.has(d)) continue
      const s = state.get(d)
      if (s === 'open') out.push([...stack.slice(stack.indexOf(d)), d])
      else if (s === undefined) visit(d)
    }
    stack.pop()
    state.set(m, 'done')
  }
  for (const m of [...g.edges.keys()].sort()) if (within(m) && !state.has(m)) visit(m)
  return out
}
