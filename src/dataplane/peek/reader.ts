// A forward-only cursor over the chunks a peeker has kept. It lets the
// incremental parsers walk the first flight as one virtual stream without
// concatenating it: reading a byte or skipping a run costs O(1) amortised and
// allocates nothing, however small the chunks (a slowloris sends 1 byte each).

export class ChunkReader {
  private readonly chunks: readonly Buffer[]
  /** Index of the chunk holding the next unread byte. */
  private ci = 0
  /** Offset of the next unread byte inside chunks[ci]. */
  private co = 0
  /** Offset of the next unread byte in the whole stream. */
  pos = 0

  constructor (chunks: readonly Buffer[]) {
    this.chunks = chunks
  }

  /** Bytes readable now, given the stream's current total length. */
  available (length: number): number {
    return length - this.pos
  }

  /** The next byte; the caller checks available() first. */
  u8 (): number {
    let c = this.chunks[this.ci] as Buffer
    while (this.co >= c.length) {
      this.ci++
      this.co = 0
      c = this.chunks[this.ci] as Buffer
    }
    this.pos++
    return c[this.co++] as number
  }

  /**
   * The chunk holding the next unread byte (the caller checks one is there);
   * `offset` is that byte's index in it. Lets a scanner run over a chunk in a
   * tight loop or with indexOf, then skip() what it consumed.
   */
  chunk (): Buffer {
    let c = this.chunks[this.ci] as Buffer
    while (this.co >= c.length) {
      this.ci++
      this.co = 0
      c = this.chunks[this.ci] as Buffer
    }
    return c
  }

  get offset (): number {
    return this.co
  }

  /** Skip n bytes (the caller checks they are there). */
  skip (n: number): void {
    this.pos += n
    while (n > 0) {
      const c = this.chunks[this.ci] as Buffer
      const left = c.length - this.co
      if (n < left) {
        this.co += n
        return
      }
      n -= left
      this.ci++
      this.co = 0
    }
  }

  /** Copy n bytes into dst at off, advancing (the caller checks they are there). */
  copy (dst: Buffer, off: number, n: number): void {
    this.pos += n
    while (n > 0) {
      const c = this.chunks[this.ci] as Buffer
      const take = Math.min(n, c.length - this.co)
      c.copy(dst, off, this.co, this.co + take)
      off += take
      n -= take
      this.co += take
      if (this.co >= c.length) {
        this.ci++
        this.co = 0
      }
    }
  }
}

/**
 * Bytes [start, end) of the stream as one Buffer: a view when they lie in one
 * chunk, otherwise a single copy. Used once per connection, when a complete
 * message is parsed.
 */
export function streamSlice (chunks: readonly Buffer[], start: number, end: number): Buffer {
  let base = 0
  let i = 0
  for (; i < chunks.length; i++) {
    const c = chunks[i] as Buffer
    if (start < base + c.length) break
    base += c.length
  }
  const first = chunks[i]
  if (first === undefined) return Buffer.alloc(0)
  if (end <= base + first.length) return first.subarray(start - base, end - base)
  const out = Buffer.allocUnsafe(end - start)
  const r = new ChunkReader(chunks.slice(i))
  r.skip(start - base)
  r.copy(out, 0, end - start)
  return out
}
