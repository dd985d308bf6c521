// Watch bookmarks are a request (allowWatchBookmarks), not a promise: "servers
// may not implement bookmarks" (k8s.io/apimachinery ListOptions). A quiet
// cluster whose API server sends none must not see its watches torn down as
// stalled every silenceMs; the server-side timeout the watch asked for bounds
// the wait instead. (With bookmarks, control/silent-watch.test.ts shows the
// short limit still applies.)
import t from 'tap'
import { sleep, startHarness, waitFor } from '../control/fixtures/harness.js'

t.test('no bookmarks from the server: a quiet watch is not a stalled one', async (t) => {
  const h = await startHarness(t, { api: { bookmarkIntervalMs: 3_600_000 }, controller: { informers: { silenceMs: 200, watchTimeoutSeconds: [30, 30] } } })
  await waitFor(() => h.ctl.snapshot().informers.every((i) => i.watching || i.absent), 'every informer watching')
  // Five silence periods with nothing happening (bounded, negative check).
  await sleep(1000)
  const inf = h.ctl.snapshot().informers
  t.same(inf.filter((i) => i.stalls > 0).map((i) => i.resource), [], 'no watch torn down for silence')
  t.ok(inf.every((i) => i.watching || i.absent), 'still watching')
})
