#!/usr/bin/env node
// Builds the optional native splice addon (issue #8) into ./build/Release/kt_splice.node.
// It never fails the install: on any problem it prints one line and exits 0, and
// kind-tunnel uses the pure-JS data plane. Nothing is downloaded: the headers come
// from the running Node's own prefix (or npm's `nodedir`), never from the network.
//   node src/dataplane/native/build-addon.mjs        (KT_NATIVE=0 skips, KT_NATIVE_VERBOSE=1 shows compiler output)
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const out = join(here, 'build', 'Release', 'kt_splice.node')
const verbose = process.env.KT_NATIVE_VERBOSE === '1'
const stdio = verbose ? 'inherit' : 'ignore'
const TIMEOUT_MS = 180_000

function done (msg) {
  console.log(`kind-tunnel native splice: ${msg}`)
  process.exit(0)
}

function loads (file) {
  // A separate process: a broken addon must not take this script down with it.
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(file)})`], { stdio, timeout: 30_000 })
  return r.status === 0
}

if (process.env.KT_NATIVE === '0') done('skipped (KT_NATIVE=0); the pure-JS data plane is used')
if (process.platform !== 'linux') done(`skipped on ${process.platform} (Linux only); the pure-JS data plane is used`)

const prefix = dirname(dirname(process.execPath))
const nodedirs = [process.env.npm_config_nodedir, prefix].filter((d) => typeof d === 'string' && d !== '')
const nodedir = nodedirs.find((d) => existsSync(join(d, 'include', 'node', 'node_api.h')))
if (nodedir === undefined) done('skipped: no Node headers next to this Node (include/node/node_api.h); the pure-JS data plane is used')

const gyps = []
if (process.env.npm_execpath) gyps.push(join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'))
gyps.push(join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'))
try { gyps.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js')) } catch { /* not installed locally */ }
const gyp = gyps.find((p) => existsSync(p))

let how
if (gyp !== undefined) {
  const r = spawnSync(process.execPath, [gyp, 'rebuild', '--directory', here, `--nodedir=${nodedir}`], { stdio, timeout: TIMEOUT_MS })
  if (r.status === 0 && existsSync(out)) how = 'node-gyp'
}
if (how === undefined) {
  // No node-gyp (or no python for it): an N-API addon needs nothing but the headers.
  const cc = process.env.CC || 'cc'
  mkdirSync(dirname(out), { recursive: true })
  const r = spawnSync(cc, ['-std=gnu11', '-O2', '-fPIC', '-shared', '-pthread', `-I${join(nodedir, 'include', 'node')}`,
    '-DNODE_GYP_MODULE_NAME=kt_splice', '-o', out, join(here, 'kt_splice.c'), join(here, 'kt_accept.c'), join(here, 'kt_peek.c')], { stdio, timeout: TIMEOUT_MS })
  if (r.status === 0 && existsSync(out)) how = cc
}
if (how === undefined) done('not built (no working compiler); the pure-JS data plane is used')
if (!loads(out)) {
  rmSync(out, { force: true })
  done('built but failed to load, removed; the pure-JS data plane is used')
}
done(`built with ${how}: ${out}`)
