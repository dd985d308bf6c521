// Shared between kt_splice.c (the splice engine) and the native accept+connect
// lane (kt_lane.c, kt_route.c, kt_ring.c, kt_lane_napi.c; issue #8 target 3,
// split in issue 15): both run on the same worker thread
// and epoll set, so a connection accepted and connected natively is spliced
// without crossing threads.
#ifndef KT_ENGINE_H
#define KT_ENGINE_H
#define _GNU_SOURCE
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kt_test.h"
#include "kt_vocab.h"  // outcomes, causes, records, stats: generated from src/dataplane/vocab.json

#define KT_RW_BUF_SIZE (64 * 1024)   // anchors.md: about 64 KiB buffered per direction
#define KT_SPLICE_REQ (1 << 20)      // ask for up to this much per splice; the pipe's capacity bounds it
#define KT_SMALL_SPLICE (8 * 1024)   // a splice that moved less than this ends bulk mode
// Empty pipes and buffers kept for reuse. Pipes are charged to the user's
// pipe-user-pages-soft (16384 pages) at full capacity even when empty: 64 pipes
// of 256 KiB take a quarter of it. Creating one costs two syscalls anyway.
#define KT_POOL_MAX 64
#define KT_BUDGET 16                 // transfers per direction per turn, so one bulk pair cannot starve the rest
#define KT_MAX_EVENTS 256
#define KT_BUCKETS 16384             // id -> pair hash, only used by abort
#define KT_SCAN_MIN_MS 50            // idle scans are O(pairs): at most one per this many ms

enum { MODE_SPLICE = 0, MODE_RW = 1 };
enum { CMD_ADD = 0, CMD_ABORT, CMD_LANE };

typedef struct pair pair_t;
typedef struct engine engine_t;

// Every object registered in an epoll set starts with a pointer to its ops
// table (kt_obj_t): the worker loop calls ops->on_event for each event and
// knows nothing else about the object. The tables:
//   kt_splice.c  kt_wake_ops (the command eventfd), kt_side_ops (a side being spliced)
//   kt_lane.c    listener (a lane listener: accept), connect (an upstream
//                connecting), hold (a client waiting for its upstream)
//   kt_route.c   peek (a routed listener's client sending its first flight)
// A side changes table when its pair changes phase (peek -> hold -> spliced;
// connect -> spliced): the phase is the table, not a flag the loop tests.
typedef struct kt_ops {
  const char *name;  // what the object is (debugging, tests)
  void (*on_event) (engine_t *e, void *obj, uint32_t events);
} kt_ops_t;

typedef struct kt_obj {
  const kt_ops_t *ops;  // first member of every epoll-registered object
} kt_obj_t;

// Registered callbacks for deadlines (issue 15): an engine keeps its armed
// timers in one list in due order, its loop waits in epoll_wait until the
// earliest, then runs every timer due. Who arms what:
//   kt_splice.c  idle (the idle and half-close scan over live pairs)
//   kt_lane.c    connect (connect timeouts), flush (the event ring's batch
//                interval), backoff (a listener's EMFILE pause, one per engine)
//   kt_route.c   peek (peek deadlines)
// A timer is disarmed before its callback runs; the callback re-arms it if it
// still has work. Callbacks run on the engine's worker only.
typedef struct kt_timer kt_timer_t;
typedef void (*kt_timer_fn) (engine_t *e, kt_timer_t *t);
struct kt_timer {
  int64_t due;        // CLOCK_MONOTONIC ms, while armed
  kt_timer_fn fn;
  void *arg;          // the callback's own
  const char *name;
  kt_timer_t *prev, *next;
  uint8_t armed;
};

typedef struct kt_timers {
  kt_timer_t *head;   // earliest first; equal due times in arming order
  int n;
} kt_timers_t;

void kt_timer_init (kt_timer_t *t, const char *name, kt_timer_fn fn, void *arg);
// Arm (or move) t to fire at `due`.
void kt_timer_arm (kt_timers_t *ts, kt_timer_t *t, int64_t due);
// Arm t to fire at `due` unless it is already armed at or before it (for
// deadlines that a callback re-checks: firing early is harmless, late is not).
void kt_timer_arm_before (kt_timers_t *ts, kt_timer_t *t, int64_t due);
void kt_timer_cancel (kt_timers_t *ts, kt_timer_t *t);
// The earliest due time, INT64_MAX when none is armed.
static inline int64_t kt_timers_next (const kt_timers_t *ts) { return ts->head != NULL ? ts->head->due : INT64_MAX; }
// Run the timers due at `now`, earliest first; at most as many as were armed
// when it started, so a callback re-arming at or before `now` runs next turn,
// not in a loop here. Returns how many ran.
int kt_timers_run (kt_timers_t *ts, engine_t *e, int64_t now);
#ifdef KT_TEST_HOOKS
void kt_timer_test_init (napi_env env, napi_value exports);  // ktTimerScript (kt_timer.c)
#endif

typedef struct side {
  const kt_ops_t *ops;  // kt_obj_t: first; kt_side_ops once spliced, the lane's while it peeks or connects
  pair_t *p;
  int fd;            // our F_DUPFD_CLOEXEC duplicate, never JS's fd
  uint8_t idx;       // 0 = a, 1 = b
  uint8_t readable;  // edge-triggered: cleared by EAGAIN (or a short read), set by events
  uint8_t writable;
  uint8_t rdhup;     // FIN/RST/error signalled: read until EAGAIN or EOF, no short-read shortcut
} side_t;

// One direction: src side idx -> the other side. The bytes in flight sit in a
// carrier: a pipe (pr/pw) or a buffer (buf), held only while non-empty.
typedef struct dir {
  int pr, pw;
  char *buf;
  size_t held;       // bytes read from src not yet written to dst: the pipe's exact fill
  size_t off;        // rw: first unwritten byte in buf
  char *head;        // bytes JS had already read (peeked or buffered), written first
  size_t head_len, head_off;
  uint64_t bytes;    // written to dst
  uint8_t eof;       // src returned 0
  uint8_t shut;      // shutdown(dst, SHUT_WR) done: this direction is complete
  uint8_t bulk;      // splice mode: the last read filled a buffer, so splice the next ones
} dir_t;

// A pair the lane accepted and connected itself (kt_lane.c); NULL lane for pairs JS handed over.
typedef struct lane_conn {
  void *listener;        // lane_listener_t, referenced while the pair lives
  int32_t backend;       // backend id (JS-assigned: slot + 65536 x generation), -1 before the first pick
  int32_t tried[4];
  uint8_t attempts;
  uint8_t connecting;    // the upstream connect is in flight: only s[1] is registered
  uint8_t failed;        // every attempt failed: the outcome is connect_failed
  uint8_t acquired;      // counted in its backend's active count
  uint8_t holds;         // holds a reference on its backend's slot (backend_refs)
  uint8_t peeking;       // routed listener: reading the first flight (only s[0] is registered)
  uint8_t route;         // route outcome (R_* in kt_vocab.h), 0xff before a decision / on L4 listeners
  uint8_t outcome;       // a connection outcome decided before the splice (O_* + 1), 0 if none
  int32_t group;         // the upstream group picked from (0: the listener's default on L4)
  int64_t start_ms, deadline_ms;
  int64_t connect_ns;    // monotonic time of the current connect(), for the latency histogram
  pair_t *cprev, *cnext; // the engine's connecting or peeking list (deadline order)
  void *peek;            // routed listener, while peeking: parser state and the bytes read
  char *name;            // the routed name, kept for the access log only while it is on
  void *relay;           // a relay listener's connection (relay_conn_t, kt_relay.c): its header phase and BIND
  void *mux;             // a relay connection that became a multiplexed carrier (mux_carrier_t, kt_mux.c)
  uint8_t handback;      // handed back to JS (kt_relay.c): its descriptor is JS's now, and nothing is counted here
  int conn_err;          // the last failed connect's errno or LE_* code (the relay's dial outcome)
  struct sockaddr_storage client;
} lane_conn_t;

struct pair {
  uint64_t id;
  lane_conn_t *lane;
  struct completion *done;  // a pair JS handed over: its completion, allocated up front so the end can always be reported
  uint8_t registered;  // bit i: side i already in the epoll set
  side_t s[2];
  dir_t d[2];        // d[0] = a -> b, d[1] = b -> a
  int64_t last_ms;
  uint32_t idle_ms;
  uint32_t half_ms;  // once one direction is done, quiet this long ends the pair (0: off)
  uint8_t dead, in_ready, in_hash;
  pair_t *hnext;
  pair_t *prev, *next;  // live list, for the idle scan and shutdown
  pair_t *rnext;        // ready list: pairs whose budget ran out with work left
  pair_t *gnext;        // graveyard: freed after the epoll batch
};

typedef struct cmd {
  int type;
  int sub;           // CMD_LANE: which lane command
  void *arg;
  uint64_t id;
  pair_t *p;
  struct cmd *next;
} cmd_t;

struct completion {
  double id, a2b, b2a;
  int cause;
  int err;
};
typedef struct completion completion_t;

struct engine {
  int mode;
  int pipe_size;
  int ep, evfd;
  pthread_t thread;
  int thread_started, joined;
  atomic_int stopping;
  pthread_mutex_t mu;
  cmd_t *q_head, *q_tail;
  napi_threadsafe_function tsfn;
  int tsfn_released;
  int hook_added;
  napi_env env;
  int index;         // position among the lane's engines
  void *lane;        // per-engine lane state (lane_engine_t, kt_lane.h), worker-owned
  void *mux;         // the relay's multiplexed carriers on this worker (kt_mux.c), from the first one on; worker-owned
  int lane_more;     // the lane has work left for the next turn (a carrier's read budget ran out): poll without waiting
  atomic_int pairs;
  atomic_int pipes_pooled;
  atomic_int pipe_fallbacks;  // chunks carried by a buffer because no pipe could be created
  // worker-owned from here on
  pair_t *buckets[KT_BUCKETS];
  pair_t live;
  pair_t *ready;
  pair_t *grave;
  int pool_r[KT_POOL_MAX], pool_w[KT_POOL_MAX];
  int pool_n;
  char *bufs[KT_POOL_MAX];
  int bufs_n;
  int64_t now_ms;
  kt_obj_t wake;      // the eventfd's registration (kt_wake_ops)
  int commands;       // the eventfd fired this turn: run the command queue after the batch
  kt_timers_t timers;
  kt_timer_t idle;    // the idle scan, at the earliest idle or half-close deadline (at most every KT_SCAN_MIN_MS)
};

// ---------------------------------------------------------------- shared with the lane (kt_lane.h)

engine_t *kt_get_engine (napi_env env, napi_value v);
void kt_enqueue (engine_t *e, cmd_t *c);
// Start splicing a pair whose sides are connected; sides already in the epoll
// set (pair->registered bit i) are not added again. Both sides get kt_side_ops.
void kt_start_pair (engine_t *e, pair_t *p);
void kt_finish (engine_t *e, pair_t *p, int cause, int err, int reset);
void kt_reset_fd (int fd);
// A non-blocking connect() that said EINPROGRESS may be established already:
// on a local bridge or loopback the SYN-ACK is handled before connect()
// returns (as the socket is released). 1 when it is: the caller goes on as
// for a connect() that returned 0, without waiting for epoll to say so.
int kt_established_now (int fd);
int64_t kt_mono_ms (void);
const char *kt_errno_name (int err);

// What an epoll event says a side can do now (edge-triggered: remembered until tried).
static inline void kt_note_events (side_t *s, uint32_t ev) {
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) s->readable = 1;
  if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) s->rdhup = 1;
  if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) s->writable = 1;
}

// Hooks the engine calls into the lane (events and deadlines go through ops tables and timers instead).
void kt_lane_command (engine_t *e, cmd_t *c);
void kt_lane_finished (engine_t *e, pair_t *p, int cause, int err);
void kt_lane_stop (engine_t *e);
// After each epoll batch (its events, commands and timers), before freed pairs are released.
void kt_lane_after_batch (engine_t *e);
void kt_lane_init (napi_env env, napi_value exports);

#endif
