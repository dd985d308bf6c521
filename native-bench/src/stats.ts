// Small, pure statistics helpers shared by the harness and the report.

/** Median of the finite values; NaN when there are none. */
export function median(values: readonly number[]): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/** Nearest-rank percentile (p in 0..100) of an ascending-sorted array. */
export function percentileSorted(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  // the epsilon keeps 99.9% of 1000 at rank 999 despite 0.999 * 1000 = 999.0000000000001
  const rank = Math.ceil((p / 100) * sorted.length - 1e-9);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function summarize(values: readonly number[]): Summary {
  const v = values.filter(Number.isFinite);
  if (v.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 };
  return { median: median(v), min: Math.min(...v), max: Math.max(...v), n: v.length };
}

/**
 * Ratios taken within each round, then summarized: rounds are interleaved, so a
 * ratio inside one round cancels most of the machine's drift between rounds.
 * `better: 'lower'` inverts the ratio, so that above 1 always means better than the reference.
 */
export function roundRatios(
  value: ReadonlyMap<number, number>,
  reference: ReadonlyMap<number, number>,
): number[] {
  const out: number[] = [];
  for (const [round, v] of value) {
    const r = reference.get(round);
    if (r === undefined || !Number.isFinite(v) || !Number.isFinite(r) || r === 0) continue;
    out.push(v / r);
  }
  return out;
}

/** Deterministic PRNG (mulberry32) so a run's shuffled order can be reproduced from its seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function shuffle<T>(items: readonly T[], random: () => number): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}
