// An engine's registered deadlines (issue 15): a list of armed timers in due
// order, owned by one worker thread (no locking). An engine holds a handful
// of them (the idle scan, the lane's connect and peek deadlines and ring
// flush, and a listener's EMFILE pause while one lasts), so a sorted list
// beats a heap: arming scans a few entries, the earliest is the head.
//
// Most deadlines are re-checked by their callback (the connect and peek lists,
// the idle scan), so owners arm with kt_timer_arm_before and never cancel when
// an entry leaves early: the timer may fire early, find nothing due, and re-arm
// for what is left. It never fires late.
//
// test/native/timers.test.ts drives this file through the test variant's
// ktTimerScript (kt_lane_napi.c): ordering, re-arming, cancellation, the
// per-run bound.

#include "kt_engine.h"

void kt_timer_init (kt_timer_t *t, const char *name, kt_timer_fn fn, void *arg) {
  memset(t, 0, sizeof *t);
  t->name = name;
  t->fn = fn;
  t->arg = arg;
}

static void unlink_timer (kt_timers_t *ts, kt_timer_t *t) {
  if (t->prev != NULL) t->prev->next = t->next;
  else ts->head = t->next;
  if (t->next != NULL) t->next->prev = t->prev;
  t->prev = t->next = NULL;
  t->armed = 0;
  ts->n--;
}

void kt_timer_cancel (kt_timers_t *ts, kt_timer_t *t) {
  if (t->armed) unlink_timer(ts, t);
}

void kt_timer_arm (kt_timers_t *ts, kt_timer_t *t, int64_t due) {
  kt_timer_cancel(ts, t);
  // After every timer due at or before it: equal due times fire in arming order.
  kt_timer_t *after = NULL, *at = ts->head;
  while (at != NULL && at->due <= due) { after = at; at = at->next; }
  t->due = due;
  t->prev = after;
  t->next = at;
  if (at != NULL) at->prev = t;
  if (after != NULL) after->next = t;
  else ts->head = t;
  t->armed = 1;
  ts->n++;
}

void kt_timer_arm_before (kt_timers_t *ts, kt_timer_t *t, int64_t due) {
  if (t->armed && t->due <= due) return;
  kt_timer_arm(ts, t, due);
}

int kt_timers_run (kt_timers_t *ts, engine_t *e, int64_t now) {
  int budget = ts->n, ran = 0;
  while (budget-- > 0 && ts->head != NULL && ts->head->due <= now) {
    kt_timer_t *t = ts->head;
    unlink_timer(ts, t);
    t->fn(e, t);
    ran++;
  }
  return ran;
}

// ---------------------------------------------------------------- test hook (KT_TEST_HOOKS builds only)

#ifdef KT_TEST_HOOKS
#define KT_TT_N 16

typedef struct tt_ctx tt_ctx_t;
typedef struct tt_timer {
  kt_timer_t t;
  tt_ctx_t *ctx;
  int id;
  int64_t rearm;   // >= 0: when it fires, arm it again at now + rearm
  int cancel;      // >= 0: when it fires, cancel that timer
} tt_timer_t;

struct tt_ctx {
  kt_timers_t ts;
  tt_timer_t tt[KT_TT_N];
  int64_t now;
  double out[1024];
  int n_out;
};

static void tt_push (tt_ctx_t *c, double v) {
  if (c->n_out < (int)(sizeof c->out / sizeof c->out[0])) c->out[c->n_out++] = v;
}

static void tt_fire (engine_t *e, kt_timer_t *t) {
  (void)e;
  tt_timer_t *x = t->arg;
  tt_ctx_t *c = x->ctx;
  tt_push(c, x->id);
  if (x->rearm >= 0) kt_timer_arm(&c->ts, t, c->now + x->rearm);
  if (x->cancel >= 0) kt_timer_cancel(&c->ts, &c->tt[x->cancel].t);
}

// ktTimerScript(script: number[]) -> number[]: runs triplets [op, id, value]
// against a fresh timer list of KT_TT_N timers and returns what happened.
// op 0 arm(id, due = value), 1 arm_before(id, value), 2 cancel(id),
// 3 run(now = value): the ids fired in order then -1, 4 next(): the earliest
// due (-2: none) and the armed count, 5 id re-arms itself at now + value when
// it fires (-1: off), 6 id cancels timer `value` when it fires (-1: off).
static napi_value js_timer_script (napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t n = 0;
  bool is_arr = false;
  if (argc < 1 || napi_is_array(env, argv[0], &is_arr) != napi_ok || !is_arr) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "ktTimerScript(script)");
    return NULL;
  }
  napi_get_array_length(env, argv[0], &n);
  tt_ctx_t *c = calloc(1, sizeof *c);
  if (c == NULL) { napi_throw_error(env, "ENOMEM", "ktTimerScript"); return NULL; }
  for (int i = 0; i < KT_TT_N; i++) {
    c->tt[i].ctx = c;
    c->tt[i].id = i;
    c->tt[i].rearm = -1;
    c->tt[i].cancel = -1;
    kt_timer_init(&c->tt[i].t, "test", tt_fire, &c->tt[i]);
  }
  for (uint32_t k = 0; k + 3 <= n; k += 3) {
    double v[3];
    for (int j = 0; j < 3; j++) {
      napi_value x;
      napi_get_element(env, argv[0], k + (uint32_t)j, &x);
      if (napi_get_value_double(env, x, &v[j]) != napi_ok) v[j] = -1;
    }
    int op = (int)v[0], id = (int)v[1];
    int64_t val = (int64_t)v[2];
    if (op != 3 && op != 4 && (id < 0 || id >= KT_TT_N)) continue;
    kt_timer_t *t = op != 3 && op != 4 ? &c->tt[id].t : NULL;
    switch (op) {
      case 0: kt_timer_arm(&c->ts, t, val); break;
      case 1: kt_timer_arm_before(&c->ts, t, val); break;
      case 2: kt_timer_cancel(&c->ts, t); break;
      case 3: c->now = val; kt_timers_run(&c->ts, NULL, val); tt_push(c, -1); break;
      case 4: tt_push(c, kt_timers_next(&c->ts) == INT64_MAX ? -2 : (double)kt_timers_next(&c->ts)); tt_push(c, c->ts.n); break;
      case 5: c->tt[id].rearm = val; break;
      case 6: c->tt[id].cancel = val >= 0 && val < KT_TT_N ? (int)val : -1; break;
    }
  }
  napi_create_array_with_length(env, (size_t)c->n_out, &out);
  for (int i = 0; i < c->n_out; i++) {
    napi_value x;
    napi_create_double(env, c->out[i], &x);
    napi_set_element(env, out, (uint32_t)i, x);
  }
  free(c);
  return out;
}

void kt_timer_test_init (napi_env env, napi_value exports) {
  napi_property_descriptor p = { "ktTimerScript", NULL, js_timer_script, NULL, NULL, NULL, napi_enumerable, NULL };
  napi_define_properties(env, exports, 1, &p);
}
#endif
