// Time to first byte: connect, send one small HTTP request, time until the first
// response byte arrives. One connection at a time, so the figure is the latency
// of a fresh connection through the proxy (accept + upstream connect or pool hit).
// Usage: node ttfb-client.js PORT SAMPLES HOST TIME_LIMIT_MS [GAP_MS] [ADDR]
// GAP_MS (default 0) pauses between samples: the slow-path mode uses it so a warm
// pool has time to refill, as between a user's sporadic connections.
// Prints one JSON line: {"samples":n,"errors":n,"p50":us,"p90":us,"p99":us,"max":us}
import net from 'node:net';
import { percentileSorted } from './stats.js';

const port = Number(process.argv[2]);
const samples = Number(process.argv[3] ?? 500);
const host = process.argv[4] ?? 'bench.localhost';
const timeLimitMs = Number(process.argv[5] ?? 20_000);
const gapMs = Math.max(0, Math.min(10_000, Number(process.argv[6] ?? 0) || 0));
// ADDR (default 127.0.0.1): where to connect; the relay mode also measures a node's own address.
const addr = process.argv[7] ?? '127.0.0.1';
// MODE `keep`: every sample is a request on ONE connection opened beforehand,
// timed from the write to the first response byte (what a stream over an
// already-open connection costs: the floor for multiplexing).
const keep = process.argv[8] === 'keep';
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
if (!Number.isInteger(port) || !Number.isInteger(samples) || samples < 1) {
  process.stderr.write('usage: ttfb-client PORT SAMPLES HOST TIME_LIMIT_MS\n');
  process.exit(2);
}
const request = Buffer.from(`GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);

function once(): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const s = net.connect({ host: addr, port, noDelay: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('timeout'));
    }, 2000);
    s.once('connect', () => s.write(request));
    s.once('data', () => {
      const us = Number(process.hrtime.bigint() - t0) / 1000;
      clearTimeout(timer);
      s.destroy();
      resolve(us);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.once('close', () => {
      clearTimeout(timer);
      reject(new Error('closed before the first byte'));
    });
  });
}

let kept: net.Socket | undefined;
let onFirst: ((us: number) => void) | undefined;
let t0k = 0n;
let pending = 0;
async function openKept(): Promise<void> {
  const keepReq = Buffer.from(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  kept = net.connect({ host: addr, port, noDelay: true });
  await new Promise<void>((resolve, reject) => { kept!.once('connect', () => resolve()); kept!.once('error', reject); });
  let buf = '';
  kept.on('data', (c: Buffer) => {
    if (pending === 0) return;
    if (buf === '' && onFirst !== undefined) { const f = onFirst; onFirst = undefined; f(Number(process.hrtime.bigint() - t0k) / 1000); }
    buf += c.toString('latin1');
    const h = buf.indexOf('\r\n\r\n');
    if (h < 0) return;
    const m = /content-length:\s*(\d+)/i.exec(buf.slice(0, h));
    const need = h + 4 + Number(m?.[1] ?? 0);
    if (buf.length >= need) { buf = buf.slice(need); pending = 0; done?.(); }
  });
  (globalThis as { keepReq?: Buffer }).keepReq = keepReq;
}
let done: (() => void) | undefined;
function onceKept(): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timeout')), 2000);
    let first = 0;
    onFirst = (us) => { first = us; };
    done = () => { clearTimeout(timer); done = undefined; resolve(first); };
    pending = 1;
    t0k = process.hrtime.bigint();
    kept!.write((globalThis as { keepReq?: Buffer }).keepReq as Buffer);
  });
}
if (keep) await openKept();
const sample = keep ? onceKept : once;
const times: number[] = [];
let errors = 0;
const deadline = Date.now() + timeLimitMs;
// a few warm-up connections so the JIT of this client is not measured
for (let i = 0; i < Math.min(20, samples) && Date.now() < deadline; i++) {
  await sample().catch(() => undefined);
  if (gapMs > 0) await pause(gapMs);
}
for (let i = 0; i < samples && Date.now() < deadline; i++) {
  try {
    times.push(await sample());
  } catch {
    errors++;
    if (errors > samples / 10) break;
  }
  if (gapMs > 0) await pause(gapMs);
}
times.sort((a, b) => a - b);
process.stdout.write(
  `${JSON.stringify({
    samples: times.length,
    errors,
    p50: percentileSorted(times, 50),
    p90: percentileSorted(times, 90),
    p99: percentileSorted(times, 99),
    max: times.at(-1) ?? null,
  })}\n`,
);
kept?.destroy();
