// A minimal ustar codec (POSIX.1-1988, with the pax 'x' and GNU 'L' long-name
// records on read). The Docker archive API speaks tar: we write the relay's
// build context and token file, and read single files (admin.conf, the token)
// back. Small inputs only; everything stays in memory, bounded by the caller.

export interface TarEntry {
  readonly name: string
  readonly data?: Buffer
  /** Default: 0o644 for files, 0o755 for directories. */
  readonly mode?: number
  readonly uid?: number
  readonly gid?: number
  readonly type?: 'file' | 'dir' | 'symlink'
  /** The target of a symlink. */
  readonly link?: string
}

const BLOCK = 512

function writeOctal (h: Buffer, value: number, at: number, len: number): void {
  // len-1 octal digits, zero padded, then NUL.
  h.write(value.toString(8).padStart(len - 1, '0'), at, len - 1, 'latin1')
  h[at + len - 1] = 0
}

function splitName (name: string): { prefix: string, name: string } {
  if (Buffer.byteLength(name) <= 100) return { prefix: '', name }
  const cut = name.lastIndexOf('/', 155)
  if (cut <= 0 || Buffer.byteLength(name.slice(cut + 1)) > 100) throw new RangeError(`tar: path too long: ${name}`)
  return { prefix: name.slice(0, cut), name: name.slice(cut + 1) }
}

function header (e: TarEntry, size: number): Buffer {
  const h = Buffer.alloc(BLOCK)
  const dir = e.type === 'dir'
  const n = splitName(dir && !e.name.endsWith('/') ? e.name + '/' : e.name)
  h.write(n.name, 0, 100, 'utf8')
  writeOctal(h, e.mode ?? (dir ? 0o755 : 0o644), 100, 8)
  writeOctal(h, e.uid ?? 0, 108, 8)
  writeOctal(h, e.gid ?? 0, 116, 8)
  writeOctal(h, size, 124, 12)
  writeOctal(h, 0, 136, 12) // mtime 0: identical inputs give identical archives
  h.fill(0x20, 148, 156) // checksum field counts as spaces while summing
  h[156] = dir ? 0x35 : e.type === 'symlink' ? 0x32 : 0x30
  if (e.type === 'symlink') h.write(e.link ?? '', 157, 100, 'utf8')
  h.write('ustar\u000000', 257, 8, 'latin1')
  h.write(n.prefix, 345, 155, 'utf8')
  let sum = 0
  for (const b of h) sum += b
  h.write(sum.toString(8).padStart(6, '0') + '\u0000 ', 148, 8, 'latin1')
  return h
}

export function packTar (entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = []
  for (const e of entries) {
    const data = e.type === 'dir' || e.type === 'symlink' ? Buffer.alloc(0) : (e.data ?? Buffer.alloc(0))
    parts.push(header(e, data.length))
    if (data.length > 0) {
      parts.push(data)
      const pad = (BLOCK - (data.length % BLOCK)) % BLOCK
      if (pad > 0) parts.push(Buffer.alloc(pad))
    }
  }
  parts.push(Buffer.alloc(BLOCK * 2))
  return Buffer.concat(parts)
}

function cstr (b: Buffer, at: number, len: number): string {
  const s = b.subarray(at, at + len)
  const z = s.indexOf(0)
  return (z < 0 ? s : s.subarray(0, z)).toString('utf8')
}

function octal (b: Buffer, at: number, len: number): number {
  const t = cstr(b, at, len).trim()
  if (t === '') return 0
  if (!/^[0-7]+$/.test(t)) throw new RangeError(`tar: bad octal field ${JSON.stringify(t)}`)
  return parseInt(t, 8)
}

export interface UntarEntry {
  readonly name: string
  readonly type: 'file' | 'dir' | 'other'
  readonly data: Buffer
}

/** Read every entry of an archive. Throws RangeError on a malformed archive. */
export function unpackTar (buf: Buffer): UntarEntry[] {
  const out: UntarEntry[] = []
  let at = 0
  let longName: string | undefined
  while (at + BLOCK <= buf.length) {
    const h = buf.subarray(at, at + BLOCK)
    if (h.every((b) => b === 0)) break
    const size = octal(h, 124, 12)
    const flag = String.fromCharCode(h[156] as number)
    const dataAt = at + BLOCK
    if (dataAt + size > buf.length) throw new RangeError('tar: truncated archive')
    const data = buf.subarray(dataAt, dataAt + size)
    at = dataAt + Math.ceil(size / BLOCK) * BLOCK
    if (flag === 'L') { longName = cstr(data, 0, data.length); continue }
    if (flag === 'x') {
      // pax records: "LEN key=value\n"; only `path` matters here.
      const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(data.toString('utf8'))
      if (m !== null) longName = m[1]
      continue
    }
    if (flag === 'g') continue
    const prefix = cstr(h, 345, 155)
    const name = longName ?? (prefix === '' ? cstr(h, 0, 100) : `${prefix}/${cstr(h, 0, 100)}`)
    longName = undefined
    const type = flag === '0' || flag === '\u0000' ? 'file' : flag === '5' ? 'dir' : 'other'
    out.push({ name, type, data: Buffer.from(data) })
  }
  if (at < buf.length && at + BLOCK > buf.length) throw new RangeError('tar: truncated header')
  return out
}

/** The first regular file in an archive (what GET /containers/{id}/archive returns for a file path). */
export function firstFile (buf: Buffer): UntarEntry | undefined {
  return unpackTar(buf).find((e) => e.type === 'file')
}
