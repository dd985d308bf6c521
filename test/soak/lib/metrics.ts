// Scrape a Prometheus text endpoint (our own /metrics) and sum samples.

import { get } from 'node:http'

export interface Sample { name: string, labels: Record<string, string>, value: number }

export function parseMetrics (text: string): Sample[] {
  const out: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line)
    if (m === null) continue
    const labels: Record<string, string> = {}
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g
    let l
    while ((l = re.exec(m[2] ?? '')) !== null) labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c))
    out.push({ name: m[1] as string, labels, value: Number(m[3]) })
  }
  return out
}

/** GET /metrics; a failed or slow attempt is retried (up to 3 in all) so one lost request does not sink a case. */
export async function scrape (host: string, port: number, timeoutMs = 5000): Promise<Sample[]> {
  let last: unknown
  for (let i = 0; i < 3; i++) {
    try { return await scrapeOnce(host, port, timeoutMs) } catch (err) { last = err }
  }
  throw last
}

function scrapeOnce (host: string, port: number, timeoutMs: number): Promise<Sample[]> {
  return new Promise((resolve, reject) => {
    const req = get({ host, port, path: '/metrics', timeout: timeoutMs, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => resolve(parseMetrics(body)))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error('metrics scrape timed out')))
    req.on('error', reject)
  })
}

/** Sum of every sample named `name` whose labels include `match`. */
export function sum (samples: readonly Sample[], name: string, match: Record<string, string> = {}): number {
  let total = 0
  for (const s of samples) {
    if (s.name !== name) continue
    let ok = true
    for (const [k, v] of Object.entries(match)) if (s.labels[k] !== v) { ok = false; break }
    if (ok) total += s.value
  }
  return total
}

/** Sum by one label's values. */
export function byLabel (samples: readonly Sample[], name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const s of samples) {
    if (s.name !== name) continue
    const k = s.labels[label] ?? ''
    if (s.value !== 0) out[k] = (out[k] ?? 0) + s.value
  }
  return out
}
