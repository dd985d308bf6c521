// A small Prometheus text-format registry. Counters are plain numbers kept in
// Maps keyed by their label string, so an increment costs one Map lookup and
// nothing is formatted until a scrape. Label values are escaped at scrape time.

type Labels = Readonly<Record<string, string>>

function labelKey (labels: Labels | undefined): string {
  if (labels === undefined) return ''
  const keys = Object.keys(labels)
  if (keys.length === 0) return ''
  keys.sort()
  let out = ''
  for (const k of keys) {
    const v = String(labels[k]).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
    out += (out === '' ? '' : ',') + `${k}="${v}"`
  }
  return out
}

abstract class Metric {
  readonly name: string
  readonly help: string
  abstract readonly type: 'counter' | 'gauge' | 'histogram'
  constructor (name: string, help: string) {
    this.name = name
    this.help = help
  }

  abstract samples (): string[]
}

export type { Labels }

/** A counter cell bound to one label set: `inc()` is a field increment. */
export class Cell {
  v = 0
  inc (by = 1): void { this.v += by }
}

export class Counter extends Metric {
  readonly type = 'counter'
  private readonly cells = new Map<string, Cell>()
  /** Bind once (per listener, per upstream), then increment on the hot path for free. */
  bind (labels?: Labels): Cell {
    const k = labelKey(labels)
    let c = this.cells.get(k)
    if (c === undefined) {
      c = new Cell()
      this.cells.set(k, c)
    }
    return c
  }

  inc (labels?: Labels, by = 1): void {
    this.bind(labels).v += by
  }

  get (labels?: Labels): number {
    return this.cells.get(labelKey(labels))?.v ?? 0
  }

  /** Sum over every label set, or over those whose labels include `match`. */
  total (match?: Labels): number {
    let t = 0
    const want = match === undefined ? [] : Object.entries(match).map(([k, v]) => `${k}="${v}"`)
    for (const [k, c] of this.cells) {
      if (want.every((w) => k.split(',').includes(w))) t += c.v
    }
    return t
  }

  samples (): string[] {
    const out: string[] = []
    for (const [k, c] of this.cells) out.push(k === '' ? `${this.name} ${c.v}` : `${this.name}{${k}} ${c.v}`)
    return out
  }
}

export class Gauge extends Metric {
  readonly type = 'gauge'
  private readonly values = new Map<string, number>()
  private readonly collectors: Array<{ fn: (set: (labels: Labels | undefined, v: number) => void) => void, keys: Set<string> }> = []
  set (labels: Labels | undefined, v: number): void {
    this.values.set(labelKey(labels), v)
  }

  inc (labels?: Labels, by = 1): void {
    const k = labelKey(labels)
    this.values.set(k, (this.values.get(k) ?? 0) + by)
  }

  dec (labels?: Labels, by = 1): void {
    this.inc(labels, -by)
  }

  get (labels?: Labels): number {
    return this.values.get(labelKey(labels)) ?? 0
  }

  delete (labels?: Labels): void {
    this.values.delete(labelKey(labels))
  }

  /**
   * Register a function that sets values at scrape time. The series it set at
   * the last scrape and not at this one are deleted: what it reports is the
   * whole of its series (a removed listener's goes with it).
   */
  collect (fn: (set: (labels: Labels | undefined, v: number) => void) => void): void {
    this.collectors.push({ fn, keys: new Set() })
  }

  samples (): string[] {
    for (const c of this.collectors) {
      const now = new Set<string>()
      c.fn((l, v) => { const k = labelKey(l); now.add(k); this.values.set(k, v) })
      for (const k of c.keys) if (!now.has(k)) this.values.delete(k)
      c.keys = now
    }
    const out: string[] = []
    for (const [k, v] of this.values) out.push(k === '' ? `${this.name} ${v}` : `${this.name}{${k}} ${v}`)
    return out
  }
}

export class HistogramCell {
  readonly buckets: readonly number[]
  readonly counts: number[]
  sum = 0
  count = 0
  constructor (buckets: readonly number[]) {
    this.buckets = buckets
    this.counts = new Array<number>(buckets.length).fill(0)
  }

  observe (v: number): void {
    const b = this.buckets
    for (let i = 0; i < b.length; i++) {
      if (v <= (b[i] as number)) { this.counts[i] = (this.counts[i] as number) + 1; break }
    }
    this.sum += v
    this.count++
  }
}

export class Histogram extends Metric {
  readonly type = 'histogram'
  readonly buckets: readonly number[]
  private readonly series = new Map<string, HistogramCell>()
  constructor (name: string, help: string, buckets: readonly number[]) {
    super(name, help)
    this.buckets = [...buckets].sort((a, b) => a - b)
  }

  /** Bind once per label set; `observe(v)` on the result does no label work. */
  bind (labels?: Labels): HistogramCell {
    const k = labelKey(labels)
    let s = this.series.get(k)
    if (s === undefined) {
      s = new HistogramCell(this.buckets)
      this.series.set(k, s)
    }
    return s
  }

  observe (labels: Labels | undefined, v: number): void {
    this.bind(labels).observe(v)
  }

  count (labels?: Labels): number {
    return this.series.get(labelKey(labels))?.count ?? 0
  }

  samples (): string[] {
    const out: string[] = []
    for (const [k, s] of this.series) {
      let cum = 0
      const pre = k === '' ? '' : k + ','
      for (let i = 0; i < this.buckets.length; i++) {
        cum += s.counts[i] as number
        out.push(`${this.name}_bucket{${pre}le="${this.buckets[i]}"} ${cum}`)
      }
      out.push(`${this.name}_bucket{${pre}le="+Inf"} ${s.count}`)
      const lbl = k === '' ? '' : `{${k}}`
      out.push(`${this.name}_sum${lbl} ${s.sum}`)
      out.push(`${this.name}_count${lbl} ${s.count}`)
    }
    return out
  }
}

export class Registry {
  private readonly metrics = new Map<string, Metric>()

  counter (name: string, help: string): Counter {
    return this.register(name, () => new Counter(name, help)) as Counter
  }

  gauge (name: string, help: string): Gauge {
    return this.register(name, () => new Gauge(name, help)) as Gauge
  }

  histogram (name: string, help: string, buckets: readonly number[]): Histogram {
    return this.register(name, () => new Histogram(name, help, buckets)) as Histogram
  }

  private register (name: string, make: () => Metric): Metric {
    let m = this.metrics.get(name)
    if (m === undefined) {
      m = make()
      this.metrics.set(name, m)
    }
    return m
  }

  /** Prometheus text exposition format 0.0.4. */
  render (): string {
    let out = ''
    for (const m of this.metrics.values()) {
      out += `# HELP ${m.name} ${m.help}\n# TYPE ${m.name} ${m.type}\n`
      for (const s of m.samples()) out += s + '\n'
    }
    return out
  }
}
