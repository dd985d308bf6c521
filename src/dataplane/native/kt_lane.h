// The native lane's shared declarations (issue #8 target 3, split in issue 15):
// kt_lane.c (accept, caps, pick, connect, the worker's commands and
// deadlines), kt_route.c (routed listeners: peek and route), kt_ring.c (the
// event ring to JS) and kt_lane_napi.c (the N-API bindings) include it.
// Nothing here is visible to kt_splice.c, which knows the lane only through
// kt_engine.h.
#ifndef KT_LANE_H
#define KT_LANE_H

#include "kt_engine.h"
#include "kt_peek.h"

#include <arpa/inet.h>

#define KT_LANE_MAX_ENGINES 64
// Backend ids are JS's: the low 16 bits a slot (native arrays are indexed by
// it), the rest a generation JS bumps when it reuses a slot, so a record
// still on its way about the slot's last backend is never taken for the next.
// JS reuses a slot only once no listener pushes its id and no pair holds it
// (laneBackendFree).
#define KT_LANE_MAX_BACKENDS 65536
#define KT_SLOT(id) ((uint32_t)(id) & (KT_LANE_MAX_BACKENDS - 1))
#define KT_ACCEPT_BATCH 64        // accepts per wakeup; level-triggered epoll reports the rest
#define KT_EMFILE_BACKOFF_MS 100  // out of fds: stop polling that listener this long, never spin
#define KT_RING_MAX 65536         // records held for JS at most; beyond, records are dropped and counted
#define KT_FLUSH_MS 10            // at most one batch to JS per this many ms (each costs a loop wakeup)
#define KT_LANE_MAX_GROUPS 4096   // upstream groups per listener (default + one per routed upstream)
#define KT_LANE_MAX_ROUTES 65536
#define KT_PEEK_FIRST_BUF 4096    // first peek buffer; most hellos and heads fit (post-quantum hellos ~1.7 KB)
#define KT_LANE_MAX_ACLS 65536    // source-range sets per listener (the listener's own + one per ranged route)
#define KT_LANE_MAX_CIDRS 65536   // CIDRs per set
#define KT_HIST_MAX 32            // connect-latency bucket bounds (upstream.ts CONNECT_BUCKETS has 13)
// Outcomes (O_*), route outcomes (R_*), records (REC_*, F_*), the stats
// layout (S_*) and the records' error codes come from kt_vocab.h, generated
// with fastlane.ts's from src/dataplane/vocab.json.
#define R_NONE 0xff  // no route decision (L4 listeners, or before the decision)
enum { L_ATTACH = 0, L_LISTEN, L_UNLISTEN, L_ABORT, L_ADOPT, L_QUIET };

typedef struct backend {
  int32_t id;
  socklen_t len;
  struct sockaddr_storage addr;
} backend_t;

typedef struct lane lane_t;

// A source range in IPv6 form: an IPv4 range a/n is held as ::ffff:a/(96+n)
// and an IPv4 client as ::ffff:a, which is exactly how Node's BlockList
// answers across families (an IPv4 rule admits the IPv4-mapped client, an
// IPv6 rule covering ::ffff:0:0/96 admits IPv4 clients, a plain IPv6 client
// never matches an IPv4 rule; checked against node:net BlockList in
// test/fastlane/source-ranges.test.ts). Host bits are cleared, as addSubnet does.
typedef struct cidr {
  uint8_t a[16];
  uint8_t bits;
} cidr_t;

// One allowlist (a Service's loadBalancerSourceRanges); n == 0 admits no one.
typedef struct acl {
  cidr_t *v;
  int n;
} acl_t;

// Connect latency of one backend (id), counted by the worker that connected:
// per-bucket counts (the last one past every bound) and the sum. No count of
// its own: JS takes the count as the sum of the buckets, so a read racing a
// worker never shows more in a bucket than in the count.
typedef struct conn_hist {
  atomic_uint_fast64_t b[KT_HIST_MAX + 1];
  atomic_uint_fast64_t sum_ns;
} conn_hist_t;

// One upstream's backends in rotation; a listener has one per upstream it can route to.
typedef struct group {
  backend_t *backends;
  int n;
  uint32_t cursor;
} group_t;

// A connection reading its first flight: parser state and every byte read so far.
typedef struct peek_conn {
  kt_peek_t st;
  uint8_t *buf;
  size_t len, cap;
  uint8_t eof;
} peek_conn_t;

// A relay listener's configuration (kt_relay.c), fixed once set: JS sets it
// before the listener starts accepting, and it lives as long as the listener.
// The nonce cache is shared by every worker, under its own mutex.
typedef struct relay_nonces {
  uint8_t (*k)[16];
  uint8_t *used;
  size_t cap, n;
} relay_nonces_t;

// The token as HMAC-SHA256 states after its inner and outer pads (kt_relay.c): the token itself is not kept.
typedef struct relay_mac {
  uint64_t inner[32], outer[32];
} relay_mac_t;

typedef struct relay_cfg {
  relay_mac_t mac;
  int64_t window_ms;       // an AUTH's timestamp may be this far from the wall clock, either way
  int header_ms, idle_ms;  // deadlines: a header once its first byte came; an authenticated connection's BIND
  uint8_t info;            // the reply's info byte (INFO_* of protocol.ts)
  acl_t allow4, allow6;    // the cluster's node CIDRs by family (IPv6 form, as source ranges)
  uint16_t port_min, port_max;
  uint16_t extra[32];
  int n_extra;
  pthread_mutex_t mu;      // the nonce cache
  relay_nonces_t gen[3];   // by window-long slot of the clock: this one, the last, the one before
  int64_t slot;            // floor(ms / window_ms) of gen[0]
  size_t max;              // nonces held at most (both generations)
  atomic_uint_fast64_t st[RS_COUNT];
  atomic_int quiet;        // closing (laneRelayQuiet): a connection adopted by another worker afterwards ends at once
  uint8_t mux;             // carriers (CMD_MUX) are served here (kt_mux.c); 0 hands them back to JS (KT_RELAY_MUX=js)
} relay_cfg_t;

typedef struct lane_listener {
  const kt_ops_t *ops;  // lane_listener_ops; first, as every epoll-registered object (kt_obj_t)
  lane_t *lane;
  double id;
  int fd;  // our dup of the listening socket
  atomic_int refs;  // JS handle + live pairs + queued commands + the registration
  atomic_int stopped;
  atomic_int unlisten_pending;
  pthread_mutex_t mu;  // groups, routes and the cursors
  group_t *groups;
  int n_groups;
  kt_routes_t routes;
  acl_t *acls;        // source-range sets: routes point here by index (kt_route_t.acl)
  int n_acls;
  int listener_acl;   // the listener's own set (-1: everyone); read under mu
  atomic_int has_listener_acl;  // lets accept skip the lock when there is none
  atomic_int default_group;  // -1: none (unmatched connections are closed and counted no_route); below n_groups (setRoutes checks), read without mu
  atomic_int routed;  // peek the first flight and route by name (issue #3)
  atomic_int started;  // laneStart (or laneListen with start): a relay configuration comes too late
  atomic_int peek_ms;
  relay_cfg_t *relay;  // a relay listener (kt_relay.c): set before it starts, never changed after
  int policy;  // 0 round-robin, 1 least-connections
  atomic_int max_conns, connect_ms, idle_ms, half_ms, attempts, log;
  atomic_uint_fast64_t accepted, outcomes[O_COUNT], bytes_in, bytes_out, emfile, accept_other, routes_out[R_COUNT];
  atomic_int active;
  // Per engine (index), touched only by that engine's worker.
  uint8_t in_list[KT_LANE_MAX_ENGINES];
  uint8_t armed[KT_LANE_MAX_ENGINES];
  kt_timer_t backoff[KT_LANE_MAX_ENGINES];  // armed after EMFILE: polling resumes when it fires
} lane_listener_t;

typedef struct lane_engine {
  lane_t *lane;
  pair_t *c_head, *c_tail;  // connecting pairs, FIFO = deadline order (one connect timeout)
  pair_t *p_head, *p_tail;  // peeking pairs, in deadline order
  lane_listener_t **ls;
  int n_ls, cap_ls;
  kt_timer_t connect_t;  // the head of the connecting list's deadline (kt_lane.c)
  kt_timer_t peek_t;     // the head of the peeking list's deadline (kt_route.c)
  kt_timer_t flush_t;    // the ring's flush time, armed by this worker's emits (kt_ring.c)
} lane_engine_t;

struct lane {
  engine_t *engines[KT_LANE_MAX_ENGINES];
  lane_engine_t *les[KT_LANE_MAX_ENGINES];
  int n;
  atomic_int active_total;
  atomic_int cap_total;
  atomic_int *backend_active;  // by backend id
  atomic_uchar *backend_failed;  // the last connect to it failed: report the next success
  atomic_int *backend_refs;  // pairs holding the backend (picked, connecting or connected): its slot is busy
  // Connect latency by backend id. A slot is allocated on the JS thread when
  // its backend is first pushed (setBackends), under the listener's mutex, so
  // a worker that picked the backend sees it; never freed (the lane lives as
  // long as the process).
  conn_hist_t **hist;
  uint64_t hist_bound_ns[KT_HIST_MAX];
  int hist_n;
  pthread_mutex_t rmu;
  double *ring;
  size_t len, cap;
  int posted;
  int closed;
  int64_t last_post_ms;
  atomic_int_fast64_t flush_at;  // records wait for this time (0: nothing waiting)
  atomic_uint_fast64_t dropped;
  napi_threadsafe_function tsfn;
#ifdef KT_TEST_HOOKS
  atomic_int released;  // laneClose released tsfn (test probe)
#endif
};


// ---------------------------------------------------------------- kt_lane.c

// Ops tables of the lane's epoll-registered objects (kt_engine.h kt_ops_t).
extern const kt_ops_t lane_listener_ops;  // a lane listener: accept
extern const kt_ops_t lane_hold_ops;      // a client waiting for its upstream's connect: events remembered

void listener_ref (lane_listener_t *L);
void listener_unref (lane_listener_t *L);
void acls_free (acl_t *v, int n);
// Whether set i admits the client (i < 0: no set, everyone). Called with L->mu held.
int acl_allows (const lane_listener_t *L, int i, const struct sockaddr_storage *ss);
// The client's address and port in a record (close and route records share the layout).
void rec_client (double *r, const struct sockaddr_storage *ss);
// Pick a backend of the pair's group and connect to it (or the next one), else give up.
void lane_connect_next (engine_t *e, pair_t *p);

// Read without the listener's lock (one lock round trip less per connection):
// setRoutes stores a group below the n_groups it stores with it, and pick()
// re-checks the group against n_groups under the lock it takes anyway.
static inline int32_t default_group (lane_listener_t *L) {
  return atomic_load(&L->default_group);
}

// ---------------------------------------------------------------- kt_route.c

// The peek timer's callback (lane_engine_t.peek_t).
void route_peek_timer (engine_t *e, kt_timer_t *t);
// Start reading the first flight of a routed listener's new pair.
void route_peek_start (engine_t *e, pair_t *p);
// The pair stops peeking (off the peek deadline list), and its peek state is freed.
void route_end_peek (engine_t *e, pair_t *p);
void route_free_peek (lane_conn_t *lc);

// The engine's list of connections waiting with a deadline (a routed
// listener's peek, a relay listener's header): deadline order.
void lane_wait_insert (engine_t *e, pair_t *p);
void lane_wait_unlink (engine_t *e, pair_t *p);

// ---------------------------------------------------------------- kt_lane_napi.c

// One CIDR ("a.b.c.d/n", "x::y/n", or an address alone) into IPv6 form (see cidr_t). 0 on success.
int lane_parse_cidr (const char *s, cidr_t *out);
// The listener behind a JS handle, or NULL.
lane_listener_t *lane_listener_of (napi_env env, napi_value v);
// Send command `sub` about L to every engine of its lane.
void lane_listener_cmd (lane_t *ln, int sub, lane_listener_t *L);
// Whether a (IPv6-form) address lies in a CIDR of the set.
int acl_set_has (const acl_t *s, const uint8_t a[16]);

// ---------------------------------------------------------------- kt_relay.c

// Keepalive as server.ts sets it (60 s): the only reaper of a peer that vanished without a FIN.
void relay_keepalive (int fd);
// Start reading a relay listener's new connection (its AUTH, then its BIND).
void relay_start (engine_t *e, pair_t *p);
// A relay connection's header deadline passed (the wait list's timer).
void relay_deadline (engine_t *e, pair_t *p);
// The dial target of a relay connection whose BIND was read (once), else 0.
int relay_target (lane_conn_t *lc, backend_t *out);
// A relay pair ends (kt_lane_finished): its summary for JS, its state freed.
void relay_finished (engine_t *e, pair_t *p, int outcome, int err);
// An address of a BIND at b[at..] (family 4 or 6, the address, the port): its
// length, 0 when more bytes are needed, -1 for an unknown family.
int relay_bind_addr (const uint8_t *b, size_t n, size_t at, uint8_t *fam, uint8_t *addr, uint16_t *port);
// A BIND's address as a socket address (fam 4: 4 bytes at a, 6: 16); its length.
socklen_t relay_sockaddr (struct sockaddr_storage *ss, int fam, const uint8_t *a, uint16_t port);
// An address in a relay_addr record from r: family, 4 big-endian words, port.
void relay_rec_addr (double *r, int fam, const uint8_t *a, uint16_t port);
void relay_free (relay_cfg_t *c);
// The relay's checks, shared with kt_relay_napi.c: 0 when SHA-256 cannot be
// found in this process; the token's HMAC states; an AUTH's MAC; a nonce
// (0 new, 1 seen, 2 full, as NonceCache.add); the wall clock in ms; whether
// allow.ts would admit a destination (fam 4: 4 bytes, 6: 16).
int crypto_ready (void);
void hmac_key (relay_mac_t *m, const uint8_t *key, size_t len);
int mac_ok (const relay_mac_t *m, const uint8_t *auth);
int nonce_add (relay_cfg_t *c, const uint8_t *k, int64_t now);
// A configuration with an empty nonce cache for `window_ms` whose slots start at `now`; NULL without memory.
relay_cfg_t *relay_cfg_new (int64_t window_ms, int64_t now);
int64_t wall_ms (void);
int allow_check (const relay_cfg_t *c, int fam, const uint8_t *a, uint16_t port);
// laneRelay, laneRelayStats and laneRelayQuiet (kt_relay_napi.c; kt_lane_napi.c registers them).
napi_value relay_js_configure (napi_env env, napi_callback_info info);
napi_value relay_js_stats (napi_env env, napi_callback_info info);
napi_value relay_js_quiet (napi_env env, napi_callback_info info);
// The differential-test entry points over the relay's checks (relayNonceScript, relayAllowScript, relayMacCheck).
void relay_hooks_init (napi_env env, napi_value exports);

// ---------------------------------------------------------------- kt_mux.c

// The authenticated relay pair p (its MUX command taken) becomes a carrier; -1 without memory.
int mux_start (engine_t *e, pair_t *p);
// A carrier ends (relay_finished): its streams are reset; stats gets streams opened, bytes up, bytes down.
void mux_finished (engine_t *e, pair_t *p, double *stats);
// Reset the carriers of L on this worker (laneAbort).
void mux_abort_listener (engine_t *e, lane_listener_t *L);
// Send what the batch queued on carriers; free the carriers and streams that ended in it.
void mux_after_batch (engine_t *e);
// The worker stops: every carrier ends, the state is freed.
void mux_stop (engine_t *e);

// ---------------------------------------------------------------- kt_ring.c

// Queue records for JS (n that belong together under one lock), from e's
// worker: a batch that must wait for the flush interval arms e's flush timer.
// 0 when queued; -1 when dropped (no memory, the ring full) or the lane closed.
int ring_emit_n (engine_t *e, lane_t *ln, const double *rec, size_t n);
static inline int ring_emit (engine_t *e, lane_t *ln, const double *rec) { return ring_emit_n(e, ln, rec, 1); }
// The flush timer's callback (lane_engine_t.flush_t): post the batch that waited for the flush interval.
void ring_flush_timer (engine_t *e, kt_timer_t *t);
// The threadsafe function's call_js: hands the whole batch to JS.
void ring_deliver (napi_env env, napi_value cb, void *ctx, void *data);
// No more posts from now on; returns whether it was already closed.
int ring_close (lane_t *ln);

#endif
