// Opens N connections, sends one small message on each and waits for its echo,
// then holds them all idle so the harness can read the proxy's memory.
// The message is a complete HTTP/1.1 request head, so a Host-routing proxy can
// route it; the echo backend sends it back unchanged.
// Usage: node idle-client.js PORT CONNS CONCURRENCY HOLD_LIMIT_MS
// Prints "ready OPENED FAILED" once every connection has its echo (or failed),
// then holds until stdin closes, SIGTERM, or HOLD_LIMIT_MS, and exits.
import net from 'node:net';

const port = Number(process.argv[2]);
const conns = Number(process.argv[3] ?? 5000);
const concurrency = Number(process.argv[4] ?? 200);
const holdLimitMs = Number(process.argv[5] ?? 120_000);
if (!Number.isInteger(port) || !Number.isInteger(conns) || conns < 1) {
  process.stderr.write('usage: idle-client PORT CONNS CONCURRENCY HOLD_LIMIT_MS\n');
  process.exit(2);
}
const message = Buffer.from('GET / HTTP/1.1\r\nHost: bench.localhost\r\n\r\n');
const open: net.Socket[] = [];
let failed = 0;

function openOne(): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let got = 0;
    const timer = setTimeout(() => fail(), 10_000);
    function fail(): void {
      clearTimeout(timer);
      s.destroy();
      failed++;
      resolve();
    }
    s.on('error', fail);
    s.once('connect', () => s.write(message));
    s.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= message.length) {
        clearTimeout(timer);
        s.removeAllListeners('data');
        s.removeListener('error', fail);
        s.on('error', () => undefined);
        open.push(s);
        resolve();
      }
    });
  });
}

let next = 0;
async function worker(): Promise<void> {
  while (next < conns) {
    next++;
    await openOne();
  }
}
const hardStop = setTimeout(() => finish(), holdLimitMs);
await Promise.all(Array.from({ length: Math.min(concurrency, conns) }, () => worker()));
process.stdout.write(`ready ${open.length} ${failed}\n`);

function finish(): void {
  clearTimeout(hardStop);
  for (const s of open) s.destroy();
  process.exit(0);
}
process.stdin.on('end', finish);
process.stdin.on('close', finish);
process.stdin.resume();
process.on('SIGTERM', finish);
process.on('SIGINT', finish);
