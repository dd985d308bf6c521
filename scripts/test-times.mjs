#!/usr/bin/env node
// The slowest test files of a run, from tap's TAP output (a log of `npm test`
// or `npx tap --reporter=tap ...`):
//   node scripts/test-times.mjs [--top N] [--markdown] LOG...
// Each `ok N - FILE # time=MSms` line at the top level is one file.

import { readFileSync } from 'node:fs'

const args = process.argv.slice(2)
let top = 10
let markdown = false
const files = []
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--top') top = Number(args[++i])
  else if (args[i] === '--markdown') markdown = true
  else files.push(args[i])
}
if (files.length === 0) { console.error('usage: node scripts/test-times.mjs [--top N] [--markdown] LOG...'); process.exit(2) }

const times = new Map()
let failed = 0
for (const f of files) {
  for (const line of readFileSync(f, 'utf8').split('\n')) {
    const m = /^(not ok|ok) \d+ - (\S+)(?: # time=([\d.]+)ms)?/.exec(line)
    if (m === null) continue
    if (m[1] === 'not ok') failed++
    times.set(m[2], { ms: Number(m[3] ?? 0), ok: m[1] === 'ok' })
  }
}
const rows = [...times].sort((a, b) => b[1].ms - a[1].ms).slice(0, top)
const total = [...times.values()].reduce((s, r) => s + r.ms, 0)
if (markdown) {
  console.log('| file | seconds |')
  console.log('|---|---:|')
  for (const [f, r] of rows) console.log(`| ${f.replace(/^dist\//, '')}${r.ok ? '' : ' (failed)'} | ${(r.ms / 1000).toFixed(1)} |`)
} else {
  for (const [f, r] of rows) console.log(`${(r.ms / 1000).toFixed(1).padStart(7)} s  ${f}${r.ok ? '' : '  (failed)'}`)
}
console.log(`${times.size} files, ${failed} failed, ${(total / 1000).toFixed(0)} s of file time in all`)
