// Fault injection and probes for the native tests, compiled in only with
// -DKT_TEST_HOOKS (scripts/native-variant.mjs builds the `test`, `asan` and
// `tsan` variants with it; the shipped addon never has it). JS reaches them
// through `ktTest(op, arg, value)` (test/native/fixtures/variant.ts).
#ifndef KT_TEST_H
#define KT_TEST_H

#include <stdatomic.h>
#include <stdlib.h>

// Allocation sites a test can make fail.
enum { KT_SITE_COMPLETION = 0, KT_SITE_LANE = 1, KT_SITE_RING = 2, KT_SITE_COUNT };
// Counters a test can read.
enum {
  KT_PROBE_TSFN_AFTER_RELEASE = 0,  // a lane threadsafe-function call decided before laneClose, made after its release
  KT_PROBE_LIVE_LANES = 1,          // lane_t allocated and not freed
  KT_PROBE_IN_POST_DELAY = 2,       // workers sitting in the post delay now
  KT_PROBE_POST_DELAYS = 3,         // post delays entered so far
  KT_PROBE_CONNECTED_NOW = 4,       // non-blocking connects found established on return (kt_established_now)
  KT_PROBE_COUNT
};

#ifdef KT_TEST_HOOKS
extern atomic_int kt_test_fail_at[KT_SITE_COUNT];  // >0: the nth allocation at the site from now fails
extern atomic_int kt_test_post_delay_ms;            // a worker waits this long just before posting a lane batch
extern atomic_long kt_test_probe[KT_PROBE_COUNT];
void *kt_test_alloc (int site, size_t n);
int kt_test_fail (int site);
void kt_test_post_delay (void);
#define KT_ALLOC(site, n) kt_test_alloc((site), (n))
#define KT_FAIL(site) kt_test_fail(site)
#define KT_POST_DELAY() kt_test_post_delay()
#define KT_PROBE_ADD(i, d) atomic_fetch_add(&kt_test_probe[(i)], (d))
#else
#define KT_ALLOC(site, n) malloc(n)
#define KT_FAIL(site) 0
#define KT_POST_DELAY() ((void)0)
#define KT_PROBE_ADD(i, d) ((void)0)
#endif

#endif
