#!/usr/bin/env node
// Part of `npm run build`: remove what tsc compiled from sources that are gone.
// tsc never deletes an output whose .ts was moved or removed, and tap runs
// every dist/test/**/*.test.js, so a moved test would keep running, stale,
// in a checkout built before the move (a fresh clone never has the problem).
import { existsSync, readdirSync, rmSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const dist = join(root, 'dist')
let removed = 0

function walk (dir) {
  let entries
  try { entries = readdirSync(dir, { withFileTypes: true }) } catch { return }
  for (const e of entries) {
    const p = join(dir, e.name)
    if (e.isDirectory()) { walk(p); continue }
    const m = /^(.*)\.js(\.map)?$/.exec(e.name)
    if (m === null) continue
    const source = join(root, relative(dist, dir), `${m[1]}.ts`)
    if (!existsSync(source)) { rmSync(p); removed++ }
  }
}

walk(join(dist, 'src'))
walk(join(dist, 'test'))
if (removed > 0) console.log(`prune-dist: removed ${removed} compiled files whose sources are gone`)
