// Over 500 lines: the worker's header phase and the three checks it ports
// from TS (the MAC, the nonce cache, the allowlist) stay together.
// The relay's header phase in its addon (issue 12, [relay-path];
// docs/relay-protocol.md "Who reads the headers").
//
// Each new connection used to cost the relay about 0.5 ms of JS (a Socket for
// the host's connection, the AUTH, the BIND, a Socket and a connect for the
// node, the hand-off to the splice engine) on the Docker VM's one busy CPU.
// Here the lane's workers take a relay listener's connections from accept on:
// the AUTH (checked as server.ts checks it: magic, version, flags, the MAC in
// constant time, the window, the nonce against a replay cache), its answer
// when asked, a CONNECT BIND (flags at most SOURCE) to an allowlisted node,
// the dial and the splice, on the worker that accepted.
//
// A MUX command (flags 0) makes the connection a carrier of streams, served
// by kt_mux.c on the same worker.
//
// Everything else (a bad or stale AUTH, a replay, UDP, ANSWER, PROXY_V2,
// a denied destination, a header deadline) goes back to JS as its descriptor
// and a verdict (RV_*), its bytes untouched: headers are read with MSG_PEEK
// and taken only once accepted. server.ts serves it from there, so every
// refusal, status and log line keeps one implementation, in TS.
//
// The checks are ports of the TS ones, held to them by differential tests
// (test/relay/native-lane.test.ts); the relay's suites also run over this
// path (test/relay/native/). The JS-thread side is kt_relay_napi.c.

#include "kt_lane.h"

#include <dlfcn.h>

#define RELAY_VERSION 2
#define RELAY_SIGNED_LEN 30  // magic, version, flags, timestamp, nonce
#define RELAY_MAC_LEN 16
#define RELAY_AUTH_LEN (RELAY_SIGNED_LEN + RELAY_MAC_LEN)
#define RELAY_BIND_MAX (3 + 16 + 2 + 1 + 16 + 2)
#define RELAY_CMD_CONNECT 1
#define RELAY_CMD_MUX 3
#define RELAY_FLAG_SOURCE 1
#define RELAY_AUTH_ACK 1
#define RELAY_NONCES_MAX 500000  // server.ts NONCE_CACHE_MAX

enum { RP_AUTH = 0, RP_IDLE, RP_BIND, RP_DIAL, RP_MUX };  // RP_MUX: a multiplexed carrier (kt_mux.c)
enum { NONCE_NEW = 0, NONCE_SEEN = 1, NONCE_FULL = 2 };
enum { STEP_DONE = 0, STEP_AGAIN = 1 };

typedef struct relay_conn {
  uint8_t phase;
  uint8_t dialed;      // relay_target gave out the destination
  uint8_t dst_family;  // 4 or 6, once the BIND is taken
  uint8_t src_family;  // 0: the BIND named no source
  uint8_t dst[16], src[16];
  uint16_t dst_port, src_port;
} relay_conn_t;

static const uint8_t kMagic[4] = { 'K', 'T', 'R', 'L' };

// ---------------------------------------------------------------- HMAC-SHA256

// SHA-256 from the OpenSSL inside Node (node:crypto's own), found at run
// time: Node's official builds export its symbols, and Debian's node links
// libcrypto. A process without them keeps the JS relay (laneRelay throws).
// The low-level SHA256_* calls, not HMAC(): those touch no global state (an
// HMAC() call fetches its algorithm from OpenSSL's shared store under a
// lock, which OpenSSL frees at exit while a worker may still be in it), and
// the key's inner and outer blocks are hashed once per relay, so a MAC costs
// the two blocks of the AUTH and the outer hash's.
typedef struct sha_ctx { uint64_t opaque[32]; } sha_ctx_t;  // SHA256_CTX is 112 bytes in every OpenSSL since 0.9.8
typedef int (*sha_init_t) (sha_ctx_t *c);
typedef int (*sha_update_t) (sha_ctx_t *c, const void *d, size_t n);
typedef int (*sha_final_t) (unsigned char *md, sha_ctx_t *c);
static sha_init_t k_init;
static sha_update_t k_update;
static sha_final_t k_final;
static pthread_once_t k_once = PTHREAD_ONCE_INIT;

static void resolve_crypto (void) {
  void *i = dlsym(RTLD_DEFAULT, "SHA256_Init");
  void *u = dlsym(RTLD_DEFAULT, "SHA256_Update");
  void *f = dlsym(RTLD_DEFAULT, "SHA256_Final");
  memcpy(&k_init, &i, sizeof i);
  memcpy(&k_update, &u, sizeof u);
  memcpy(&k_final, &f, sizeof f);
}

int crypto_ready (void) {
  pthread_once(&k_once, resolve_crypto);
  return k_init != NULL && k_update != NULL && k_final != NULL;
}

// RFC 2104 with a key of at most one block (tokens are 16-64 bytes): the
// hash states after key^ipad and key^opad.
void hmac_key (relay_mac_t *m, const uint8_t *key, size_t len) {
  uint8_t pad[64];
  for (int round = 0; round < 2; round++) {
    memset(pad, round == 0 ? 0x36 : 0x5c, sizeof pad);
    for (size_t i = 0; i < len && i < sizeof pad; i++) pad[i] ^= key[i];
    sha_ctx_t *c = (sha_ctx_t *)(round == 0 ? m->inner : m->outer);
    k_init(c);
    k_update(c, pad, sizeof pad);
  }
}

// The AUTH's MAC (the first 16 bytes of HMAC-SHA256 over the signed part), compared in constant time.
int mac_ok (const relay_mac_t *m, const uint8_t *auth) {
  sha_ctx_t c;
  uint8_t inner[32], md[32];
  memcpy(&c, m->inner, sizeof c);
  k_update(&c, auth, RELAY_SIGNED_LEN);
  k_final(inner, &c);
  memcpy(&c, m->outer, sizeof c);
  k_update(&c, inner, sizeof inner);
  k_final(md, &c);
  uint8_t diff = 0;
  for (int i = 0; i < RELAY_MAC_LEN; i++) diff |= (uint8_t)(md[i] ^ auth[RELAY_SIGNED_LEN + i]);
  return diff == 0;
}

// ---------------------------------------------------------------- the nonce cache (server.ts NonceCache)

// Open addressing over 16-byte nonces. The nonces are random, and only those
// of an AUTH whose MAC checked get here, so their first bytes are a hash no
// client can steer.
static size_t nonce_slot (const relay_nonces_t *s, const uint8_t *k) {
  uint64_t h;
  memcpy(&h, k, sizeof h);
  return (size_t)((h * 0x9e3779b97f4a7c15ULL) >> 17) & (s->cap - 1);
}

static int nonces_has (const relay_nonces_t *s, const uint8_t *k) {
  if (s->n == 0) return 0;
  for (size_t i = nonce_slot(s, k);; i = (i + 1) & (s->cap - 1)) {
    if (!s->used[i]) return 0;
    if (memcmp(s->k[i], k, 16) == 0) return 1;
  }
}

static void nonces_put (relay_nonces_t *s, const uint8_t *k) {
  size_t i = nonce_slot(s, k);
  while (s->used[i]) i = (i + 1) & (s->cap - 1);
  memcpy(s->k[i], k, 16);
  s->used[i] = 1;
  s->n++;
}

// Add a nonce known to be absent; -1 when there is no memory for it.
static int nonces_add (relay_nonces_t *s, const uint8_t *k) {
  if ((s->n + 1) * 2 > s->cap) {
    relay_nonces_t g = { NULL, NULL, s->cap == 0 ? 1024 : s->cap * 2, 0 };
    g.k = malloc(g.cap * sizeof *g.k);
    g.used = calloc(g.cap, 1);
    if (g.k == NULL || g.used == NULL) { free(g.k); free(g.used); return -1; }
    for (size_t i = 0; i < s->cap; i++) if (s->used[i]) nonces_put(&g, s->k[i]);
    free(s->k);
    free(s->used);
    *s = g;
  }
  nonces_put(s, k);
  return 0;
}

static void nonces_free (relay_nonces_t *s) {
  free(s->k);
  free(s->used);
  memset(s, 0, sizeof *s);
}

// NonceCache.add: three generations, one per window-long slot of the clock,
// so a nonce is remembered for more than two windows, longer than any AUTH
// carrying it stays acceptable; bounded, and full means BUSY, never a nonce
// let through unremembered.
static int64_t floor_div (int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

relay_cfg_t *relay_cfg_new (int64_t window_ms, int64_t now) {
  relay_cfg_t *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  pthread_mutex_init(&c->mu, NULL);
  c->window_ms = window_ms;
  c->max = RELAY_NONCES_MAX;
  c->slot = floor_div(now, window_ms);
  return c;
}

int nonce_add (relay_cfg_t *c, const uint8_t *k, int64_t now) {
  int r;
  pthread_mutex_lock(&c->mu);
  int64_t slot = floor_div(now, c->window_ms);
  // A clock that steps back shifts nothing: nonces are then kept longer, never shorter.
  for (int64_t shift = slot - c->slot > 3 ? 3 : slot - c->slot; shift > 0; shift--) {
    nonces_free(&c->gen[2]);
    c->gen[2] = c->gen[1];
    c->gen[1] = c->gen[0];
    memset(&c->gen[0], 0, sizeof c->gen[0]);
  }
  if (slot > c->slot) c->slot = slot;
  size_t held = c->gen[0].n + c->gen[1].n + c->gen[2].n;
  if (nonces_has(&c->gen[0], k) || nonces_has(&c->gen[1], k) || nonces_has(&c->gen[2], k)) r = NONCE_SEEN;
  else if (held >= c->max) r = NONCE_FULL;
  else r = nonces_add(&c->gen[0], k) == 0 ? NONCE_NEW : NONCE_FULL;
  pthread_mutex_unlock(&c->mu);
  return r;
}

int64_t wall_ms (void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// ---------------------------------------------------------------- the allowlist (allow.ts Allowlist.check)

static int in_prefix (const uint8_t *a, const uint8_t *net, int bits) {
  int full = bits / 8, rest = bits % 8;
  if (memcmp(a, net, (size_t)full) != 0) return 0;
  if (rest == 0) return 1;
  uint8_t mask = (uint8_t)(0xff00u >> rest);
  return (a[full] & mask) == (net[full] & mask);
}

// Never relayed whatever the CIDRs: unspecified, loopback, link-local, multicast (and 240/4).
static int forbidden (int v4, const uint8_t *a) {
  static const uint8_t z[16] = { 0 };
  static const uint8_t one[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
  static const uint8_t fe80[2] = { 0xfe, 0x80 };
  if (v4) return a[0] == 0 || a[0] == 127 || (a[0] == 169 && a[1] == 254) || a[0] >= 224;
  return memcmp(a, z, 16) == 0 || memcmp(a, one, 16) == 0 || in_prefix(a, fe80, 10) || a[0] == 0xff;
}

// 1 when allow.ts would allow the destination. fam 4: a is 4 bytes; 6: 16
// (an IPv4-mapped address counts as IPv4, as allow.ts unmap()).
int allow_check (const relay_cfg_t *c, int fam, const uint8_t *a, uint16_t port) {
  static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
  uint8_t v6[16];
  int v4 = fam == 4 || memcmp(a, mapped, 12) == 0;
  const uint8_t *raw = fam == 4 ? a : (v4 ? a + 12 : a);
  if (forbidden(v4, raw)) return 0;
  if (v4) {
    memcpy(v6, mapped, 12);
    memcpy(v6 + 12, raw, 4);
  } else {
    memcpy(v6, a, 16);
  }
  if (!acl_set_has(v4 ? &c->allow4 : &c->allow6, v6)) return 0;
  if (port >= c->port_min && port <= c->port_max) return 1;
  for (int i = 0; i < c->n_extra; i++) if (c->extra[i] == port) return 1;
  return 0;
}

// ---------------------------------------------------------------- the worker

static void relay_read (engine_t *e, pair_t *p);

static void relay_event (engine_t *e, void *obj, uint32_t events) {
  side_t *s = obj;
  if (s->p->dead) return;
  kt_note_events(s, events);
  relay_read(e, s->p);
}

static const kt_ops_t relay_ops = { "relay", relay_event };

static relay_cfg_t *cfg_of (pair_t *p) {
  return ((lane_listener_t *)p->lane->listener)->relay;
}

// A new deadline: off the wait list and on again in order.
static void relist (engine_t *e, pair_t *p, int64_t deadline) {
  lane_wait_unlink(e, p);
  p->lane->deadline_ms = deadline;
  lane_wait_insert(e, p);
}

// JS takes the connection from here (src/relay/native-lane.ts): its
// descriptor and a verdict in a relay record. Nothing of it is counted or
// logged here. When no record can reach JS (the ring full, the lane
// closing), the connection is reset instead: never left open unowned.
static void hand_back (engine_t *e, pair_t *p, int verdict) {
  lane_conn_t *lc = p->lane;
  lane_listener_t *L = lc->listener;
  int fd = p->s[0].fd;
  (void)epoll_ctl(e->ep, EPOLL_CTL_DEL, fd, NULL);
  double r[KT_REC] = { 0 };
  r[F_TYPE] = REC_RELAY;
  r[F_LISTENER] = L->id;
  r[F_BACKEND] = 0;  // kind: a hand-back
  r[F_OUTCOME] = verdict;
  r[F_ATTEMPTS] = fd;
  r[F_MS] = (double)(e->now_ms - lc->start_ms);
  rec_client(r, &lc->client);
  if (ring_emit(e, L->lane, r) != 0) {
    lc->outcome = 1 + O_ERROR;
    kt_finish(e, p, C_ERROR, ENOBUFS, 1);
    return;
  }
  p->s[0].fd = -1;  // JS's now: not closed, not touched
  p->registered &= (uint8_t)~1u;
  lc->handback = 1;
  atomic_fetch_add(&L->relay->st[RS_HANDED_BACK], 1);
  kt_finish(e, p, C_EOF, 0, 0);
}

// Wait for more of a header, unless its FIN came: then it stays incomplete,
// and JS refuses it as server.ts does.
static int wait_or_hand_back (engine_t *e, pair_t *p, int verdict) {
  if (p->s[0].rdhup) hand_back(e, p, verdict);
  return STEP_DONE;
}

static int auth_step (engine_t *e, pair_t *p, const uint8_t *b, size_t n) {
  relay_cfg_t *c = cfg_of(p);
  lane_conn_t *lc = p->lane;
  relay_conn_t *rc = lc->relay;
  // Checked as it arrives (protocol.ts parseAuth): garbage goes to JS at once.
  if (n == 0) { hand_back(e, p, RV_RAW); return STEP_DONE; }
  for (size_t i = 0; i < n && i < 4; i++) if (b[i] != kMagic[i]) { hand_back(e, p, RV_RAW); return STEP_DONE; }
  if (n > 4 && b[4] != RELAY_VERSION) { hand_back(e, p, RV_RAW); return STEP_DONE; }
  if (n > 5 && (b[5] & ~RELAY_AUTH_ACK) != 0) { hand_back(e, p, RV_RAW); return STEP_DONE; }
  if (n < RELAY_AUTH_LEN) return wait_or_hand_back(e, p, RV_RAW);
  if (!mac_ok(&c->mac, b)) { hand_back(e, p, RV_RAW); return STEP_DONE; }
  uint64_t ts = 0;
  for (int i = 6; i < 14; i++) ts = (ts << 8) | b[i];
  int64_t now = wall_ms();
  // Stale either way: JS refuses it (and counts it) with its own clock.
  // With its own verdict: JS, reading its clock a little later, must not find it fresh.
  if (ts > (uint64_t)INT64_MAX / 2 || (int64_t)ts - now > c->window_ms || now - (int64_t)ts > c->window_ms) { hand_back(e, p, RV_STALE); return STEP_DONE; }
  int seen = nonce_add(c, b + 14, now);
  if (seen != NONCE_NEW) { hand_back(e, p, seen == NONCE_SEEN ? RV_REPLAY : RV_FULL); return STEP_DONE; }
  uint8_t sink[RELAY_AUTH_LEN];
  ssize_t got = recv(p->s[0].fd, sink, RELAY_AUTH_LEN, MSG_DONTWAIT);
  if (got != RELAY_AUTH_LEN) {  // cannot happen: the bytes were there to peek
    lc->outcome = 1 + O_ERROR;
    kt_finish(e, p, C_ERROR, got < 0 ? errno : EIO, 1);
    return STEP_DONE;
  }
  atomic_fetch_add(&c->st[RS_AUTHENTICATED], 1);
  if (b[5] & RELAY_AUTH_ACK) {
    const uint8_t ok[3] = { RELAY_VERSION, 0, c->info };
    if (send(p->s[0].fd, ok, sizeof ok, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)sizeof ok) {
      lc->outcome = 1 + O_CLIENT_CLOSED;
      kt_finish(e, p, C_RESET_A, errno, 1);
      return STEP_DONE;
    }
  }
  rc->phase = RP_IDLE;
  relist(e, p, e->now_ms + c->idle_ms);
  return STEP_AGAIN;
}

// An address of the BIND at b[at..]: its length, 0 when more bytes are needed, -1 when JS must see it.
int relay_bind_addr (const uint8_t *b, size_t n, size_t at, uint8_t *fam, uint8_t *addr, uint16_t *port) {
  if (n <= at) return 0;
  if (b[at] != 4 && b[at] != 6) return -1;
  size_t alen = b[at] == 4 ? 4 : 16;
  if (n < at + 1 + alen + 2) return 0;
  *fam = b[at];
  memcpy(addr, b + at + 1, alen);
  *port = (uint16_t)((b[at + 1 + alen] << 8) | b[at + 2 + alen]);
  return (int)(1 + alen + 2);
}

// BIND command CMD_MUX: with flags 0, the connection becomes a carrier
// (server.ts mux(); any other flags go to JS, which refuses them).
static int mux_step (engine_t *e, pair_t *p, const uint8_t *b, size_t n) {
  lane_conn_t *lc = p->lane;
  if (n < 2) return wait_or_hand_back(e, p, RV_AUTHED);
  if (b[1] != 0) { hand_back(e, p, RV_AUTHED); return STEP_DONE; }
  uint8_t sink[2];
  ssize_t got = recv(p->s[0].fd, sink, sizeof sink, MSG_DONTWAIT);
  if (got != (ssize_t)sizeof sink) {
    lc->outcome = 1 + O_ERROR;
    kt_finish(e, p, C_ERROR, got < 0 ? errno : EIO, 1);
    return STEP_DONE;
  }
  lane_wait_unlink(e, p);
  lc->peeking = 0;
  ((relay_conn_t *)lc->relay)->phase = RP_MUX;
  if (mux_start(e, p) != 0) {
    lc->outcome = 1 + O_ERROR;
    kt_finish(e, p, C_ERROR, ENOMEM, 1);
  }
  return STEP_DONE;
}

static int bind_step (engine_t *e, pair_t *p, const uint8_t *b, size_t n) {
  relay_cfg_t *c = cfg_of(p);
  lane_conn_t *lc = p->lane;
  relay_conn_t *rc = lc->relay;
  if (n == 0) {
    // A pooled connection the host let go: a FIN, as the JS relay's end().
    lc->outcome = 1 + O_CLIENT_CLOSED;
    kt_finish(e, p, C_EOF, 0, 0);
    return STEP_DONE;
  }
  if (rc->phase == RP_IDLE) {
    rc->phase = RP_BIND;  // its first byte: the header deadline from now (server.ts)
    relist(e, p, e->now_ms + c->header_ms);
  }
  if (b[0] == RELAY_CMD_MUX && c->mux) return mux_step(e, p, b, n);
  if (b[0] != RELAY_CMD_CONNECT) { hand_back(e, p, RV_AUTHED); return STEP_DONE; }
  if (n < 2) return wait_or_hand_back(e, p, RV_AUTHED);
  uint8_t flags = b[1];
  if ((flags & ~RELAY_FLAG_SOURCE) != 0) { hand_back(e, p, RV_AUTHED); return STEP_DONE; }
  relay_conn_t t = *rc;
  int used = relay_bind_addr(b, n, 2, &t.dst_family, t.dst, &t.dst_port);
  if (used < 0 || (used > 0 && t.dst_port == 0)) { hand_back(e, p, RV_AUTHED); return STEP_DONE; }
  if (used == 0) return wait_or_hand_back(e, p, RV_AUTHED);
  size_t at = 2 + (size_t)used;
  if (flags & RELAY_FLAG_SOURCE) {
    int u = relay_bind_addr(b, n, at, &t.src_family, t.src, &t.src_port);
    if (u < 0) { hand_back(e, p, RV_AUTHED); return STEP_DONE; }
    if (u == 0) return wait_or_hand_back(e, p, RV_AUTHED);
    at += (size_t)u;
  }
  if (!allow_check(c, t.dst_family, t.dst, t.dst_port)) { hand_back(e, p, RV_AUTHED); return STEP_DONE; }
  uint8_t sink[RELAY_BIND_MAX];
  ssize_t got = recv(p->s[0].fd, sink, at, MSG_DONTWAIT);
  if (got != (ssize_t)at) {
    lc->outcome = 1 + O_ERROR;
    kt_finish(e, p, C_ERROR, got < 0 ? errno : EIO, 1);
    return STEP_DONE;
  }
  *rc = t;
  rc->phase = RP_DIAL;
  atomic_fetch_add(&c->st[RS_DIALED], 1);
  lane_wait_unlink(e, p);
  lc->peeking = 0;
  // The client's bytes that came with the BIND stay in its socket: the
  // splice reads them first, once the destination is connected.
  p->s[0].ops = &lane_hold_ops;
  p->s[0].readable = 1;
  p->s[0].writable = 1;
  lane_connect_next(e, p);
  return STEP_DONE;
}

// Read (peek) the header in hand until it is taken, handed back, or incomplete.
static void relay_read (engine_t *e, pair_t *p) {
  uint8_t b[RELAY_AUTH_LEN > RELAY_BIND_MAX ? RELAY_AUTH_LEN : RELAY_BIND_MAX];
  for (;;) {
    if (p->dead) return;
    relay_conn_t *rc = p->lane->relay;
    size_t want = rc->phase == RP_AUTH ? RELAY_AUTH_LEN : RELAY_BIND_MAX;
    ssize_t n = recv(p->s[0].fd, b, want, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      // Reset (or failed) before the splice: server.ts's pre-splice error.
      p->lane->outcome = 1 + O_RESET_CLIENT;
      kt_finish(e, p, C_RESET_A, errno, 0);
      return;
    }
    int r = rc->phase == RP_AUTH ? auth_step(e, p, b, (size_t)n) : bind_step(e, p, b, (size_t)n);
    if (r != STEP_AGAIN) return;
  }
}

void relay_keepalive (int fd) {
  int one = 1, idle = 60;
  (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
}

void relay_start (engine_t *e, pair_t *p) {
  lane_conn_t *lc = p->lane;
  relay_cfg_t *c = cfg_of(p);
  if (atomic_load(&c->quiet)) {
    // Accepted just before the listener stopped, adopted here after the quiet command ran.
    lc->outcome = 1 + O_ABORTED;
    kt_finish(e, p, C_ABORTED, 0, 0);
    return;
  }
  relay_keepalive(p->s[0].fd);
  relay_conn_t *rc = calloc(1, sizeof *rc);
  if (rc == NULL) {
    lc->outcome = 1 + O_ERROR;
    kt_finish(e, p, C_ERROR, ENOMEM, 1);
    return;
  }
  lc->relay = rc;
  // Registered for everything at once: the same registration serves the splice.
  struct epoll_event ev;
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = &p->s[0];
  p->s[0].ops = &relay_ops;
  if (epoll_ctl(e->ep, EPOLL_CTL_ADD, p->s[0].fd, &ev) < 0) {
    lc->outcome = 1 + O_ERROR;
    kt_finish(e, p, C_ERROR, errno, 1);
    return;
  }
  p->registered |= 1;
  lc->peeking = 1;  // on the wait list: route_end_peek takes it off at the end
  lc->deadline_ms = lc->start_ms + c->header_ms;
  lane_wait_insert(e, p);
  relay_read(e, p);  // the AUTH is usually there already
}

void relay_deadline (engine_t *e, pair_t *p) {
  lane_conn_t *lc = p->lane;
  relay_conn_t *rc = lc->relay;
  if (rc->phase == RP_IDLE) {
    // An authenticated connection that never got its BIND (server.ts onIdleTimeout: a FIN).
    atomic_fetch_add(&cfg_of(p)->st[RS_IDLE_CLOSED], 1);
    lc->outcome = 1 + O_IDLE_TIMEOUT;
    kt_finish(e, p, C_EOF, 0, 0);
    return;
  }
  hand_back(e, p, rc->phase == RP_AUTH ? RV_HELLO_TIMEOUT : RV_BIND_TIMEOUT);
}

int relay_target (lane_conn_t *lc, backend_t *out) {
  relay_conn_t *rc = lc->relay;
  if (rc->phase != RP_DIAL || rc->dialed) return 0;
  rc->dialed = 1;
  memset(out, 0, sizeof *out);
  out->id = -1;
  out->len = relay_sockaddr(&out->addr, rc->dst_family, rc->dst, rc->dst_port);
  return 1;
}

socklen_t relay_sockaddr (struct sockaddr_storage *ss, int fam, const uint8_t *a, uint16_t port) {
  memset(ss, 0, sizeof *ss);
  if (fam == 4) {
    struct sockaddr_in *s4 = (void *)ss;
    s4->sin_family = AF_INET;
    memcpy(&s4->sin_addr, a, 4);
    s4->sin_port = htons(port);
    return sizeof *s4;
  }
  struct sockaddr_in6 *s6 = (void *)ss;
  s6->sin6_family = AF_INET6;
  memcpy(&s6->sin6_addr, a, 16);
  s6->sin6_port = htons(port);
  return sizeof *s6;
}

void relay_rec_addr (double *r, int fam, const uint8_t *a, uint16_t port) {
  r[0] = fam;
  uint8_t w[16] = { 0 };
  memcpy(w, a, fam == 4 ? 4 : 16);
  for (int i = 0; i < 4; i++) r[1 + i] = ((uint32_t)w[4 * i] << 24) | ((uint32_t)w[4 * i + 1] << 16) | ((uint32_t)w[4 * i + 2] << 8) | w[4 * i + 3];
  r[5] = port;
}

void relay_finished (engine_t *e, pair_t *p, int outcome, int err) {
  lane_conn_t *lc = p->lane;
  lane_listener_t *L = lc->listener;
  relay_conn_t *rc = lc->relay;
  int bound = rc->phase == RP_DIAL;
  double mux[3] = { 0, 0, 0 };
  if (rc->phase == RP_MUX) mux_finished(e, p, mux);  // its streams are reset first
  if (bound && lc->failed) atomic_fetch_add(&L->relay->st[err == KT_ERR_CONNECT_TIMEOUT ? RS_DIAL_TIMED_OUT : RS_DIAL_FAILED], 1);
  // A summary for JS's log and metrics: every connection with the log on,
  // and always a failed dial (a warning, as server.ts logs it).
  if ((bound && lc->failed) || atomic_load(&L->log)) {
    double r[2 * KT_REC] = { 0 };
    r[F_TYPE] = REC_RELAY;
    r[F_LISTENER] = L->id;
    r[F_BACKEND] = 1;  // kind: a summary
    r[F_OUTCOME] = outcome;
    r[F_ERR] = err;
    r[F_BYTES_IN] = (double)p->d[0].bytes;
    r[F_BYTES_OUT] = (double)p->d[1].bytes;
    r[F_MS] = (double)(e->now_ms - lc->start_ms);
    r[F_ATTEMPTS] = rc->phase;
    rec_client(r, &lc->client);
    double *a = r + KT_REC;
    a[F_TYPE] = REC_RELAY_ADDR;
    a[F_LISTENER] = L->id;
    if (bound) relay_rec_addr(a + F_DST_FAMILY, rc->dst_family, rc->dst, rc->dst_port);
    if (bound && rc->src_family != 0) relay_rec_addr(a + F_SRC_FAMILY, rc->src_family, rc->src, rc->src_port);
    if (rc->phase == RP_MUX) memcpy(a + F_SRC_FAMILY + 6, mux, sizeof mux);  // streams opened, bytes up, bytes down
    (void)ring_emit_n(e, L->lane, r, 2);
  }
  free(rc);
  lc->relay = NULL;
}

void relay_free (relay_cfg_t *c) {
  if (c == NULL) return;
  for (int i = 0; i < 3; i++) nonces_free(&c->gen[i]);
  free(c->allow4.v);
  free(c->allow6.v);
  pthread_mutex_destroy(&c->mu);
  free(c);
}
