// The native lane's event ring (split from the lane in issue 15): records
// for JS (connect failures and successes after a failure, route outcomes, and
// with the access log on, close records and routed names) go into one buffer
// shared by every worker and handed over whole by one threadsafe call per
// batch, at most one batch per KT_FLUSH_MS.

#include "kt_lane.h"

// Wake JS for the records queued; if that cannot be queued, the next emit or
// tick retries. Called with rmu held, in the same critical section that saw
// `closed` clear and decided to post: laneClose sets `closed` under rmu
// before it releases the function, so no call can come after the release (a
// call made after unlocking could: the function freed under the worker). The
// splice engine gets the same guarantee by joining its worker before it
// releases. The call does not block (nonblocking, unbounded queue) and never
// calls back into the lane, so holding rmu across it cannot deadlock: the JS
// thread takes rmu only in call_js, outside the function's own lock.
static void post_locked (lane_t *ln) {
  KT_POST_DELAY();
#ifdef KT_TEST_HOOKS
  if (atomic_load(&ln->released)) { KT_PROBE_ADD(KT_PROBE_TSFN_AFTER_RELEASE, 1); return; }
#endif
  if (napi_call_threadsafe_function(ln->tsfn, NULL, napi_tsfn_nonblocking) != napi_ok) ln->posted = 0;
}

// n records that belong together (a close record and the name records before
// it) go in under one lock, so no other worker's record lands between them.
int ring_emit_n (engine_t *e, lane_t *ln, const double *rec, size_t n) {
  pthread_mutex_lock(&ln->rmu);
  if (ln->closed) { pthread_mutex_unlock(&ln->rmu); return -1; }
  while (ln->len + n > ln->cap) {
    size_t ncap = ln->cap == 0 ? 256 : ln->cap * 2;
    double *nr = ncap <= KT_RING_MAX && !KT_FAIL(KT_SITE_RING) ? realloc(ln->ring, ncap * KT_REC * sizeof(double)) : NULL;
    if (nr == NULL) {
      pthread_mutex_unlock(&ln->rmu);
      atomic_fetch_add(&ln->dropped, n);
      return -1;
    }
    ln->ring = nr;
    ln->cap = ncap;
  }
  memcpy(ln->ring + ln->len * KT_REC, rec, n * KT_REC * sizeof(double));
  ln->len += n;
  int post = 0;
  if (!ln->posted) {
    // Measured: a wakeup per few records cost the JS thread more than the
    // records themselves. Batch: post now if the last batch is old enough,
    // else a flush timer posts once the interval is over.
    int64_t now = kt_mono_ms();
    if (now - ln->last_post_ms >= KT_FLUSH_MS) {
      post = 1;
      ln->posted = 1;
      ln->last_post_ms = now;
      atomic_store(&ln->flush_at, 0);
    } else if (atomic_load(&ln->flush_at) == 0) {
      atomic_store(&ln->flush_at, ln->last_post_ms + KT_FLUSH_MS);
    }
  }
  if (post) post_locked(ln);
  int64_t at = atomic_load(&ln->flush_at);
  pthread_mutex_unlock(&ln->rmu);
  // This worker's flush timer covers the batch waiting, whoever set flush_at.
  if (at != 0) kt_timer_arm_before(&e->timers, &((lane_engine_t *)e->lane)->flush_t, at);
  return 0;
}

// Post the batch that waited for the flush interval, once it is over.
static void flush_due (lane_t *ln, int64_t now) {
  int64_t at = atomic_load(&ln->flush_at);
  if (at == 0 || now < at) return;
  int post = 0;
  pthread_mutex_lock(&ln->rmu);
  if (!ln->closed && !ln->posted && ln->len > 0 && atomic_load(&ln->flush_at) != 0) {
    post = 1;
    ln->posted = 1;
    ln->last_post_ms = now;
  }
  atomic_store(&ln->flush_at, 0);
  if (post) post_locked(ln);
  pthread_mutex_unlock(&ln->rmu);
}

// The flush timer. Another worker may have posted the batch already, or a new
// one may wait for a later time: then the timer is armed again for that.
void ring_flush_timer (engine_t *e, kt_timer_t *t) {
  lane_t *ln = ((lane_engine_t *)e->lane)->lane;
  flush_due(ln, e->now_ms);
  int64_t at = atomic_load(&ln->flush_at);
  if (at != 0) kt_timer_arm_before(&e->timers, t, at > e->now_ms ? at : e->now_ms + 1);
}

// Records that will never reach JS: the descriptors of relay hand-backs
// among them would be owned by nobody, so they are reset and closed here.
static void drop_records (double *ring, size_t len) {
  for (size_t i = 0; i < len; i++) {
    const double *r = ring + i * KT_REC;
    if (r[F_TYPE] == REC_RELAY && r[F_BACKEND] == 0 && r[F_ATTEMPTS] >= 0) {
      int fd = (int)r[F_ATTEMPTS];
      kt_reset_fd(fd);
      close(fd);
    }
  }
  free(ring);
}

void ring_deliver (napi_env env, napi_value cb, void *ctx, void *data) {
  (void)data;
  lane_t *ln = ctx;
  pthread_mutex_lock(&ln->rmu);
  double *ring = ln->ring;
  size_t len = ln->len;
  ln->ring = NULL;
  ln->len = ln->cap = 0;
  ln->posted = 0;
  pthread_mutex_unlock(&ln->rmu);
  if (env == NULL || cb == NULL || len == 0) { drop_records(ring, len); return; }
  napi_value ab, arr, undef;
  size_t bytes = len * KT_REC * sizeof(double);
  void *mem;
  if (napi_create_arraybuffer(env, bytes, &mem, &ab) != napi_ok) { drop_records(ring, len); return; }
  memcpy(mem, ring, bytes);
  free(ring);
  napi_create_typedarray(env, napi_float64_array, len * KT_REC, ab, 0, &arr);
  napi_get_undefined(env, &undef);
  if (napi_call_function(env, undef, cb, 1, &arr, NULL) == napi_pending_exception) {
    napi_value exc;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
  }
}

// Close the ring: laneClose and the environment's cleanup hook. Under rmu, so
// a worker that decided to post did so before this returns (post_locked).
int ring_close (lane_t *ln) {
  pthread_mutex_lock(&ln->rmu);
  int was = ln->closed;
  ln->closed = 1;
  // A batch not posted yet never will be (a posted one is ring_deliver's).
  double *ring = NULL;
  size_t len = 0;
  if (!ln->posted) {
    ring = ln->ring;
    len = ln->len;
    ln->ring = NULL;
    ln->len = ln->cap = 0;
  }
  pthread_mutex_unlock(&ln->rmu);
  drop_records(ring, len);
  return was;
}
