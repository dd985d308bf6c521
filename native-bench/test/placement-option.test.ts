import t from 'tap';
import { parseOptions, UsageError } from '../src/options.js';

t.test('--placement defaults to pinned and takes pinned or shared', async (t) => {
  t.equal(parseOptions([], '/d').placement, 'pinned', 'today\'s behaviour by default');
  t.equal(parseOptions(['--quick'], '/d').placement, 'pinned');
  t.equal(parseOptions(['--placement', 'shared'], '/d').placement, 'shared');
  t.equal(parseOptions(['--placement', 'pinned'], '/d').placement, 'pinned');
  const q = parseOptions(['--quick', '--placement', 'shared'], '/d');
  t.equal(q.mode, 'quick', 'a placement is not a mode: a quick run stays quick');
  t.equal(q.durationS, 1);
  const c = parseOptions(['--placement', 'shared', '--rounds', '3', '--duration', '3', '--contenders', 'kt-l4,docker-proxy', '--workloads', 'wrk,connclose'], '/d');
  t.equal(c.placement, 'shared', 'order-independent among the other options');
  t.same(c.contenders, ['direct', 'kt-l4', 'docker-proxy']);
  t.same(c.workloads, ['wrk', 'connclose']);
});

t.test('a missing or unknown placement is a one-line usage error', async (t) => {
  for (const argv of [['--placement'], ['--placement', 'free'], ['--placement', 'SHARED'], ['--placement', '--quick']]) {
    try {
      parseOptions(argv, '/d');
      t.fail(`${argv.join(' ')} should throw`);
    } catch (err) {
      t.ok(err instanceof UsageError, `${argv.join(' ')}: a UsageError`);
      t.match((err as Error).message, /^--placement needs pinned or shared, got "[^"\n]*"$/);
    }
  }
});
