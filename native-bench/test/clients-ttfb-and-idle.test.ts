import net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseTtfb } from '../src/parse.js';
import { run, start, stop, waitForOutput } from '../src/proc.js';

const src = join(dirname(fileURLToPath(import.meta.url)), '../src');

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

t.test('the TTFB client times one fresh connection per sample', async (t) => {
  let accepted = 0;
  const seenHosts = new Set<string>();
  const server = net.createServer((s) => {
    accepted++;
    s.once('data', (d: Buffer) => {
      const m = d.toString('latin1').match(/\r\nHost: ([^\r]+)\r\n/);
      if (m?.[1] !== undefined) seenHosts.add(m[1]);
      s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
    });
    s.on('error', () => undefined);
  });
  const port = await listen(server);
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const r = await run('ttfb', process.execPath, [join(src, 'ttfb-client.js'), String(port), '50', 'bench.localhost', '10000'], { timeoutMs: 20_000 });
  const m = parseTtfb(r.stdout);
  t.equal(m['samples'], 50);
  t.equal(m['errors'], 0);
  t.ok(m['p50']! > 0 && m['p50']! <= m['p99']!);
  t.ok(accepted >= 50, 'one connection per sample (plus warm-up)');
  t.same([...seenHosts], ['bench.localhost']);
});

t.test('the idle client holds N echoed connections until stdin closes', async (t) => {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  const port = await listen(server);
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const c = start('idle', process.execPath, [join(src, 'idle-client.js'), String(port), '300', '50', '30000'], { stdinPipe: true });
  t.teardown(() => stop(c));
  const m = await waitForOutput(c, /^ready (\d+) (\d+)$/m, 20_000);
  t.equal(m[1], '300');
  t.equal(m[2], '0');
  t.equal(sockets.size, 300, 'all held open');
  c.child.stdin?.end();
  const { code } = await c.exited;
  t.equal(code, 0);
  for (let i = 0; i < 100 && sockets.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(sockets.size, 0, 'all closed once the harness lets go');
});
