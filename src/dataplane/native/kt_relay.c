// The relay's header phase in its addon (issue 12, [relay-path]).
//
// In the relay container, every new connection cost the relay about 0.5 ms
// of JS: a Socket for the host's connection, the AUTH's HMAC, the BIND, a
// Socket and a connect for the node, then the hand-off of both to the splice
// engine. That JS, on the Docker VM's one busy CPU, is what held new
// connections per second below cloud-provider-kind's. Here the lane's workers
// take a relay listener's connections from accept on: read the AUTH (checked
// as src/relay/server.ts checks it: magic, version, flags, the MAC in
// constant time, the timestamp's window, the nonce against a replay cache),
// answer it when asked, read the BIND, check the destination against the
// allowlist, dial it and splice, all on the worker that accepted.
//
// Only the common case is taken: a valid AUTH, then a CONNECT whose flags are
// at most SOURCE, to an allowlisted destination. Everything else (a bad or
// stale AUTH, a replayed nonce, a MUX carrier, a UDP flow, ANSWER, PROXY_V2,
// a denied destination, a header deadline) is handed back to JS with what it
// needs: the descriptor, untouched bytes (the header is read with MSG_PEEK
// and only taken once accepted), and a verdict (RV_*). JS's server.ts then
// refuses or serves it exactly as before, so every refusal, status and log
// line has one implementation, in TS. Bytes are only ever consumed here for
// an AUTH this code accepted (its nonce is then in this cache, not JS's) and
// a BIND it dials.
//
// Differential tests (test/relay/native-relay.test.ts) hold this to the TS
// path: the nonce cache against NonceCache, the allowlist against Allowlist,
// the MAC against node:crypto, and the whole relay protocol suite run over
// both paths.

#include "kt_lane.h"

#include <dlfcn.h>

#define RELAY_VERSION 2
#define RELAY_SIGNED_LEN 30  // magic, version, flags, timestamp, nonce
#define RELAY_MAC_LEN 16
#define RELAY_AUTH_LEN (RELAY_SIGNED_LEN + RELAY_MAC_LEN)
#define RELAY_BIND_MAX (3 + 16 + 2 + 1 + 16 + 2)
#define RELAY_CMD_CONNECT 1
#define RELAY_FLAG_SOURCE 1
#define RELAY_AUTH_ACK 1
#define RELAY_NONCES_MAX 500000  // server.ts NONCE_CACHE_MAX

enum { RP_AUTH = 0, RP_IDLE, RP_BIND, RP_DIAL };
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

// From the OpenSSL inside Node (node:crypto's own), found at run time: Node's
// official builds export its symbols, and Debian's node links libcrypto. A
// process without them keeps the JS relay (laneRelay throws).
typedef unsigned char *(*hmac_fn_t) (const void *md, const void *key, int key_len, const unsigned char *d, size_t n, unsigned char *out, unsigned int *out_len);
typedef const void *(*md_fn_t) (void);
static hmac_fn_t k_hmac;
static md_fn_t k_sha256;
static pthread_once_t k_once = PTHREAD_ONCE_INIT;

static void resolve_crypto (void) {
  void *h = dlsym(RTLD_DEFAULT, "HMAC");
  void *m = dlsym(RTLD_DEFAULT, "EVP_sha256");
  memcpy(&k_hmac, &h, sizeof h);
  memcpy(&k_sha256, &m, sizeof m);
}

static int crypto_ready (void) {
  pthread_once(&k_once, resolve_crypto);
  return k_hmac != NULL && k_sha256 != NULL;
}

// The AUTH's MAC (its first 16 bytes of HMAC-SHA256 over the signed part), compared in constant time.
static int mac_ok (const uint8_t *token, int token_len, const uint8_t *auth) {
  unsigned char md[64];
  unsigned int len = 0;
  if (k_hmac(k_sha256(), token, token_len, auth, RELAY_SIGNED_LEN, md, &len) == NULL || len < RELAY_MAC_LEN) return 0;
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

// NonceCache.add: two generations rotating every window, so a nonce is
// remembered for one to two windows; bounded, and full means BUSY, never a
// nonce let through unremembered.
static int nonce_add (relay_cfg_t *c, const uint8_t *k, int64_t now) {
  int r;
  pthread_mutex_lock(&c->mu);
  if (now - c->rotated_at >= c->window_ms) {
    nonces_free(&c->prev);
    if (now - c->rotated_at >= 2 * c->window_ms) nonces_free(&c->cur);
    c->prev = c->cur;
    memset(&c->cur, 0, sizeof c->cur);
    c->rotated_at = now;
  }
  if (nonces_has(&c->cur, k) || nonces_has(&c->prev, k)) r = NONCE_SEEN;
  else if (c->cur.n + c->prev.n >= c->max) r = NONCE_FULL;
  else r = nonces_add(&c->cur, k) == 0 ? NONCE_NEW : NONCE_FULL;
  pthread_mutex_unlock(&c->mu);
  return r;
}

static int64_t wall_ms (void) {
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
static int allow_check (const relay_cfg_t *c, int fam, const uint8_t *a, uint16_t port) {
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
  if (!mac_ok(c->token, c->token_len, b)) { hand_back(e, p, RV_RAW); return STEP_DONE; }
  uint64_t ts = 0;
  for (int i = 6; i < 14; i++) ts = (ts << 8) | b[i];
  int64_t now = wall_ms();
  // Stale either way: JS refuses it (and counts it) with its own clock.
  if (ts > (uint64_t)INT64_MAX / 2 || (int64_t)ts - now > c->window_ms || now - (int64_t)ts > c->window_ms) { hand_back(e, p, RV_RAW); return STEP_DONE; }
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
static int bind_addr (const uint8_t *b, size_t n, size_t at, uint8_t *fam, uint8_t *addr, uint16_t *port) {
  if (n <= at) return 0;
  if (b[at] != 4 && b[at] != 6) return -1;
  size_t alen = b[at] == 4 ? 4 : 16;
  if (n < at + 1 + alen + 2) return 0;
  *fam = b[at];
  memcpy(addr, b + at + 1, alen);
  *port = (uint16_t)((b[at + 1 + alen] << 8) | b[at + 2 + alen]);
  return (int)(1 + alen + 2);
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
  if (b[0] != RELAY_CMD_CONNECT) { hand_back(e, p, RV_AUTHED); return STEP_DONE; }
  if (n < 2) return wait_or_hand_back(e, p, RV_AUTHED);
  uint8_t flags = b[1];
  if ((flags & ~RELAY_FLAG_SOURCE) != 0) { hand_back(e, p, RV_AUTHED); return STEP_DONE; }
  relay_conn_t t = *rc;
  int used = bind_addr(b, n, 2, &t.dst_family, t.dst, &t.dst_port);
  if (used < 0 || (used > 0 && t.dst_port == 0)) { hand_back(e, p, RV_AUTHED); return STEP_DONE; }
  if (used == 0) return wait_or_hand_back(e, p, RV_AUTHED);
  size_t at = 2 + (size_t)used;
  if (flags & RELAY_FLAG_SOURCE) {
    int u = bind_addr(b, n, at, &t.src_family, t.src, &t.src_port);
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
      p->lane->outcome = 1 + O_CLIENT_CLOSED;
      kt_finish(e, p, C_RESET_A, errno, 0);
      return;
    }
    int r = rc->phase == RP_AUTH ? auth_step(e, p, b, (size_t)n) : bind_step(e, p, b, (size_t)n);
    if (r != STEP_AGAIN) return;
  }
}

void relay_start (engine_t *e, pair_t *p) {
  lane_conn_t *lc = p->lane;
  relay_cfg_t *c = cfg_of(p);
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
  if (rc->dst_family == 4) {
    struct sockaddr_in *s4 = (void *)&out->addr;
    s4->sin_family = AF_INET;
    memcpy(&s4->sin_addr, rc->dst, 4);
    s4->sin_port = htons(rc->dst_port);
    out->len = sizeof *s4;
  } else {
    struct sockaddr_in6 *s6 = (void *)&out->addr;
    s6->sin6_family = AF_INET6;
    memcpy(&s6->sin6_addr, rc->dst, 16);
    s6->sin6_port = htons(rc->dst_port);
    out->len = sizeof *s6;
  }
  return 1;
}

static void rec_addr (double *r, int fam, const uint8_t *a, uint16_t port) {
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
    if (bound) rec_addr(a + F_DST_FAMILY, rc->dst_family, rc->dst, rc->dst_port);
    if (bound && rc->src_family != 0) rec_addr(a + F_SRC_FAMILY, rc->src_family, rc->src, rc->src_port);
    (void)ring_emit_n(e, L->lane, r, 2);
  }
  free(rc);
  lc->relay = NULL;
}

// ---------------------------------------------------------------- configuration (JS thread)

void relay_free (relay_cfg_t *c) {
  if (c == NULL) return;
  nonces_free(&c->cur);
  nonces_free(&c->prev);
  free(c->allow4.v);
  free(c->allow6.v);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

static napi_value throw_msg (napi_env env, const char *code, const char *msg) {
  napi_throw_error(env, code, msg);
  return NULL;
}

// The CIDRs into the two sets by family; NULL, or what is wrong.
static const char *read_allow (napi_env env, napi_value arr, relay_cfg_t *c) {
  uint32_t n = 0;
  bool is_arr = false;
  if (napi_is_array(env, arr, &is_arr) != napi_ok || !is_arr || napi_get_array_length(env, arr, &n) != napi_ok || n == 0 || n > KT_LANE_MAX_CIDRS) return "laneRelay: allow must list 1 to 65536 CIDRs";
  c->allow4.v = calloc(n, sizeof(cidr_t));
  c->allow6.v = calloc(n, sizeof(cidr_t));
  if (c->allow4.v == NULL || c->allow6.v == NULL) return "ENOMEM";
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    char buf[INET6_ADDRSTRLEN + 8], addr[INET6_ADDRSTRLEN + 1];
    size_t bl = 0;
    cidr_t cd;
    if (napi_get_element(env, arr, i, &v) != napi_ok || napi_get_value_string_utf8(env, v, buf, sizeof buf, &bl) != napi_ok ||
        bl >= sizeof buf - 1 || lane_parse_cidr(buf, &cd) != 0) return "laneRelay: bad CIDR";
    size_t al = strcspn(buf, "/");
    if (al >= sizeof addr) return "laneRelay: bad CIDR";
    memcpy(addr, buf, al);
    addr[al] = 0;
    struct in_addr a4;
    acl_t *set = inet_pton(AF_INET, addr, &a4) == 1 ? &c->allow4 : &c->allow6;
    set->v[set->n++] = cd;
  }
  return NULL;
}

// laneRelay(listener, token: Buffer, windowMs, headerMs, idleMs, info, allow: string[], portMin, portMax, extra: number[]):
// make a listener (laneListen with start false, before laneStart) a relay listener.
napi_value relay_js_configure (napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  lane_listener_t *L = argc >= 10 ? lane_listener_of(env, argv[0]) : NULL;
  if (L == NULL) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "laneRelay(listener, token, windowMs, headerMs, idleMs, info, allow, portMin, portMax, extra)");
  if (L->relay != NULL) return throw_msg(env, "ERR_INVALID_STATE", "laneRelay: already a relay listener");
  if (!crypto_ready()) return throw_msg(env, "ENOSYS", "laneRelay: this Node.js exports no HMAC-SHA256 (OpenSSL symbols)");
  bool is_buf = false;
  void *tok = NULL;
  size_t tl = 0;
  if (napi_is_buffer(env, argv[1], &is_buf) != napi_ok || !is_buf) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "laneRelay: token must be a Buffer");
  napi_get_buffer_info(env, argv[1], &tok, &tl);
  if (tl < 16 || tl > 64) return throw_msg(env, "ERR_INVALID_ARG_VALUE", "laneRelay: token must be 16-64 bytes");
  int32_t v[4];
  for (int i = 0; i < 4; i++) {
    if (napi_get_value_int32(env, argv[2 + i], &v[i]) != napi_ok || v[i] < 0) return throw_msg(env, "ERR_INVALID_ARG_VALUE", "laneRelay: non-negative integers");
  }
  int32_t pmin, pmax;
  if (napi_get_value_int32(env, argv[7], &pmin) != napi_ok || napi_get_value_int32(env, argv[8], &pmax) != napi_ok ||
      pmin < 1 || pmax > 65535 || pmin > pmax || v[0] < 1 || v[1] < 1 || v[2] < 1 || v[3] > 255) {
    return throw_msg(env, "ERR_INVALID_ARG_VALUE", "laneRelay: bad window, deadline, info or port range");
  }
  uint32_t ne = 0;
  bool is_arr = false;
  if (napi_is_array(env, argv[9], &is_arr) != napi_ok || !is_arr || napi_get_array_length(env, argv[9], &ne) != napi_ok || ne > 32) {
    return throw_msg(env, "ERR_INVALID_ARG_VALUE", "laneRelay: at most 32 extra ports");
  }
  relay_cfg_t *c = calloc(1, sizeof *c);
  if (c == NULL) return throw_msg(env, "ENOMEM", "laneRelay");
  pthread_mutex_init(&c->mu, NULL);
  memcpy(c->token, tok, tl);
  c->token_len = (int)tl;
  c->window_ms = v[0];
  c->header_ms = v[1];
  c->idle_ms = v[2];
  c->info = (uint8_t)v[3];
  c->port_min = (uint16_t)pmin;
  c->port_max = (uint16_t)pmax;
  c->max = RELAY_NONCES_MAX;
  c->rotated_at = wall_ms();
  for (uint32_t i = 0; i < ne; i++) {
    napi_value x;
    int32_t port = 0;
    if (napi_get_element(env, argv[9], i, &x) != napi_ok || napi_get_value_int32(env, x, &port) != napi_ok || port < 1 || port > 65535) {
      relay_free(c);
      return throw_msg(env, "ERR_INVALID_ARG_VALUE", "laneRelay: bad extra port");
    }
    c->extra[c->n_extra++] = (uint16_t)port;
  }
  const char *err = read_allow(env, argv[6], c);
  if (err != NULL) {
    relay_free(c);
    return throw_msg(env, strcmp(err, "ENOMEM") == 0 ? "ENOMEM" : "ERR_INVALID_ARG_VALUE", err);
  }
  // Published to the workers by the command queue's mutex (laneStart comes after).
  L->relay = c;
  return NULL;
}

// laneRelayStats(listener, out: Float64Array(RS_COUNT))
napi_value relay_js_stats (napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  lane_listener_t *L = argc >= 2 ? lane_listener_of(env, argv[0]) : NULL;
  napi_typedarray_type t;
  size_t len = 0;
  void *data = NULL;
  if (L == NULL || L->relay == NULL || napi_get_typedarray_info(env, argv[1], &t, &len, &data, NULL, NULL) != napi_ok || t != napi_float64_array || len < RS_COUNT) {
    return throw_msg(env, "ERR_INVALID_ARG_TYPE", "laneRelayStats(relay listener, out: Float64Array)");
  }
  double *o = data;
  for (int i = 0; i < RS_COUNT; i++) o[i] = (double)atomic_load(&L->relay->st[i]);
  pthread_mutex_lock(&L->relay->mu);
  o[RS_NONCES] = (double)(L->relay->cur.n + L->relay->prev.n);
  pthread_mutex_unlock(&L->relay->mu);
  return NULL;
}

// laneRelayQuiet(listener): end the connections still in their header phase (closing).
napi_value relay_js_quiet (napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  lane_listener_t *L = argc >= 1 ? lane_listener_of(env, argv[0]) : NULL;
  if (L == NULL || L->relay == NULL) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "laneRelayQuiet(relay listener)");
  lane_listener_cmd(L->lane, L_QUIET, L);
  return NULL;
}

// ---------------------------------------------------------------- differential-test hooks

// relayNonceScript(windowMs, max, startMs, nonces: Buffer (16 each), nows: number[]) -> number[] (0 new, 1 seen, 2 full)
static napi_value js_nonce_script (napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t w = 0, mx = 0, start = 0;
  void *data = NULL;
  size_t len = 0;
  uint32_t n = 0;
  bool is_buf = false;
  if (argc < 5 || napi_get_value_int64(env, argv[0], &w) != napi_ok || napi_get_value_int64(env, argv[1], &mx) != napi_ok ||
      napi_get_value_int64(env, argv[2], &start) != napi_ok || napi_is_buffer(env, argv[3], &is_buf) != napi_ok || !is_buf ||
      napi_get_array_length(env, argv[4], &n) != napi_ok || w < 1 || mx < 0) {
    return throw_msg(env, "ERR_INVALID_ARG_TYPE", "relayNonceScript(windowMs, max, startMs, nonces, nows)");
  }
  napi_get_buffer_info(env, argv[3], &data, &len);
  if (len < (size_t)n * 16) return throw_msg(env, "ERR_INVALID_ARG_VALUE", "relayNonceScript: 16 bytes per nonce");
  relay_cfg_t *c = calloc(1, sizeof *c);
  if (c == NULL) return throw_msg(env, "ENOMEM", "relayNonceScript");
  pthread_mutex_init(&c->mu, NULL);
  c->window_ms = w;
  c->max = (size_t)mx;
  c->rotated_at = start;
  napi_create_array_with_length(env, n, &out);
  for (uint32_t i = 0; i < n; i++) {
    napi_value x;
    int64_t now = 0;
    napi_get_element(env, argv[4], i, &x);
    napi_get_value_int64(env, x, &now);
    napi_create_int32(env, nonce_add(c, (const uint8_t *)data + 16 * i, now), &x);
    napi_set_element(env, out, i, x);
  }
  relay_free(c);
  return out;
}

// relayAllowScript(allow: string[], portMin, portMax, extra: number[], addrs: Buffer[] (4 or 16 bytes), ports: number[]) -> number[] (1 allowed)
static napi_value js_allow_script (napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t pmin = 0, pmax = 0;
  uint32_t ne = 0, n = 0;
  if (argc < 6 || napi_get_value_int32(env, argv[1], &pmin) != napi_ok || napi_get_value_int32(env, argv[2], &pmax) != napi_ok ||
      napi_get_array_length(env, argv[3], &ne) != napi_ok || ne > 32 || napi_get_array_length(env, argv[4], &n) != napi_ok) {
    return throw_msg(env, "ERR_INVALID_ARG_TYPE", "relayAllowScript(allow, portMin, portMax, extra, addrs, ports)");
  }
  relay_cfg_t *c = calloc(1, sizeof *c);
  if (c == NULL) return throw_msg(env, "ENOMEM", "relayAllowScript");
  pthread_mutex_init(&c->mu, NULL);
  c->port_min = (uint16_t)pmin;
  c->port_max = (uint16_t)pmax;
  for (uint32_t i = 0; i < ne; i++) {
    napi_value x;
    int32_t port = 0;
    napi_get_element(env, argv[3], i, &x);
    napi_get_value_int32(env, x, &port);
    c->extra[c->n_extra++] = (uint16_t)port;
  }
  const char *err = read_allow(env, argv[0], c);
  if (err != NULL) { relay_free(c); return throw_msg(env, "ERR_INVALID_ARG_VALUE", err); }
  napi_create_array_with_length(env, n, &out);
  for (uint32_t i = 0; i < n; i++) {
    napi_value a, pv, x;
    void *d = NULL;
    size_t l = 0;
    int32_t port = 0;
    napi_get_element(env, argv[4], i, &a);
    napi_get_element(env, argv[5], i, &pv);
    napi_get_value_int32(env, pv, &port);
    int ok = 0;
    if (napi_get_buffer_info(env, a, &d, &l) == napi_ok && (l == 4 || l == 16)) ok = allow_check(c, l == 4 ? 4 : 6, d, (uint16_t)port);
    napi_create_int32(env, ok, &x);
    napi_set_element(env, out, i, x);
  }
  relay_free(c);
  return out;
}

// relayMacCheck(token: Buffer, auth: Buffer (46 bytes)) -> boolean
static napi_value js_mac_check (napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *tok = NULL, *auth = NULL;
  size_t tl = 0, al = 0;
  if (argc < 2 || napi_get_buffer_info(env, argv[0], &tok, &tl) != napi_ok || napi_get_buffer_info(env, argv[1], &auth, &al) != napi_ok ||
      tl < 1 || tl > 64 || al != RELAY_AUTH_LEN) {
    return throw_msg(env, "ERR_INVALID_ARG_TYPE", "relayMacCheck(token, auth)");
  }
  if (!crypto_ready()) return throw_msg(env, "ENOSYS", "relayMacCheck: no HMAC-SHA256 in this process");
  napi_get_boolean(env, mac_ok(tok, (int)tl, auth), &out);
  return out;
}

void relay_hooks_init (napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "relayNonceScript", NULL, js_nonce_script, NULL, NULL, NULL, napi_enumerable, NULL },
    { "relayAllowScript", NULL, js_allow_script, NULL, NULL, NULL, napi_enumerable, NULL },
    { "relayMacCheck", NULL, js_mac_check, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
