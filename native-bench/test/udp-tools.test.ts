// The UDP workload's own tools: the echo backend answers, and the
// request/response client reports round trips from real datagrams.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { freePort, run, start, stop, waitForOutput } from '../src/proc.js';

const src = join(dirname(fileURLToPath(import.meta.url)), '../src');

t.test('udp-rr-client against udp-echo: round trips, percentiles, no loss', async (t) => {
  const port = await freePort();
  const echo = start('udp echo', process.execPath, [join(src, 'udp-echo.js'), String(port)]);
  t.teardown(() => stop(echo, 1000));
  await waitForOutput(echo, /listening 127\.0\.0\.1:\d+\/udp/, 10_000);
  const r = await run('udp-rr', process.execPath, [join(src, 'udp-rr-client.js'), String(port), '4', '1500'], { timeoutMs: 20_000 });
  t.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { rr: number; p50us: number; p99us: number; lost: number; samples: number };
  t.ok(j.samples > 10, `samples ${j.samples}`);
  t.ok(j.rr > 0 && Number.isFinite(j.rr), `rr ${j.rr}`);
  t.ok(j.p50us > 0 && j.p99us >= j.p50us, `p50 ${j.p50us} p99 ${j.p99us}`);
  t.equal(j.lost, 0);
});

t.test('udp-rr-client refuses bad arguments', async (t) => {
  const r = await run('udp-rr', process.execPath, [join(src, 'udp-rr-client.js'), 'x'], { timeoutMs: 10_000 });
  t.equal(r.code, 2);
});
