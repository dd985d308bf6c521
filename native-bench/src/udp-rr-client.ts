// UDP request/response load (issue #16): FLOWS client sockets, each with one
// 64-byte datagram in flight (send, wait for the echo, send again) for
// DURATION_MS. A datagram not answered within 200 ms counts as lost and is
// sent again. Prints one JSON line: rr/s, p50/p99 round trip in µs, losses.
// Usage: node udp-rr-client.js PORT FLOWS DURATION_MS [HOST (default 127.0.0.1)]
import { createSocket, type Socket } from 'node:dgram';

const [port, flows, durationMs] = process.argv.slice(2, 5).map(Number) as [number, number, number];
const host = process.argv[5] ?? '127.0.0.1';
if (![port, flows, durationMs].every((n) => Number.isInteger(n) && n > 0)) {
  process.stderr.write('usage: udp-rr-client PORT FLOWS DURATION_MS\n');
  process.exit(2);
}
const payload = Buffer.alloc(64, 0x61);
const samples: number[] = [];
let done = 0;
let lost = 0;
let stopAt = 0;
const warmupMs = Math.min(1000, durationMs / 5);
let measureFrom = 0;
const socks: Socket[] = [];

function flow(): Promise<void> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    socks.push(s);
    let sentAt = 0n;
    let timer: NodeJS.Timeout | undefined;
    const send = (): void => {
      if (Date.now() >= stopAt) { clearTimeout(timer); resolve(); return; }
      sentAt = process.hrtime.bigint();
      s.send(payload);
      clearTimeout(timer);
      timer = setTimeout(() => { lost++; send(); }, 200);
    };
    s.on('message', () => {
      const now = Date.now();
      if (now >= measureFrom) {
        samples.push(Number(process.hrtime.bigint() - sentAt) / 1000);
        done++;
      }
      send();
    });
    s.on('error', () => {});
    s.connect(port, host, send);
  });
}

const t0 = Date.now();
measureFrom = t0 + warmupMs;
stopAt = t0 + durationMs;
await Promise.all(Array.from({ length: flows }, flow));
const secs = (stopAt - measureFrom) / 1000;
samples.sort((a, b) => a - b);
const pct = (p: number): number => samples.length === 0 ? Number.NaN : samples[Math.min(samples.length - 1, Math.floor(p * samples.length))]!;
process.stdout.write(JSON.stringify({ rr: done / secs, p50us: pct(0.5), p99us: pct(0.99), lost, samples: samples.length }) + '\n');
for (const s of socks) s.close();
