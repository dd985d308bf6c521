import t from 'tap';
import { median, percentileSorted, rng, roundRatios, shuffle, summarize } from '../src/stats.js';

t.test('median of odd, even, empty and non-finite input', async (t) => {
  t.equal(median([3, 1, 2]), 2);
  t.equal(median([4, 1, 3, 2]), 2.5);
  t.ok(Number.isNaN(median([])));
  t.equal(median([Number.NaN, 5, Infinity, 1]), 3);
});

t.test('nearest-rank percentiles', async (t) => {
  const v = Array.from({ length: 1000 }, (_, i) => i + 1);
  t.equal(percentileSorted(v, 50), 500);
  t.equal(percentileSorted(v, 99), 990);
  t.equal(percentileSorted(v, 99.9), 999);
  t.equal(percentileSorted(v, 100), 1000);
  t.equal(percentileSorted([7], 99.9), 7);
  t.ok(Number.isNaN(percentileSorted([], 50)));
});

t.test('summarize gives median, min, max and count', async (t) => {
  t.same(summarize([5, 1, 9]), { median: 5, min: 1, max: 9, n: 3 });
  t.equal(summarize([]).n, 0);
});

t.test('ratios are taken within a round and skip rounds without a reference', async (t) => {
  const value = new Map([[1, 10], [2, 30], [3, 8]]);
  const ref = new Map([[1, 20], [2, 60]]);
  t.same(roundRatios(value, ref), [0.5, 0.5]);
  t.same(roundRatios(value, new Map([[1, 0]])), [], 'a zero reference gives no ratio');
});

t.test('the shuffled order is reproducible from its seed and keeps every item', async (t) => {
  const items = ['a', 'b', 'c', 'd', 'e', 'f'];
  const a = shuffle(items, rng(42));
  const b = shuffle(items, rng(42));
  t.same(a, b);
  t.same([...a].sort(), items);
  t.not(shuffle(items, rng(1)).join(), shuffle(items, rng(2)).join(), 'different seeds, different orders');
});
