// The source hash every kt_splice.node carries, so a build from older sources
// is never loaded (issue 13). build-addon.mjs appends a trailer to the file it
// builds; the loader (locate.ts) reads it back and compares it with the hash of
// the C sources beside it. An ELF shared object ignores bytes past its end, and
// the trailer survives a copy into a cache, a prebuild folder or an image.
'use strict'
const { createHash } = require('node:crypto')
const { closeSync, fstatSync, openSync, readFileSync, readSync, readdirSync } = require('node:fs')
const { join } = require('node:path')

const MAGIC = 'KT_SOURCE_SHA256='
const TRAILER_LEN = MAGIC.length + 64 + 1

/** sha256 over the addon's C sources and headers in `dir` (names and contents, sorted by name). */
function sourceHash (dir) {
  const h = createHash('sha256')
  for (const f of readdirSync(dir).filter((n) => /\.[ch]$/.test(n)).sort()) h.update(`${f}\0`).update(readFileSync(join(dir, f))).update('\0')
  return h.digest('hex')
}

/** The trailer to append to a freshly built addon. */
function trailer (hash) {
  return Buffer.from(`${MAGIC}${hash}\n`)
}

/** The hash a built addon carries, or undefined (no trailer: built by something else). */
function embeddedHash (file) {
  const fd = openSync(file, 'r')
  try {
    const size = fstatSync(fd).size
    if (size < TRAILER_LEN) return undefined
    const buf = Buffer.alloc(TRAILER_LEN)
    readSync(fd, buf, 0, TRAILER_LEN, size - TRAILER_LEN)
    const s = buf.toString('latin1')
    return s.startsWith(MAGIC) && /^[0-9a-f]{64}\n$/.test(s.slice(MAGIC.length)) ? s.slice(MAGIC.length, -1) : undefined
  } finally {
    closeSync(fd)
  }
}

module.exports = { sourceHash, trailer, embeddedHash }
