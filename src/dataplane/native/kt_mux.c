// Over 500 lines: one state machine (the decoder, the streams, their credit
// and the carrier's output) whose parts share every invariant; split, each
// file would need the others' internals.
// The relay's multiplexed carriers on the addon's lane (issue 12, [relay-path];
// docs/relay-protocol.md "Multiplexed streams").
//
// A host with `--relay-transport mux` (or `auto` at a high connection rate)
// opens few connections and many streams on each. On the JS relay every
// stream cost a Socket, a connect and per-frame JS on the Docker VM's one
// busy CPU, which made the relay's JS the bottleneck for new connections.
// Here a carrier (BIND command CMD_MUX, flags 0) stays on the worker that
// accepted it: frames are decoded from the carrier's socket straight into
// the node sockets, node bytes are read straight into the carrier's output
// buffer behind their frame header, and each carrier's output leaves in one
// send per epoll batch (mux_after_batch).
//
// The rules are mux-server.ts's and mux-link.ts's, held to them by the same
// end-to-end suites (test/relay/native/*, over this path) and by raw-frame
// tests run against both paths (test/relay/mux-frames.test.ts):
// - a header that cannot be this protocol's (stream id 0, an unknown type, a
//   length over 64 KiB or wrong for its type), or an OPEN for a stream that
//   is open, breaks the carrier: every stream on it is reset;
// - an OPEN is a TCP BIND (command 1, flags at most SOURCE | PROXY_V2, the
//   source when PROXY_V2, nothing after it): otherwise RST HEADER; at the
//   cap or closing, RST BUSY; not allowlisted, RST DENIED; a failed dial,
//   RST UNREACHABLE; past the connect deadline, RST TIMEOUT;
// - per stream and direction at most 256 KiB in flight; credit goes back in
//   WINDOW frames once 64 KiB were passed on, or all of it when a node socket
//   that was full drains; DATA after FIN, or over the window, and a WINDOW
//   over it, reset that stream (RST HEADER) and nothing else;
// - a FIN is forwarded as a FIN (shutdown once the stream's bytes are
//   written), an RST as a TCP reset of the node socket, a node's reset or
//   error as an RST; both FINs: a clean close.
//
// Refusals and failures of streams, and a broken carrier, reach JS as relay
// records (kinds 2 and 3; native-lane.ts) for its warnings, with the same
// texts as the JS relay's. A carrier is a lane pair (its s[0]), counted as
// one connection, its streams one each, under the relay's connection cap.

#include "kt_lane.h"

#define MUX_HDR 8
#define MUX_OPEN 1
#define MUX_DATA 2
#define MUX_FIN 3
#define MUX_RST 4
#define MUX_WINDOW 5
#define MUX_WIN (256 * 1024)       // mux-frame.ts MUX_WINDOW_BYTES
#define MUX_DATA_MAX (64 * 1024)   // MUX_DATA_MAX, and the largest payload accepted
#define MUX_GRANT_AT (MUX_WIN / 4) // mux-link.ts GRANT_AT
#define MUX_OUT_HIGH (256 * 1024)  // a carrier's unsent output past which its streams stop reading
#define MUX_KEEP 64                // bytes of an OPEN kept (a valid one has at most 40)
#define MUX_BUCKETS 256
#define MUX_RBUF (64 * 1024)
#define MUX_READS 16             // reads per carrier per turn, so one busy carrier cannot starve the worker

// protocol.ts Status
enum { ST_OK = 0, ST_HEADER = 2, ST_DENIED = 3, ST_UNREACHABLE = 4, ST_TIMEOUT = 5, ST_BUSY = 6 };
// Why a stream was refused or failed (a kind-2 record's F_ROUTE; native-lane.ts MUX_STREAM_WHY).
enum { WHY_OPEN = 0, WHY_DATA_AFTER_FIN, WHY_DATA_OVER, WHY_WINDOW_OVER, WHY_BUSY, WHY_DENIED, WHY_DIAL };
// Why a carrier broke (a kind-3 record's F_ROUTE).
enum { BROKE_HEADER = 1, BROKE_DUP_OPEN = 2 };

typedef struct mux_carrier mux_carrier_t;
typedef struct mux_stream mux_stream_t;

struct mux_stream {
  const kt_ops_t *ops;  // kt_obj_t: first (stream_ops)
  mux_carrier_t *c;
  uint32_t id;
  int fd;
  uint8_t dialing, gone, fin_recv, fin_sent, shut, readable, writable, rdhup, stalled, up_eof, flags, in_dial;
  uint8_t full;          // the node socket was full (EAGAIN): once pend drains, all credit owed goes back at once
  int64_t credit;        // node bytes this side may still send to the host
  uint32_t outstanding;  // host bytes received, not yet credited back
  uint32_t unacked;      // of those, written to the node
  uint64_t up, down;     // bytes written to the node, and read from it: into the listener's counters once, at its end
  uint8_t *pend;         // host bytes for the node not yet written (while dialing, or the node socket full)
  size_t pend_len, pend_off, pend_cap;
  size_t pend_own;       // of those, the first are the relay's own (a PROXY v2 header): neither counted nor credited
  int64_t deadline;
  uint8_t dst_fam, src_fam;
  uint8_t dst[16], src[16];
  uint16_t dst_port, src_port;
  mux_stream_t *hnext;         // the carrier's hash bucket
  mux_stream_t *prev, *next;   // the carrier's streams
  mux_stream_t *dprev, *dnext; // the engine's dialing list (deadline order)
  mux_stream_t *snext;         // the carrier's stall list (its output over MUX_OUT_HIGH)
  mux_stream_t *gnext;         // freed after the batch
};

struct mux_carrier {
  pair_t *p;
  lane_listener_t *L;
  // The decoder: the header being read, then the frame's payload.
  uint8_t hdr[MUX_HDR];
  uint8_t hlen, in_frame, type, dead, dirty;
  uint8_t oom;       // out of memory: the carrier ends after the batch (never from inside a frame's handling)
  uint8_t in_ready;  // its read budget ran out with bytes left: read again after the batch
  uint32_t id, len, left;
  uint8_t keep[MUX_KEEP];  // the OPEN, RST or WINDOW payload (its first MUX_KEEP bytes)
  uint32_t kept;
  mux_stream_t *cur;  // the stream of the DATA frame being read (NULL: dropped)
  // Output, sent once per batch.
  uint8_t *out;
  size_t out_len, out_off, out_cap;
  mux_stream_t *b[MUX_BUCKETS];
  mux_stream_t *head;
  mux_stream_t *stall_head, *stall_tail;
  mux_carrier_t *dnext;       // the engine's dirty list
  mux_carrier_t *rnext;       // the engine's ready list
  mux_carrier_t *prev, *next; // the engine's carriers
  mux_carrier_t *gnext;
  uint64_t opened, up, down;
};

typedef struct mux_engine {
  mux_carrier_t *carriers;
  mux_carrier_t *dirty;
  mux_carrier_t *ready;  // carriers whose read budget ran out (kt_engine.h lane_more)
  mux_stream_t *d_head, *d_tail;
  kt_timer_t dial_t;
  mux_stream_t *grave;
  mux_carrier_t *cgrave;
  uint8_t *rbuf;
} mux_engine_t;

static mux_engine_t *mux_of (engine_t *e) { return e->mux; }

static uint32_t be32 (const uint8_t *b) { return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3]; }

static void put_hdr (uint8_t *o, uint32_t id, int type, uint32_t len) {
  o[0] = (uint8_t)(id >> 24); o[1] = (uint8_t)(id >> 16); o[2] = (uint8_t)(id >> 8); o[3] = (uint8_t)id;
  o[4] = (uint8_t)type;
  o[5] = (uint8_t)(len >> 16); o[6] = (uint8_t)(len >> 8); o[7] = (uint8_t)len;
}

// ---------------------------------------------------------------- streams by id

static mux_stream_t **bucket (mux_carrier_t *c, uint32_t id) {
  return &c->b[(id * 0x9e3779b1u) >> 24];
}

static mux_stream_t *lookup (mux_carrier_t *c, uint32_t id) {
  for (mux_stream_t *s = *bucket(c, id); s != NULL; s = s->hnext) if (s->id == id) return s;
  return NULL;
}

// ---------------------------------------------------------------- output

static void mark_dirty (engine_t *e, mux_carrier_t *c) {
  if (c->dirty || c->dead) return;
  mux_engine_t *m = mux_of(e);
  c->dirty = 1;
  c->dnext = m->dirty;
  m->dirty = c;
}

// Room for `need` more bytes at out_len; -1 without memory.
static int reserve (mux_carrier_t *c, size_t need) {
  if (c->out_cap - c->out_len >= need) return 0;
  if (c->out_off > 0) {
    memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
    c->out_len -= c->out_off;
    c->out_off = 0;
    if (c->out_cap - c->out_len >= need) return 0;
  }
  size_t cap = c->out_cap == 0 ? 16 * 1024 : c->out_cap;
  while (cap - c->out_len < need) cap *= 2;
  uint8_t *n = realloc(c->out, cap);
  if (n == NULL) return -1;
  c->out = n;
  c->out_cap = cap;
  return 0;
}

static void carrier_end (engine_t *e, mux_carrier_t *c, int cause, int err, int reset);

// No memory for the carrier's output: it ends after the batch (mux_after_batch),
// never from inside the handling of a frame or a stream, which goes on with it.
static void out_of_memory (engine_t *e, mux_carrier_t *c) {
  c->oom = 1;
  mark_dirty(e, c);
}

// A control frame (FIN, RST, WINDOW): always queued, whatever the output holds.
static void frame (engine_t *e, mux_carrier_t *c, uint32_t id, int type, const uint8_t *payload, uint32_t len) {
  if (c->dead || c->oom) return;
  if (reserve(c, MUX_HDR + len) != 0) { out_of_memory(e, c); return; }
  put_hdr(c->out + c->out_len, id, type, len);
  if (len > 0) memcpy(c->out + c->out_len + MUX_HDR, payload, len);
  c->out_len += MUX_HDR + len;
  mark_dirty(e, c);
}

static void send_rst (engine_t *e, mux_carrier_t *c, uint32_t id, int status) {
  uint8_t s = (uint8_t)status;
  frame(e, c, id, MUX_RST, &s, 1);
}

// `n` host bytes were written to the node: credit back in batches, or all now with `force`.
static void grant (engine_t *e, mux_stream_t *st, uint32_t n, int force) {
  st->unacked += n;
  if (st->gone || st->unacked == 0 || (!force && st->unacked < MUX_GRANT_AT)) return;
  uint8_t w[4] = { (uint8_t)(st->unacked >> 24), (uint8_t)(st->unacked >> 16), (uint8_t)(st->unacked >> 8), (uint8_t)st->unacked };
  frame(e, st->c, st->id, MUX_WINDOW, w, 4);
  st->outstanding -= st->unacked;
  st->unacked = 0;
}

// ---------------------------------------------------------------- records for JS

// A stream refused or failed (kind 2): its status, why, the errno of a failed
// dial; then either the OPEN's bytes (a REC_NAME record: the count in
// F_BACKEND, the bytes from F_NAME_BYTES) or its destination and source.
static void stream_record (engine_t *e, mux_carrier_t *c, uint32_t id, int status, int why, int err, const mux_stream_t *st) {
  lane_conn_t *lc = c->p->lane;
  lane_listener_t *L = c->L;
  double r[2 * KT_REC] = { 0 };
  r[F_TYPE] = REC_RELAY;
  r[F_LISTENER] = L->id;
  r[F_BACKEND] = 2;
  r[F_OUTCOME] = status;
  r[F_ERR] = err;
  r[F_ATTEMPTS] = id;
  r[F_ROUTE] = why;
  r[F_MS] = (double)(e->now_ms - lc->start_ms);
  rec_client(r, &lc->client);
  double *a = r + KT_REC;
  a[F_LISTENER] = L->id;
  if (why == WHY_OPEN) {
    a[F_TYPE] = REC_NAME;
    a[F_BACKEND] = c->kept;
    r[F_BYTES_IN] = c->len;
    memcpy(a + F_NAME_BYTES, c->keep, c->kept);
  } else {
    a[F_TYPE] = REC_RELAY_ADDR;
    if (st != NULL && st->dst_fam != 0) relay_rec_addr(a + F_DST_FAMILY, st->dst_fam, st->dst, st->dst_port);
    if (st != NULL && st->src_fam != 0) relay_rec_addr(a + F_SRC_FAMILY, st->src_fam, st->src, st->src_port);
  }
  (void)ring_emit_n(e, L->lane, r, 2);
}

// A carrier broken by its peer (kind 3): why, and the header's fields.
static void broken_record (engine_t *e, mux_carrier_t *c, int why) {
  lane_conn_t *lc = c->p->lane;
  double r[KT_REC] = { 0 };
  r[F_TYPE] = REC_RELAY;
  r[F_LISTENER] = c->L->id;
  r[F_BACKEND] = 3;
  r[F_ROUTE] = why;
  r[F_ATTEMPTS] = c->id;
  r[F_ERR] = c->type;
  r[F_BYTES_IN] = c->len;
  r[F_MS] = (double)(e->now_ms - lc->start_ms);
  rec_client(r, &lc->client);
  (void)ring_emit(e, c->L->lane, r);
}

// ---------------------------------------------------------------- a stream's end

static void dial_unlink (mux_engine_t *m, mux_stream_t *st) {
  if (!st->in_dial) return;
  st->in_dial = 0;
  if (st->dprev != NULL) st->dprev->dnext = st->dnext; else m->d_head = st->dnext;
  if (st->dnext != NULL) st->dnext->dprev = st->dprev; else m->d_tail = st->dprev;
  st->dprev = st->dnext = NULL;
}

static void stall_unlink (mux_carrier_t *c, mux_stream_t *st) {
  if (!st->stalled) return;
  st->stalled = 0;
  mux_stream_t *prev = NULL;
  for (mux_stream_t *s = c->stall_head; s != NULL; prev = s, s = s->snext) {
    if (s != st) continue;
    if (prev != NULL) prev->snext = s->snext; else c->stall_head = s->snext;
    if (c->stall_tail == s) c->stall_tail = prev;
    break;
  }
  st->snext = NULL;
}

// Gone: off every list, its socket closed (reset first with `reset`), freed after the batch.
static void stream_close (engine_t *e, mux_stream_t *st, int reset) {
  if (st->gone) return;
  mux_carrier_t *c = st->c;
  mux_engine_t *m = mux_of(e);
  lane_listener_t *L = c->L;
  st->gone = 1;
  dial_unlink(m, st);
  stall_unlink(c, st);
  if (c->cur == st) c->cur = NULL;
  if (st->fd >= 0) {
    (void)epoll_ctl(e->ep, EPOLL_CTL_DEL, st->fd, NULL);
    if (reset && !st->dialing) kt_reset_fd(st->fd);
    close(st->fd);
    st->fd = -1;
  }
  for (mux_stream_t **pp = bucket(c, st->id); *pp != NULL; pp = &(*pp)->hnext) {
    if (*pp == st) { *pp = st->hnext; break; }
  }
  if (st->prev != NULL) st->prev->next = st->next; else c->head = st->next;
  if (st->next != NULL) st->next->prev = st->prev;
  free(st->pend);
  st->pend = NULL;
  st->gnext = m->grave;
  m->grave = st;
  // Its bytes, counted as a spliced pair's are (at its end), before the count
  // of active streams drops: once JS sees that drop, they are in.
  c->up += st->up;
  c->down += st->down;
  atomic_fetch_add(&L->bytes_in, st->up);
  atomic_fetch_add(&L->bytes_out, st->down);
  atomic_fetch_sub(&L->active, 1);
  atomic_fetch_sub(&L->lane->active_total, 1);
}

// The node reset the stream or failed: the host's client is reset too (an RST with status OK).
static void node_failed (engine_t *e, mux_stream_t *st) {
  send_rst(e, st->c, st->id, ST_OK);
  stream_close(e, st, 0);
}

// The peer broke the stream's rules: reset both ways, the carrier's other streams go on.
static void protocol_reset (engine_t *e, mux_stream_t *st, int why) {
  send_rst(e, st->c, st->id, ST_HEADER);
  stream_record(e, st->c, st->id, ST_HEADER, why, 0, st);
  stream_close(e, st, 1);
}

static void dial_failed (engine_t *e, mux_stream_t *st, int status, int err) {
  relay_cfg_t *cfg = st->c->L->relay;
  atomic_fetch_add(&cfg->st[status == ST_TIMEOUT ? RS_DIAL_TIMED_OUT : RS_DIAL_FAILED], 1);
  send_rst(e, st->c, st->id, status);
  stream_record(e, st->c, st->id, status, WHY_DIAL, err, st);
  stream_close(e, st, 0);
}

// Both FINs went their way and every byte was written: a clean end, no RST.
static void check_done (engine_t *e, mux_stream_t *st) {
  if (!st->gone && st->fin_sent && st->fin_recv && st->shut) stream_close(e, st, 0);
}

// ---------------------------------------------------------------- host -> node

// Hold n more bytes for the node, after those held (or before them, `front`:
// the PROXY v2 header at connect). Appends in place while there is room; the
// buffer grows by doubling, so bytes held while the node socket is full are
// copied once, not once per frame. -1 without memory.
static int pend_add (mux_stream_t *st, const uint8_t *b, size_t n, int front) {
  size_t have = st->pend_len - st->pend_off;
  if (!front && st->pend_cap - st->pend_len >= n) {
    memcpy(st->pend + st->pend_len, b, n);
    st->pend_len += n;
    return 0;
  }
  size_t at = front ? n : 0;  // where the bytes held go
  if (st->pend_cap < have + n) {
    size_t cap = st->pend_cap < 4096 ? 4096 : st->pend_cap;
    while (cap < have + n) cap *= 2;
    uint8_t *nb = malloc(cap);
    if (nb == NULL) return -1;
    if (have > 0) memcpy(nb + at, st->pend + st->pend_off, have);
    free(st->pend);
    st->pend = nb;
    st->pend_cap = cap;
  } else {
    memmove(st->pend + at, st->pend + st->pend_off, have);
  }
  memcpy(st->pend + (front ? 0 : have), b, n);
  st->pend_off = 0;
  st->pend_len = have + n;
  return 0;
}

// `n` host bytes reached the node socket: counted, and credited back (in batches).
static void passed_on (engine_t *e, mux_stream_t *st, size_t n) {
  st->up += n;
  grant(e, st, (uint32_t)n, 0);
}

// Write what waits for the node (as mux-server.ts deliver()). Once it is all
// out, a FIN received becomes a shutdown; and if the node socket was full,
// every credit owed goes back at once (its 'drain').
static void flush_pend (engine_t *e, mux_stream_t *st) {
  while (st->pend_len > st->pend_off) {
    if (!st->writable) return;
    ssize_t w = send(st->fd, st->pend + st->pend_off, st->pend_len - st->pend_off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) { st->writable = 0; st->full = 1; return; }
      node_failed(e, st);
      return;
    }
    st->pend_off += (size_t)w;
    size_t own = st->pend_own < (size_t)w ? st->pend_own : (size_t)w;
    st->pend_own -= own;
    passed_on(e, st, (size_t)w - own);
    if (st->gone) return;
  }
  free(st->pend);
  st->pend = NULL;
  st->pend_len = st->pend_off = st->pend_cap = 0;
  if (st->full) {
    st->full = 0;
    grant(e, st, 0, 1);
  }
  if (st->fin_recv && !st->shut && !st->dialing) {
    (void)shutdown(st->fd, SHUT_WR);
    st->shut = 1;
    check_done(e, st);
  }
}

// A piece of a DATA frame's payload.
static void data_piece (engine_t *e, mux_stream_t *st, const uint8_t *b, size_t n) {
  if (st->dialing || st->pend_len > st->pend_off || !st->writable) {
    if (pend_add(st, b, n, 0) != 0) node_failed(e, st);
    return;
  }
  size_t off = 0;
  int failed = 0;
  while (off < n) {
    ssize_t w = send(st->fd, b + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) { st->writable = 0; st->full = 1; break; }
      failed = 1;
      break;
    }
    off += (size_t)w;
  }
  if (off > 0) passed_on(e, st, off);
  if (st->gone) return;
  if (failed) { node_failed(e, st); return; }
  if (off < n && pend_add(st, b + off, n - off, 0) != 0) node_failed(e, st);
}

// ---------------------------------------------------------------- node -> host

static void stall (mux_carrier_t *c, mux_stream_t *st) {
  if (st->stalled) return;
  st->stalled = 1;
  st->snext = NULL;
  if (c->stall_tail != NULL) c->stall_tail->snext = st; else c->stall_head = st;
  c->stall_tail = st;
}

static void send_fin (engine_t *e, mux_stream_t *st) {
  if (st->fin_sent) return;
  st->fin_sent = 1;
  frame(e, st->c, st->id, MUX_FIN, NULL, 0);
}

// Read the node's bytes straight into the carrier's output, behind their
// header, while the stream has credit and the carrier room.
static void pump_down (engine_t *e, mux_stream_t *st) {
  mux_carrier_t *c = st->c;
  while (!st->gone && !c->dead && st->readable && !st->up_eof) {
    if (st->credit <= 0) {
      // A WINDOW frame resumes it. The node's FIN needs no credit: once the
      // node half-closed, an empty peek tells whether only the EOF is left.
      uint8_t x;
      if (!st->rdhup || recv(st->fd, &x, 1, MSG_PEEK | MSG_DONTWAIT) != 0) return;
      st->up_eof = 1;
      st->readable = 0;
      send_fin(e, st);
      check_done(e, st);
      return;
    }
    if (c->out_len - c->out_off >= MUX_OUT_HIGH) { stall(c, st); return; }
    size_t want = st->credit < MUX_DATA_MAX ? (size_t)st->credit : MUX_DATA_MAX;
    if (c->oom || reserve(c, MUX_HDR + want) != 0) { out_of_memory(e, c); return; }
    ssize_t r = recv(st->fd, c->out + c->out_len + MUX_HDR, want, MSG_DONTWAIT);
    if (r > 0) {
      put_hdr(c->out + c->out_len, st->id, MUX_DATA, (uint32_t)r);
      c->out_len += MUX_HDR + (size_t)r;
      st->credit -= r;
      st->down += (uint64_t)r;
      mark_dirty(e, c);
      if ((size_t)r < want && !st->rdhup) st->readable = 0;  // drained (edge-triggered: the next edge says more)
      continue;
    }
    if (r == 0) {
      st->up_eof = 1;
      st->readable = 0;
      send_fin(e, st);
      check_done(e, st);
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) { st->readable = 0; return; }
    node_failed(e, st);
    return;
  }
}

// ---------------------------------------------------------------- dialing

static void dial_timer (engine_t *e, kt_timer_t *t) {
  mux_engine_t *m = mux_of(e);
  int guard = 1024;
  while (m->d_head != NULL && m->d_head->deadline <= e->now_ms && guard-- > 0) {
    dial_failed(e, m->d_head, ST_TIMEOUT, KT_ERR_CONNECT_TIMEOUT);
  }
  if (m->d_head != NULL) kt_timer_arm_before(&e->timers, t, m->d_head->deadline);
}

// A PROXY protocol v2 header (protocol.ts proxyV2Header): mixed families as IPv6, the IPv4 one mapped.
static size_t proxy_v2 (uint8_t *o, const mux_stream_t *st) {
  static const uint8_t sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };
  uint8_t s[16] = { 0 }, d[16] = { 0 };
  size_t al = st->src_fam == 4 && st->dst_fam == 4 ? 4 : 16;
  if (al == 4) {
    memcpy(s, st->src, 4);
    memcpy(d, st->dst, 4);
  } else {
    if (st->src_fam == 4) { s[10] = s[11] = 0xff; memcpy(s + 12, st->src, 4); } else memcpy(s, st->src, 16);
    if (st->dst_fam == 4) { d[10] = d[11] = 0xff; memcpy(d + 12, st->dst, 4); } else memcpy(d, st->dst, 16);
  }
  size_t body = 2 * al + 4;
  memcpy(o, sig, 12);
  o[12] = 0x21;  // version 2, PROXY
  o[13] = al == 16 ? 0x21 : 0x11;  // AF_INET6 or AF_INET, STREAM
  o[14] = (uint8_t)(body >> 8);
  o[15] = (uint8_t)body;
  memcpy(o + 16, s, al);
  memcpy(o + 16 + al, d, al);
  uint8_t *pp = o + 16 + 2 * al;
  pp[0] = (uint8_t)(st->src_port >> 8); pp[1] = (uint8_t)st->src_port;
  pp[2] = (uint8_t)(st->dst_port >> 8); pp[3] = (uint8_t)st->dst_port;
  return 16 + body;
}

static void connected (engine_t *e, mux_stream_t *st) {
  dial_unlink(mux_of(e), st);
  st->dialing = 0;
  st->readable = 1;
  st->writable = 1;
  atomic_fetch_add(&st->c->L->relay->st[RS_SPLICED], 1);
  if (st->flags & 2) {
    uint8_t h[16 + 36];
    size_t n = proxy_v2(h, st);
    if (pend_add(st, h, n, 1) != 0) { node_failed(e, st); return; }
    st->pend_own = n;
  }
  flush_pend(e, st);
  if (!st->gone) pump_down(e, st);
}

static void stream_event (engine_t *e, void *obj, uint32_t events) {
  mux_stream_t *st = obj;
  if (st->gone) return;
  if (st->dialing) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(st->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err == 0 && (events & (EPOLLERR | EPOLLHUP))) err = ECONNREFUSED;
    if (err == 0 && !(events & EPOLLOUT)) return;
    if (err != 0) { dial_failed(e, st, ST_UNREACHABLE, err); return; }
    if (events & (EPOLLRDHUP | EPOLLHUP)) st->rdhup = 1;
    connected(e, st);
    return;
  }
  if (events & EPOLLERR) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(st->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) { node_failed(e, st); return; }
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) st->readable = 1;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) st->rdhup = 1;
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) st->writable = 1;
  if (st->writable && st->pend_len > st->pend_off) flush_pend(e, st);
  if (!st->gone && st->readable) pump_down(e, st);
}

static const kt_ops_t stream_ops = { "mux-stream", stream_event };

// mux-frame.ts parseOpen: a TCP BIND (command 1), flags at most SOURCE | PROXY_V2, nothing after it.
static int open_parse (const mux_carrier_t *c, mux_stream_t *t) {
  const uint8_t *b = c->keep;
  size_t n = c->kept;
  if (c->len != c->kept || n < 2 || b[0] != 1) return -1;
  uint8_t flags = b[1];
  if ((flags & ~3) != 0 || ((flags & 2) && !(flags & 1))) return -1;
  // The whole OPEN is here: an address cut short is as malformed as an unknown family.
  int u = relay_bind_addr(b, n, 2, &t->dst_fam, t->dst, &t->dst_port);
  if (u <= 0 || t->dst_port == 0) return -1;
  size_t at = 2 + (size_t)u;
  if (flags & 1) {
    u = relay_bind_addr(b, n, at, &t->src_fam, t->src, &t->src_port);
    if (u <= 0) return -1;
    at += (size_t)u;
  }
  if (at != n) return -1;
  t->flags = flags;
  return 0;
}

static void carrier_broken (engine_t *e, mux_carrier_t *c, int why) {
  broken_record(e, c, why);
  carrier_end(e, c, C_ERROR, 0, 0);
}

static void on_open (engine_t *e, mux_carrier_t *c) {
  lane_listener_t *L = c->L;
  relay_cfg_t *cfg = L->relay;
  lane_t *ln = L->lane;
  if (lookup(c, c->id) != NULL) { carrier_broken(e, c, BROKE_DUP_OPEN); return; }
  mux_stream_t t;
  memset(&t, 0, sizeof t);
  if (open_parse(c, &t) != 0) {
    atomic_fetch_add(&cfg->st[RS_REFUSED_HEADER], 1);
    send_rst(e, c, c->id, ST_HEADER);
    stream_record(e, c, c->id, ST_HEADER, WHY_OPEN, 0, NULL);
    return;
  }
  // A place under both caps is taken before the check, as accept_one takes
  // one (kt_lane.c): two workers at the cap's edge cannot both get in.
  int over = atomic_load(&cfg->quiet) || atomic_load(&L->stopped);
  if (!over && atomic_fetch_add(&ln->active_total, 1) >= atomic_load(&ln->cap_total)) { atomic_fetch_sub(&ln->active_total, 1); over = 1; }
  else if (!over && atomic_fetch_add(&L->active, 1) >= atomic_load(&L->max_conns)) { atomic_fetch_sub(&L->active, 1); atomic_fetch_sub(&ln->active_total, 1); over = 1; }
  if (over) {
    atomic_fetch_add(&cfg->st[RS_REFUSED_BUSY], 1);
    send_rst(e, c, c->id, ST_BUSY);
    stream_record(e, c, c->id, ST_BUSY, WHY_BUSY, 0, &t);
    return;
  }
  if (!allow_check(cfg, t.dst_fam, t.dst, t.dst_port)) {
    atomic_fetch_sub(&L->active, 1);
    atomic_fetch_sub(&ln->active_total, 1);
    atomic_fetch_add(&cfg->st[RS_REFUSED_DENIED], 1);
    send_rst(e, c, c->id, ST_DENIED);
    stream_record(e, c, c->id, ST_DENIED, WHY_DENIED, 0, &t);
    return;
  }
  mux_stream_t *st = malloc(sizeof *st);
  if (st == NULL) {
    atomic_fetch_sub(&L->active, 1);
    atomic_fetch_sub(&ln->active_total, 1);
    atomic_fetch_add(&cfg->st[RS_REFUSED_BUSY], 1);
    send_rst(e, c, c->id, ST_BUSY);
    stream_record(e, c, c->id, ST_BUSY, WHY_BUSY, ENOMEM, &t);
    return;
  }
  *st = t;
  st->ops = &stream_ops;
  st->c = c;
  st->id = c->id;
  st->fd = -1;
  st->credit = MUX_WIN;
  st->dialing = 1;
  mux_stream_t **bk = bucket(c, st->id);
  st->hnext = *bk;
  *bk = st;
  st->next = c->head;
  if (c->head != NULL) c->head->prev = st;
  c->head = st;
  c->opened++;
  atomic_fetch_add(&cfg->st[RS_DIALED], 1);
  struct sockaddr_storage ss;
  socklen_t sl = relay_sockaddr(&ss, st->dst_fam, st->dst, st->dst_port);
  int s = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) { dial_failed(e, st, ST_UNREACHABLE, errno); return; }
  st->fd = s;
  int one = 1;
  (void)setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  relay_keepalive(s);
  int r = connect(s, (struct sockaddr *)&ss, sl);
  int err = r == 0 ? 0 : errno;
  if (r != 0 && err != EINPROGRESS) { dial_failed(e, st, ST_UNREACHABLE, err); return; }
  // A node on the relay's own bridge is usually connected by now: its DATA
  // (often in this same read) is sent at once instead of after an epoll turn.
  if (r != 0 && kt_established_now(s)) r = 0;
  struct epoll_event ev;
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = st;
  if (epoll_ctl(e->ep, EPOLL_CTL_ADD, s, &ev) < 0) { dial_failed(e, st, ST_UNREACHABLE, errno); return; }
  if (r == 0) { connected(e, st); return; }
  // In deadline order (carriers of different listeners may have different deadlines): from the tail, usually at once.
  mux_engine_t *m = mux_of(e);
  int ms = atomic_load(&L->connect_ms);
  st->deadline = ms > 0 ? e->now_ms + ms : INT64_MAX;
  mux_stream_t *after = m->d_tail;
  while (after != NULL && after->deadline > st->deadline) after = after->dprev;
  st->dprev = after;
  st->dnext = after != NULL ? after->dnext : m->d_head;
  if (st->dnext != NULL) st->dnext->dprev = st; else m->d_tail = st;
  if (after != NULL) after->dnext = st; else m->d_head = st;
  st->in_dial = 1;
  if (st->deadline != INT64_MAX) kt_timer_arm_before(&e->timers, &m->dial_t, m->d_head->deadline);
}

// ---------------------------------------------------------------- the carrier's frames

// mux-frame.ts checkHeader: 0 when the header can be this protocol's.
static int header_ok (uint32_t id, int type, uint32_t len) {
  if (id == 0) return 0;
  switch (type) {
    case MUX_OPEN: case MUX_DATA: return len <= MUX_DATA_MAX;
    case MUX_FIN: return len == 0;
    case MUX_RST: return len == 1;
    case MUX_WINDOW: return len == 4;
    default: return 0;
  }
}

// A DATA frame's header: its stream, or NULL to drop its payload.
static mux_stream_t *data_begin (engine_t *e, mux_carrier_t *c) {
  mux_stream_t *st = lookup(c, c->id);
  // Frames for a stream already reset or finished cross its RST in flight: dropped.
  if (st == NULL || st->gone) return NULL;
  if (st->fin_recv) { protocol_reset(e, st, WHY_DATA_AFTER_FIN); return NULL; }
  if ((uint64_t)st->outstanding + c->len > MUX_WIN) { protocol_reset(e, st, WHY_DATA_OVER); return NULL; }
  st->outstanding += c->len;
  return st;
}

static void frame_done (engine_t *e, mux_carrier_t *c) {
  c->in_frame = 0;
  if (c->type == MUX_DATA) { c->cur = NULL; return; }
  if (c->type == MUX_OPEN) { on_open(e, c); return; }
  mux_stream_t *st = lookup(c, c->id);
  if (st == NULL || st->gone) return;
  switch (c->type) {
    case MUX_FIN:
      if (st->fin_recv) return;
      st->fin_recv = 1;
      if (!st->dialing && st->pend_len == st->pend_off) {
        (void)shutdown(st->fd, SHUT_WR);
        st->shut = 1;
        check_done(e, st);
      }
      return;
    case MUX_RST:
      stream_close(e, st, 1);
      return;
    case MUX_WINDOW:
      st->credit += be32(c->keep);
      if (st->credit > MUX_WIN) { protocol_reset(e, st, WHY_WINDOW_OVER); return; }
      if (!st->dialing && st->readable) pump_down(e, st);
      return;
  }
}

static void parse (engine_t *e, mux_carrier_t *c, const uint8_t *b, size_t n) {
  size_t at = 0;
  while (at < n && !c->dead) {
    if (!c->in_frame) {
      size_t room = (size_t)(MUX_HDR - c->hlen);
      size_t take = room < n - at ? room : n - at;
      memcpy(c->hdr + c->hlen, b + at, take);
      c->hlen = (uint8_t)(c->hlen + take);
      at += take;
      if (c->hlen < MUX_HDR) return;
      c->hlen = 0;
      c->id = be32(c->hdr);
      c->type = c->hdr[4];
      c->len = be32(c->hdr + 4) & 0xffffff;
      if (!header_ok(c->id, c->type, c->len)) { carrier_broken(e, c, BROKE_HEADER); return; }
      c->in_frame = 1;
      c->left = c->len;
      c->kept = 0;
      if (c->type == MUX_DATA) c->cur = data_begin(e, c);
      if (c->dead) return;
      if (c->left == 0) { frame_done(e, c); continue; }
    }
    size_t take = c->left < n - at ? c->left : n - at;
    if (c->type == MUX_DATA) {
      if (c->cur != NULL) data_piece(e, c->cur, b + at, take);
    } else if (c->kept < MUX_KEEP) {
      size_t k = MUX_KEEP - c->kept < take ? MUX_KEEP - c->kept : take;
      memcpy(c->keep + c->kept, b + at, k);
      c->kept += (uint32_t)k;
    }
    c->left -= (uint32_t)take;
    at += take;
    if (c->left == 0) frame_done(e, c);
  }
}

// ---------------------------------------------------------------- the carrier

static void resume_stalled (engine_t *e, mux_carrier_t *c) {
  while (c->stall_head != NULL && !c->dead && c->out_len - c->out_off < MUX_OUT_HIGH) {
    mux_stream_t *st = c->stall_head;
    c->stall_head = st->snext;
    if (c->stall_head == NULL) c->stall_tail = NULL;
    st->snext = NULL;
    st->stalled = 0;
    pump_down(e, st);
  }
}

// Send the carrier's output; then, with room again, let stalled streams read.
static void carrier_out (engine_t *e, mux_carrier_t *c) {
  side_t *s = &c->p->s[0];
  for (;;) {
    if (c->dead || c->oom) return;
    while (c->out_off < c->out_len) {
      if (!s->writable) return;
      ssize_t w = send(s->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) { s->writable = 0; break; }
        int err = errno;
        carrier_end(e, c, err == ECONNRESET || err == EPIPE ? C_RESET_A : C_ERROR, err, 1);
        return;
      }
      c->out_off += (size_t)w;
    }
    if (c->out_off == c->out_len) {
      c->out_off = c->out_len = 0;
      if (c->out_cap > 4 * MUX_OUT_HIGH) { free(c->out); c->out = NULL; c->out_cap = 0; }
    }
    if (c->dead || c->stall_head == NULL || c->out_len - c->out_off >= MUX_OUT_HIGH) return;
    size_t before = c->out_len - c->out_off;
    resume_stalled(e, c);
    if (c->out_len - c->out_off == before || !s->writable) return;
  }
}

static void carrier_read (engine_t *e, mux_carrier_t *c) {
  side_t *s = &c->p->s[0];
  mux_engine_t *m = mux_of(e);
  uint8_t *buf = m->rbuf;
  int budget = MUX_READS;
  while (!c->dead && s->readable) {
    if (budget-- == 0) {
      // More to read: after the batch, and the worker polls without waiting meanwhile.
      if (!c->in_ready) { c->in_ready = 1; c->rnext = m->ready; m->ready = c; }
      return;
    }
    ssize_t n = recv(s->fd, buf, MUX_RBUF, MSG_DONTWAIT);
    if (n > 0) {
      parse(e, c, buf, (size_t)n);
      continue;
    }
    if (n == 0) {
      // The host closed the carrier: its streams are gone with it. What is
      // queued for it goes out first, if it can at once (as mux-server.ts end()).
      if (c->out_len > c->out_off) (void)send(s->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
      carrier_end(e, c, C_EOF, 0, 0);
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) { s->readable = 0; return; }
    int err = errno;
    carrier_end(e, c, err == ECONNRESET ? C_RESET_A : C_ERROR, err, 1);
    return;
  }
}

static void carrier_event (engine_t *e, void *obj, uint32_t events) {
  side_t *s = obj;
  pair_t *p = s->p;
  if (p->dead) return;
  mux_carrier_t *c = p->lane->mux;
  if (events & EPOLLERR) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
      carrier_end(e, c, err == ECONNRESET ? C_RESET_A : C_ERROR, err, 1);
      return;
    }
  }
  kt_note_events(s, events);
  if (s->writable && (c->out_len > c->out_off || c->stall_head != NULL)) carrier_out(e, c);
  if (!c->dead && s->readable) carrier_read(e, c);
}

static const kt_ops_t carrier_ops = { "mux-carrier", carrier_event };

static void carrier_end (engine_t *e, mux_carrier_t *c, int cause, int err, int reset) {
  if (c->dead) return;
  kt_finish(e, c->p, cause, err, reset);  // relay_finished -> mux_finished
}

// ---------------------------------------------------------------- the lane's hooks

static mux_engine_t *engine_mux (engine_t *e) {
  if (e->mux == NULL) {
    mux_engine_t *m = calloc(1, sizeof *m);
    if (m == NULL) return NULL;
    m->rbuf = malloc(MUX_RBUF);
    if (m->rbuf == NULL) { free(m); return NULL; }
    kt_timer_init(&m->dial_t, "mux-dial", dial_timer, NULL);
    e->mux = m;
  }
  return e->mux;
}

int mux_start (engine_t *e, pair_t *p) {
  mux_engine_t *m = engine_mux(e);
  if (m == NULL) return -1;
  mux_carrier_t *c = calloc(1, sizeof *c);
  if (c == NULL) return -1;
  c->p = p;
  c->L = p->lane->listener;
  c->next = m->carriers;
  if (m->carriers != NULL) m->carriers->prev = c;
  m->carriers = c;
  p->lane->mux = c;
  p->s[0].ops = &carrier_ops;  // registered since relay_start, for every event
  p->s[0].readable = 1;
  p->s[0].writable = 1;
  carrier_read(e, c);  // the first frames may have come with the command
  return 0;
}

void mux_finished (engine_t *e, pair_t *p, double *stats) {
  mux_carrier_t *c = p->lane->mux;
  if (c == NULL) return;
  mux_engine_t *m = mux_of(e);
  c->dead = 1;
  if (c->in_ready) {  // off the ready list: it is freed after this batch
    for (mux_carrier_t **pp = &m->ready; *pp != NULL; pp = &(*pp)->rnext) {
      if (*pp == c) { *pp = c->rnext; break; }
    }
    c->in_ready = 0;
  }
  for (mux_stream_t *s = c->stall_head; s != NULL; s = s->snext) s->stalled = 0;
  c->stall_head = c->stall_tail = NULL;
  // Every stream is reset (mux-server.ts onLost): a node reset, a dialing socket closed.
  while (c->head != NULL) stream_close(e, c->head, 1);
  stats[0] = (double)c->opened;
  stats[1] = (double)c->up;
  stats[2] = (double)c->down;
  if (c->prev != NULL) c->prev->next = c->next; else m->carriers = c->next;
  if (c->next != NULL) c->next->prev = c->prev;
  free(c->out);
  c->out = NULL;
  c->out_len = c->out_off = c->out_cap = 0;
  c->gnext = m->cgrave;
  m->cgrave = c;
  p->lane->mux = NULL;
}

void mux_abort_listener (engine_t *e, lane_listener_t *L) {
  mux_engine_t *m = e->mux;
  if (m == NULL) return;
  mux_carrier_t *c = m->carriers;
  while (c != NULL) {
    mux_carrier_t *nx = c->next;
    if (c->L == L) carrier_end(e, c, C_ABORTED, 0, 1);
    c = nx;
  }
}

static void free_graves (mux_engine_t *m) {
  while (m->grave != NULL) { mux_stream_t *nx = m->grave->gnext; free(m->grave); m->grave = nx; }
  while (m->cgrave != NULL) { mux_carrier_t *nx = m->cgrave->gnext; free(m->cgrave); m->cgrave = nx; }
}

void mux_after_batch (engine_t *e) {
  mux_engine_t *m = e->mux;
  if (m == NULL) return;
  // Carriers whose read budget ran out read on, MUX_READS each, once per turn.
  mux_carrier_t *r = m->ready;
  m->ready = NULL;
  while (r != NULL) {
    mux_carrier_t *nx = r->rnext;
    r->in_ready = 0;
    if (!r->dead) carrier_read(e, r);
    r = nx;
  }
  while (m->dirty != NULL) {
    mux_carrier_t *c = m->dirty;
    m->dirty = c->dnext;
    c->dirty = 0;
    if (c->dead) continue;
    if (c->oom) carrier_end(e, c, C_ERROR, ENOMEM, 1);
    else carrier_out(e, c);
  }
  e->lane_more = m->ready != NULL;
  free_graves(m);
}

void mux_stop (engine_t *e) {
  mux_engine_t *m = e->mux;
  if (m == NULL) return;
  while (m->carriers != NULL) {
    mux_carrier_t *c = m->carriers;
    carrier_end(e, c, C_ABORTED, 0, 1);
    if (m->carriers == c) break;  // cannot happen: mux_finished unlinks it
  }
  kt_timer_cancel(&e->timers, &m->dial_t);
  free_graves(m);
  free(m->rbuf);
  free(m);
  e->mux = NULL;
}
