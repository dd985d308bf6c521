// Paired time to first byte (relay-ab --paired-ttfb): fresh connections that
// alternate between two or more ports in a shuffled order each turn, so every
// path sees the same moment's load; one HTTP request each, timed from connect
// to the first response byte. On a shared machine the per-turn difference
// between two paths is far steadier than either path's own figure.
// Usage: node ttfb-pair.js PORT,PORT[,...] SAMPLES [GAP_MS]
// Prints one JSON line: {"p50":[us per port],"diff":[median paired difference
// from the first port, us],"samples":n,"errors":n}
import net from 'node:net';

const ports = (process.argv[2] ?? '').split(',').map(Number);
const samples = Number(process.argv[3] ?? 300);
const gapMs = Math.max(0, Math.min(1000, Number(process.argv[4] ?? 2) || 0));
if (ports.length < 2 || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535) || !Number.isInteger(samples) || samples < 1) {
  process.stderr.write('usage: ttfb-pair PORT,PORT[,...] SAMPLES [GAP_MS]\n');
  process.exit(2);
}
const request = Buffer.from('GET / HTTP/1.1\r\nHost: bench.localhost\r\nConnection: close\r\n\r\n');
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function once(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const s = net.connect({ host: '127.0.0.1', port, noDelay: true });
    const timer = setTimeout(() => { s.destroy(); reject(new Error('timeout')); }, 2000);
    s.once('connect', () => s.write(request));
    s.once('data', () => { clearTimeout(timer); s.destroy(); resolve(Number(process.hrtime.bigint() - t0) / 1000); });
    s.once('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] ?? NaN; };
const per: number[][] = ports.map(() => []);
const diffs: number[][] = ports.map(() => []);
let errors = 0;
let done = 0;
for (let i = 0; i < samples; i++) {
  const order = ports.map((_, j) => j).sort(() => Math.random() - 0.5);
  const row: Array<number | undefined> = [];
  for (const j of order) {
    try { row[j] = await once(ports[j]!); per[j]!.push(row[j]!); } catch { errors++; }
    await pause(gapMs);
  }
  const base = row[0];
  if (base !== undefined) for (let j = 1; j < ports.length; j++) if (row[j] !== undefined) diffs[j]!.push(row[j]! - base);
  done++;
}
process.stdout.write(`${JSON.stringify({ p50: per.map((x) => Math.round(median(x))), diff: diffs.map((x) => (x.length === 0 ? 0 : Math.round(median(x)))), samples: done, errors })}\n`);
