import t from 'tap';
import { ALL_CONTENDERS } from '../src/contenders.js';
import { parseOptions, UsageError } from '../src/options.js';

t.test('quick and full defaults', async (t) => {
  const q = parseOptions(['--quick'], '/docs');
  t.equal(q.mode, 'quick');
  t.equal(q.rounds, 3);
  t.equal(q.durationS, 1);
  t.ok(q.contenders.includes('direct') && q.contenders.includes('docker-proxy') && q.contenders.includes('kt-l4'));
  const f = parseOptions([], '/docs');
  t.equal(f.mode, 'full');
  t.equal(f.durationS, 10);
  t.equal(f.idleConns, 5000);
  t.same(f.contenders, ALL_CONTENDERS.map((c) => c.info.id), 'full runs every contender');
  t.equal(f.docsDir, '/docs');
});

t.test('fewer than 3 rounds, unknown names and bad numbers are refused', async (t) => {
  t.throws(() => parseOptions(['--rounds', '2'], '/d'), /--rounds needs an integer from 3 to 50, got "2"/);
  t.throws(() => parseOptions(['--rounds', 'x'], '/d'), /--rounds needs an integer/);
  try {
    parseOptions(['--rounds', '1'], '/d');
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof UsageError, 'a UsageError, shown as a one-line message and the usage');
  }
  t.throws(() => parseOptions(['--contenders', 'envoy'], '/d'), /unknown contender/);
  t.throws(() => parseOptions(['--workloads', 'udp'], '/d'), /unknown workload/);
  t.throws(() => parseOptions(['--bogus'], '/d'), /unknown option/);
  t.throws(() => parseOptions(['--duration', '0'], '/d'), /--duration needs an integer from 1/);
});

t.test('a chosen set always keeps direct, since every ratio needs it', async (t) => {
  const o = parseOptions(['--contenders', 'kt-l4,haproxy', '--workloads', 'ttfb,idle', '--no-docs'], '/d');
  t.same(o.contenders, ['direct', 'kt-l4', 'haproxy']);
  t.same(o.workloads, ['idle', 'ttfb'], 'workloads keep their run order');
  t.equal(o.docsDir, undefined);
  t.equal(o.mode, 'custom');
});
