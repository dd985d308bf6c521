// Percentiles over recorded samples (nearest-rank), and small formatting helpers.

export interface Summary { n: number, min: number, p50: number, p90: number, p99: number, p999: number, max: number, mean: number }

export function summarize (samples: ArrayLike<number>, n = samples.length): Summary {
  if (n === 0) return { n: 0, min: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0 }
  const a = Float64Array.from({ length: n }, (_, i) => samples[i] as number).sort()
  const rank = (p: number): number => a[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))] as number
  let sum = 0
  for (let i = 0; i < n; i++) sum += a[i] as number
  return { n, min: a[0] as number, p50: rank(0.5), p90: rank(0.9), p99: rank(0.99), p999: rank(0.999), max: a[n - 1] as number, mean: sum / n }
}

export function ms (v: number): string {
  return v >= 100 ? `${v.toFixed(0)} ms` : v >= 10 ? `${v.toFixed(1)} ms` : `${v.toFixed(2)} ms`
}

export function kib (v: number): string {
  return `${v.toFixed(v >= 100 ? 0 : 1)} KiB`
}

/** Add `by` to `rec[key]`. */
export function bump (rec: Record<string, number>, key: string, by = 1): void {
  rec[key] = (rec[key] ?? 0) + by
}
