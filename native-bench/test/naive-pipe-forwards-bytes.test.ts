import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { freePort, start, stop, waitForOutput } from '../src/proc.js';

const src = join(dirname(fileURLToPath(import.meta.url)), '../src');

t.test('the naive pipe contender carries 8 MiB both ways, byte for byte, across a half-close', async (t) => {
  // upstream: echo
  const upstream = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => upstream.close(() => r())));
  const up = (upstream.address() as net.AddressInfo).port;
  const port = await freePort();
  const p = start('naive-pipe', process.execPath, [join(src, 'naive-pipe.js'), String(port), String(up)]);
  t.teardown(() => stop(p));
  await waitForOutput(p, new RegExp(`^listening 127\\.0\\.0\\.1:${port}$`, 'm'), 5000);

  const payload = randomBytes(8 * 1024 * 1024);
  const got = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    const c = net.connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error('timeout'));
    }, 20_000);
    c.on('data', (d: Buffer) => chunks.push(d));
    c.on('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    c.on('error', reject);
    c.end(payload);
  });
  t.equal(got.length, payload.length);
  t.equal(createHash('sha256').update(got).digest('hex'), createHash('sha256').update(payload).digest('hex'));
});

t.test('usage errors exit 2 without a stack trace', async (t) => {
  const p = start('naive-pipe', process.execPath, [join(src, 'naive-pipe.js'), 'x']);
  t.teardown(() => stop(p));
  const { code } = await p.exited;
  t.equal(code, 2);
  t.match(p.stderr, /^usage: naive-pipe/);
});
