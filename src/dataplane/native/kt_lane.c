// Over 500 lines: a connection's whole L4 life on the worker (accept, caps,
// pick, connect and retry, the lane's commands and end), which shares the
// listener refcounting and the connecting list; routed peeking is kt_route.c.
// kind-tunnel native accept+connect lane (issue #8 target 3).
//
// perf-anchors.md: new connections/s topped out at ~0.70x docker-proxy while JS
// accepted and connected every connection (~350 us of JS each). Here the splice
// engine's worker threads also accept (a shared listening socket registered in
// every worker's epoll set with EPOLLEXCLUSIVE, so one wakes per connection),
// pick a backend from a list JS pushes, connect without blocking, and start the
// splice on the same thread. JS keeps the control plane: it binds the listener,
// pushes backends, caps and timeouts, and reads counters and batched events
// (connect failures for passive health, close records for the access log).
//
// Why one shared socket rather than one SO_REUSEPORT socket per worker: JS binds
// the listener first (errors and the `listening` line stay exactly as on the JS
// path) without SO_REUSEPORT (Node 20 cannot set it), so more sockets cannot join
// its port; EPOLLEXCLUSIVE gives the same one-wakeup-per-connection behaviour.

#include "kt_engine.h"
#include "kt_peek.h"
#include "kt_lane.h"

// ---------------------------------------------------------------- helpers

void listener_ref (lane_listener_t *L) { atomic_fetch_add(&L->refs, 1); }

void acls_free (acl_t *v, int n) {
  for (int i = 0; i < n; i++) free(v[i].v);
  free(v);
}

void listener_unref (lane_listener_t *L) {
  if (atomic_fetch_sub(&L->refs, 1) != 1) return;
  if (L->fd >= 0) close(L->fd);
  for (int i = 0; i < L->n_groups; i++) free(L->groups[i].backends);
  free(L->groups);
  kt_routes_free(&L->routes);
  acls_free(L->acls, L->n_acls);
  relay_free(L->relay);
  pthread_mutex_destroy(&L->mu);
  free(L);
}

// Events for JS go into one buffer, handed over whole by the threadsafe
// function: one call per batch, however many records it holds, so the cost
// per connection is a memcpy of 128 bytes, not a JS call.

// The client's address in IPv6 form (IPv4 as ::ffff:a, see cidr_t).
static void client_v6 (const struct sockaddr_storage *ss, uint8_t out[16]) {
  if (ss->ss_family == AF_INET) {
    memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    memcpy(out + 12, &((const struct sockaddr_in *)(const void *)ss)->sin_addr, 4);
  } else {
    memcpy(out, &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr, 16);
  }
}

static int cidr_has (const cidr_t *c, const uint8_t a[16]) {
  int full = c->bits / 8, rest = c->bits % 8;
  if (memcmp(c->a, a, (size_t)full) != 0) return 0;
  if (rest == 0) return 1;
  uint8_t mask = (uint8_t)(0xff00u >> rest);
  return (a[full] & mask) == c->a[full];
}

int acl_set_has (const acl_t *s, const uint8_t a[16]) {
  for (int k = 0; k < s->n; k++) if (cidr_has(&s->v[k], a)) return 1;
  return 0;
}

// Whether set i admits the client (i < 0: no set, everyone). Called with L->mu held.
int acl_allows (const lane_listener_t *L, int i, const struct sockaddr_storage *ss) {
  if (i < 0) return 1;
  if (i >= L->n_acls) return 0;  // cannot happen (setRoutes checks); refuse rather than admit
  uint8_t a[16];
  client_v6(ss, a);
  return acl_set_has(&L->acls[i], a);
}

static int64_t mono_ns (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// A connect that completed: its latency into the backend's buckets (upstream.ts
// observes the same for JS dials into kt_upstream_connect_duration_seconds).
static void hist_observe (lane_t *ln, int32_t id, int64_t ns) {
  conn_hist_t *h = ln->hist != NULL && id >= 0 ? ln->hist[KT_SLOT(id)] : NULL;
  if (h == NULL) return;
  if (ns < 0) ns = 0;
  int i = 0;
  while (i < ln->hist_n && (uint64_t)ns > ln->hist_bound_ns[i]) i++;
  atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)ns, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->b[i], 1, memory_order_relaxed);
}

static void rec_connect (engine_t *e, lane_t *ln, lane_listener_t *L, int type, int32_t backend, int err) {
  double r[KT_REC] = { 0 };
  r[F_TYPE] = type;
  r[F_LISTENER] = L->id;
  r[F_BACKEND] = backend;
  r[F_ERR] = err;
  ring_emit(e, ln, r);
}

void rec_client (double *r, const struct sockaddr_storage *ss) {
  uint8_t a[16] = { 0 };
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *s4 = (const void *)ss;
    r[F_CLIENT_PORT] = ntohs(s4->sin_port);
    r[F_CLIENT_FAMILY] = 4;
    memcpy(a, &s4->sin_addr, 4);
  } else {
    const struct sockaddr_in6 *s6 = (const void *)ss;
    r[F_CLIENT_PORT] = ntohs(s6->sin6_port);
    r[F_CLIENT_FAMILY] = 6;
    memcpy(a, &s6->sin6_addr, 16);
  }
  for (int i = 0; i < 4; i++) r[F_CLIENT_W0 + i] = ((uint32_t)a[4 * i] << 24) | ((uint32_t)a[4 * i + 1] << 16) | ((uint32_t)a[4 * i + 2] << 8) | a[4 * i + 3];
}



static void c_unlink (lane_engine_t *le, pair_t *p) {
  lane_conn_t *lc = p->lane;
  if (lc->cprev != NULL) lc->cprev->lane->cnext = lc->cnext;
  else if (le->c_head == p) le->c_head = lc->cnext;
  if (lc->cnext != NULL) lc->cnext->lane->cprev = lc->cprev;
  else if (le->c_tail == p) le->c_tail = lc->cprev;
  lc->cprev = lc->cnext = NULL;
}

// A connect timeout is the same for every pair of a listener, so appending
// keeps the list in deadline order (nearly: listeners may differ). The timer
// is armed for the new pair's deadline unless already due earlier; a pair
// leaving the list early leaves it alone (it fires, finds nothing, re-arms).
static void c_append (engine_t *e, pair_t *p) {
  lane_engine_t *le = e->lane;
  lane_conn_t *lc = p->lane;
  if (lc->deadline_ms != INT64_MAX) kt_timer_arm_before(&e->timers, &le->connect_t, lc->deadline_ms);
  lc->cnext = NULL;
  lc->cprev = le->c_tail;
  if (le->c_tail != NULL) le->c_tail->lane->cnext = p;
  else le->c_head = p;
  le->c_tail = p;
}

// Round-robin or least-connections over the backends JS pushed for the
// connection's upstream group (already only those in rotation), skipping the
// ones this connection tried.
static int pick (lane_t *ln, lane_listener_t *L, lane_conn_t *lc, backend_t *out) {
  int found = 0;
  pthread_mutex_lock(&L->mu);
  group_t *g = lc->group >= 0 && lc->group < L->n_groups ? &L->groups[lc->group] : NULL;
  int n = g != NULL ? g->n : 0;
  int best = -1, best_active = 0;
  for (int k = 0; k < n; k++) {
    uint32_t idx = (g->cursor + (uint32_t)k) % (uint32_t)n;
    backend_t *b = &g->backends[idx];
    int skip = 0;
    for (int t = 0; t < lc->attempts && t < 4; t++) if (lc->tried[t] == b->id) skip = 1;
    if (skip) continue;
    if (L->policy == 0) { best = (int)idx; break; }
    int a = atomic_load(&ln->backend_active[KT_SLOT(b->id)]);
    if (best < 0 || a < best_active) { best = (int)idx; best_active = a; }
  }
  if (best >= 0) {
    *out = g->backends[best];
    g->cursor = L->policy == 0 ? (uint32_t)best + 1 : g->cursor + 1;
    found = 1;
    // Taken under the lock JS swaps the lists under: once setBackends returned
    // without this id, no new reference to it can appear.
    atomic_fetch_add(&ln->backend_refs[KT_SLOT(out->id)], 1);
    lc->holds = 1;
  }
  pthread_mutex_unlock(&L->mu);
  return found;
}

// The pair is done with its backend (a failed attempt, or the end): after
// every record about it was emitted, so JS sees them before the slot frees.
static void let_go (lane_t *ln, lane_conn_t *lc) {
  if (!lc->holds) return;
  lc->holds = 0;
  atomic_fetch_sub(&ln->backend_refs[KT_SLOT(lc->backend)], 1);
}

static void on_connected (engine_t *e, pair_t *p) {
  lane_conn_t *lc = p->lane;
  lane_t *ln = ((lane_engine_t *)e->lane)->lane;
  hist_observe(ln, lc->backend, mono_ns() - lc->connect_ns);
  if (lc->backend >= 0) {
    lc->acquired = 1;
    atomic_fetch_add(&ln->backend_active[KT_SLOT(lc->backend)], 1);
    // Passive health counts consecutive failures: only a success after a failure changes it.
    if (atomic_exchange(&ln->backend_failed[KT_SLOT(lc->backend)], 0)) rec_connect(e, ln, lc->listener, REC_CONNECT_OK, lc->backend, 0);
  } else {
    atomic_fetch_add(&((lane_listener_t *)lc->listener)->relay->st[RS_SPLICED], 1);  // a relay's dial (backend -1)
  }
  p->s[1].readable = 1;
  p->s[1].writable = 1;
  kt_start_pair(e, p);  // registers the client, pumps whatever it already sent
}

static void give_up (engine_t *e, pair_t *p) {
  p->lane->failed = 1;
  kt_finish(e, p, C_ERROR, 0, 1);  // resets the client: it must see the failure (as the JS path does)
}

// Try the next backend: retry only the connect, only before any byte moved
// (no client byte was read yet), at most `attempts` in all (HAProxy retries +
// redispatch, anchors.md).
static void connect_event (engine_t *e, void *obj, uint32_t events);
static const kt_ops_t connect_ops = { "connect", connect_event };

void lane_connect_next (engine_t *e, pair_t *p) {
  lane_conn_t *lc = p->lane;
  lane_listener_t *L = lc->listener;
  lane_t *ln = ((lane_engine_t *)e->lane)->lane;
  int max = atomic_load(&L->attempts);
  while (lc->attempts < max) {
    backend_t b;
    // A relay connection dials the one destination its BIND named; others pick from their group.
    if (lc->relay != NULL ? !relay_target(lc, &b) : !pick(ln, L, lc, &b)) {
      if (lc->attempts == 0) rec_connect(e, ln, L, REC_CONNECT_ERR, -1, KT_ERR_NO_BACKEND);
      break;
    }
    if (lc->attempts < 4) lc->tried[lc->attempts] = b.id;
    lc->attempts++;
    lc->backend = b.id;
    int s = socket(b.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) {
      // EMFILE/ENFILE: counted as this backend's connect error (as the JS path), not its health.
      lc->conn_err = errno;
      rec_connect(e, ln, L, REC_CONNECT_ERR, b.id, errno);
      let_go(ln, lc);
      continue;
    }
    int one = 1;
    (void)setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (lc->relay != NULL) relay_keepalive(s);
    // From connect() to connected, as upstream.ts times a JS dial (which includes the socket setup too).
    lc->connect_ns = mono_ns();
    // Established at once (a local bridge or loopback: kt_established_now): spliced now, not after an epoll turn.
    int r = connect(s, (struct sockaddr *)&b.addr, b.len);
    int err = r == 0 ? 0 : errno;
    if (r == 0 || (err == EINPROGRESS && kt_established_now(s))) {
      p->s[1].fd = s;
      on_connected(e, p);
      return;
    }
    if (err != EINPROGRESS) {
      close(s);
      lc->conn_err = err;
      if (b.id >= 0) atomic_store(&ln->backend_failed[KT_SLOT(b.id)], 1);
      rec_connect(e, ln, L, REC_CONNECT_ERR, b.id, err);
      let_go(ln, lc);
      continue;
    }
    struct epoll_event ev;
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = &p->s[1];
    p->s[1].ops = &connect_ops;
    if (epoll_ctl(e->ep, EPOLL_CTL_ADD, s, &ev) < 0) {
      close(s);
      lc->conn_err = errno;
      rec_connect(e, ln, L, REC_CONNECT_ERR, b.id, errno);
      let_go(ln, lc);
      continue;
    }
    p->s[1].fd = s;
    p->registered |= 2;
    lc->connecting = 1;
    int ms = atomic_load(&L->connect_ms);
    lc->deadline_ms = ms > 0 ? e->now_ms + ms : INT64_MAX;
    c_append(e, p);
    return;
  }
  give_up(e, p);
}

static void connect_failed (engine_t *e, pair_t *p, int err) {
  lane_conn_t *lc = p->lane;
  lane_t *ln = ((lane_engine_t *)e->lane)->lane;
  c_unlink((lane_engine_t *)e->lane, p);
  lc->connecting = 0;
  (void)epoll_ctl(e->ep, EPOLL_CTL_DEL, p->s[1].fd, NULL);
  close(p->s[1].fd);
  p->s[1].fd = -1;
  p->registered &= (uint8_t)~2u;
  lc->conn_err = err;
  if (lc->backend >= 0) atomic_store(&ln->backend_failed[KT_SLOT(lc->backend)], 1);
  rec_connect(e, ln, lc->listener, REC_CONNECT_ERR, lc->backend, err);
  let_go(ln, lc);
  lane_connect_next(e, p);
}

// The upstream side while its connect is in flight (connect_ops).
static void connect_event (engine_t *e, void *obj, uint32_t events) {
  pair_t *p = ((side_t *)obj)->p;
  if (p->dead) return;
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(p->s[1].fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (err == 0 && (events & (EPOLLERR | EPOLLHUP))) err = ECONNREFUSED;
  if (err == 0 && !(events & EPOLLOUT)) return;  // not done yet
  if (err != 0) { connect_failed(e, p, err); return; }
  c_unlink((lane_engine_t *)e->lane, p);
  p->lane->connecting = 0;
  // This edge may also carry the backend's first bytes and its FIN (a server
  // that writes and closes at once): the pump must read until EOF, not stop at
  // the first short read, or the FIN's edge is lost.
  if (events & (EPOLLRDHUP | EPOLLHUP)) p->s[1].rdhup = 1;
  on_connected(e, p);
}

// A routed listener's client while its upstream connects: it stays registered
// from its peek on, but only the upstream side's events finish the connect;
// the client's are remembered for the pump.
static void hold_event (engine_t *e, void *obj, uint32_t events) {
  (void)e;
  side_t *s = obj;
  if (s->p->dead) return;
  kt_note_events(s, events);
}

const kt_ops_t lane_hold_ops = { "hold", hold_event };

static void start_conn (engine_t *e, pair_t *p) {
  lane_listener_t *L = p->lane->listener;
  if (L->relay != NULL) { relay_start(e, p); return; }
  if (atomic_load(&L->routed)) { route_peek_start(e, p); return; }
  // The default group, not group 0: JS keeps each upstream's group number
  // across reloads (a number never changes upstream while routes may point at
  // it), so the default of a listener that lost its routes need not be 0.
  p->lane->group = default_group(L);
  lane_connect_next(e, p);
}

static void accept_one (engine_t *e, lane_listener_t *L, int fd, const struct sockaddr_storage *ss) {
  lane_t *ln = L->lane;
  // Caps: global (over every listener) and per listener; the excess is closed and counted.
  if (atomic_fetch_add(&ln->active_total, 1) >= atomic_load(&ln->cap_total)) {
    atomic_fetch_sub(&ln->active_total, 1);
    atomic_fetch_add(&L->outcomes[O_MAX_CONNECTIONS], 1);
    if (L->relay != NULL) kt_reset_fd(fd);  // a relay's host may already be sending its client's bytes: no FIN (server.ts)
    close(fd);
    return;
  }
  if (atomic_fetch_add(&L->active, 1) >= atomic_load(&L->max_conns)) {
    atomic_fetch_sub(&L->active, 1);
    atomic_fetch_sub(&ln->active_total, 1);
    atomic_fetch_add(&L->outcomes[O_MAX_CONNECTIONS], 1);
    if (L->relay != NULL) kt_reset_fd(fd);  // a relay's host may already be sending its client's bytes: no FIN (server.ts)
    close(fd);
    return;
  }
  // The listener's loadBalancerSourceRanges: right after the caps, before any
  // read, as listener.ts accept(): not counted as accepted, counted
  // source_denied, the client reset (resetAndDestroy), nothing logged.
  if (atomic_load(&L->has_listener_acl)) {
    pthread_mutex_lock(&L->mu);
    int ok = acl_allows(L, L->listener_acl, ss);
    pthread_mutex_unlock(&L->mu);
    if (!ok) {
      atomic_fetch_sub(&L->active, 1);
      atomic_fetch_sub(&ln->active_total, 1);
      atomic_fetch_add(&L->outcomes[O_SOURCE_DENIED], 1);
      kt_reset_fd(fd);
      close(fd);
      return;
    }
  }
  pair_t *p = calloc(1, sizeof *p);
  lane_conn_t *lc = p != NULL ? calloc(1, sizeof *lc) : NULL;
  if (lc == NULL) {
    free(p);
    atomic_fetch_sub(&L->active, 1);
    atomic_fetch_sub(&ln->active_total, 1);
    atomic_fetch_add(&L->outcomes[O_ERROR], 1);
    kt_reset_fd(fd);
    close(fd);
    return;
  }
  atomic_fetch_add(&L->accepted, 1);
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  listener_ref(L);
  lc->listener = L;
  lc->backend = -1;
  lc->route = R_NONE;
  lc->start_ms = e->now_ms;
  lc->client = *ss;
  p->lane = lc;
  p->idle_ms = (uint32_t)atomic_load(&L->idle_ms);
  p->half_ms = (uint32_t)atomic_load(&L->half_ms);
  for (int i = 0; i < 2; i++) {
    p->s[i].p = p;
    p->s[i].idx = (uint8_t)i;
    p->s[i].readable = 1;
    p->s[i].writable = 1;
    p->d[i].pr = p->d[i].pw = -1;
  }
  p->s[0].fd = fd;
  p->s[1].fd = -1;
  // EPOLLEXCLUSIVE tends to wake the same worker again and again, which would
  // put every long-lived pair on one thread. When another worker carries
  // clearly fewer pairs, it takes this one (through its command queue); short
  // connections end before any imbalance builds, so they rarely move.
  engine_t *to = e;
  for (int i = 0; i < ln->n; i++) {
    engine_t *o = ln->engines[i];
    if (!atomic_load(&o->stopping) && atomic_load(&o->pairs) + 1 < atomic_load(&to->pairs)) to = o;
  }
  atomic_fetch_add(&to->pairs, 1);
  if (to != e) {
    cmd_t *c = calloc(1, sizeof *c);
    if (c != NULL) {
      c->type = CMD_LANE;
      c->sub = L_ADOPT;
      c->arg = p;
      kt_enqueue(to, c);
      return;
    }
    atomic_fetch_sub(&to->pairs, 1);
    atomic_fetch_add(&e->pairs, 1);
  }
  start_conn(e, p);
}

static void arm (engine_t *e, lane_listener_t *L) {
  struct epoll_event ev;
  // Level-triggered: a batch cut short is reported again. EPOLLEXCLUSIVE: one
  // worker wakes per connection instead of every worker (thundering herd).
  ev.events = EPOLLIN | EPOLLEXCLUSIVE;
  ev.data.ptr = L;
  if (epoll_ctl(e->ep, EPOLL_CTL_ADD, L->fd, &ev) == 0) L->armed[e->index] = 1;
}

static void disarm (engine_t *e, lane_listener_t *L) {
  if (!L->armed[e->index]) return;
  (void)epoll_ctl(e->ep, EPOLL_CTL_DEL, L->fd, NULL);
  L->armed[e->index] = 0;
}

// A lane listener readable: accept a batch (listener_ops).
static void listener_event (engine_t *e, void *obj, uint32_t events) {
  (void)events;
  lane_listener_t *L = obj;
  for (int k = 0; k < KT_ACCEPT_BATCH; k++) {
    if (atomic_load(&L->stopped)) return;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(L->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) { accept_one(e, L, fd, &ss); continue; }
    int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) return;
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
      // The connection stays in the backlog while the listener would stay
      // readable: polling it now would spin. Stop for a while; it waits its turn.
      atomic_fetch_add(&L->emfile, 1);
      disarm(e, L);
      kt_timer_arm(&e->timers, &L->backoff[e->index], e->now_ms + KT_EMFILE_BACKOFF_MS);
      return;
    }
    atomic_fetch_add(&L->accept_other, 1);  // ECONNABORTED and the like: that client is gone
  }
}

const kt_ops_t lane_listener_ops = { "listener", listener_event };

// A listener's EMFILE pause is over on this worker: poll it again.
static void backoff_timer (engine_t *e, kt_timer_t *t) {
  lane_listener_t *L = t->arg;
  if (!atomic_load(&L->stopped)) arm(e, L);
}

static void le_remove (lane_engine_t *le, lane_listener_t *L) {
  for (int i = 0; i < le->n_ls; i++) {
    if (le->ls[i] == L) { le->ls[i] = le->ls[--le->n_ls]; return; }
  }
}

static void abort_listener (engine_t *e, lane_listener_t *L) {
  lane_engine_t *le = e->lane;
  mux_abort_listener(e, L);
  for (int list = 0; list < 2; list++) {
    pair_t *p = list == 0 ? le->c_head : le->p_head;
    while (p != NULL) {
      pair_t *nx = p->lane->cnext;
      if (p->lane->listener == L) kt_finish(e, p, C_ABORTED, 0, 1);
      p = nx;
    }
  }
  pair_t *p;
  p = e->live.next;
  while (p != &e->live) {
    pair_t *nx = p->next;
    if (p->lane != NULL && p->lane->listener == L) kt_finish(e, p, C_ABORTED, 0, 1);
    p = nx;
  }
}

// A relay listener closing: its connections still reading a header (pooled,
// authenticated and idle, or not yet authenticated) end now, with a FIN as
// the JS relay's closeIfIdle; dialling and spliced ones may finish.
static void quiet_listener (engine_t *e, lane_listener_t *L) {
  lane_engine_t *le = e->lane;
  pair_t *p = le->p_head;
  while (p != NULL) {
    pair_t *nx = p->lane->cnext;
    if (p->lane->listener == L && p->lane->relay != NULL) {
      p->lane->outcome = 1 + O_ABORTED;
      kt_finish(e, p, C_ABORTED, 0, 0);
    }
    p = nx;
  }
}

static void connect_timer (engine_t *e, kt_timer_t *t);

void kt_lane_command (engine_t *e, cmd_t *c) {
  if (c->sub == L_ATTACH) {
    lane_engine_t *le = c->arg;
    kt_timer_init(&le->connect_t, "connect", connect_timer, NULL);
    kt_timer_init(&le->peek_t, "peek", route_peek_timer, NULL);
    kt_timer_init(&le->flush_t, "flush", ring_flush_timer, NULL);
    e->lane = le;
    return;
  }
  if (c->sub == L_ADOPT) {
    pair_t *p = c->arg;
    if (atomic_load(&e->stopping)) kt_finish(e, p, C_ABORTED, 0, 1);
    else start_conn(e, p);
    return;
  }
  lane_listener_t *L = c->arg;
  lane_engine_t *le = e->lane;
  if (le == NULL) { listener_unref(L); return; }
  switch (c->sub) {
    case L_LISTEN:
      if (!atomic_load(&L->stopped) && !L->in_list[e->index]) {
        if (le->n_ls == le->cap_ls) {
          int ncap = le->cap_ls == 0 ? 8 : le->cap_ls * 2;
          lane_listener_t **n = realloc(le->ls, (size_t)ncap * sizeof *n);
          if (n == NULL) break;
          le->ls = n;
          le->cap_ls = ncap;
        }
        le->ls[le->n_ls++] = L;
        L->in_list[e->index] = 1;
        kt_timer_init(&L->backoff[e->index], "backoff", backoff_timer, L);
        arm(e, L);
      }
      break;
    case L_UNLISTEN:
      if (L->in_list[e->index]) {
        kt_timer_cancel(&e->timers, &L->backoff[e->index]);
        disarm(e, L);
        le_remove(le, L);
        L->in_list[e->index] = 0;
      }
      // The last worker to let go closes our dup of the listening socket.
      if (atomic_fetch_sub(&L->unlisten_pending, 1) == 1) {
        close(L->fd);
        L->fd = -1;
        listener_unref(L);  // the registration's reference
      }
      break;
    case L_ABORT:
      abort_listener(e, L);
      break;
    case L_QUIET:
      quiet_listener(e, L);
      break;
  }
  listener_unref(L);  // the command's reference
}

// The connect timer: connect timeouts due (the head is the nearest, see
// c_append), then armed again for the next head.
static void connect_timer (engine_t *e, kt_timer_t *t) {
  lane_engine_t *le = e->lane;
  int guard = 1024;
  while (le->c_head != NULL && le->c_head->lane->deadline_ms <= e->now_ms && guard-- > 0) {
    connect_failed(e, le->c_head, KT_ERR_CONNECT_TIMEOUT);
  }
  if (le->c_head != NULL && le->c_head->lane->deadline_ms != INT64_MAX) kt_timer_arm_before(&e->timers, t, le->c_head->lane->deadline_ms);
}

static void finished_counts (engine_t *e, pair_t *p, int cause, int err);

void kt_lane_finished (engine_t *e, pair_t *p, int cause, int err) {
  lane_conn_t *lc = p->lane;
  lane_listener_t *L = lc->listener;
  lane_t *ln = L->lane;
  if (lc->connecting) {
    c_unlink((lane_engine_t *)e->lane, p);
    lc->connecting = 0;
  }
  route_end_peek(e, p);
  route_free_peek(lc);
  // A hand-back is JS's now (kt_relay.c): JS counts and logs it; only the tail below is the lane's.
  if (!lc->handback) finished_counts(e, p, cause, err);
  let_go(ln, lc);
  free(lc->name);
  lc->name = NULL;
  free(lc->relay);  // a hand-back's (relay_finished freed the others')
  lc->relay = NULL;
  // Counted last: once JS sees active drop, the counters above are final.
  atomic_fetch_sub(&L->active, 1);
  atomic_fetch_sub(&ln->active_total, 1);
  listener_unref(L);
}

// A finished pair's outcome, bytes and close record (or a relay's summary).
static void finished_counts (engine_t *e, pair_t *p, int cause, int err) {
  lane_conn_t *lc = p->lane;
  lane_listener_t *L = lc->listener;
  lane_t *ln = L->lane;
  int o;
  if (lc->outcome != 0) o = lc->outcome - 1;
  else if (lc->failed) o = O_CONNECT_FAILED;
  else switch (cause) {
    case C_EOF: o = O_EOF; break;
    case C_RESET_A: o = O_RESET_CLIENT; break;
    case C_RESET_B: o = O_RESET_UPSTREAM; break;
    case C_IDLE_TIMEOUT: o = O_IDLE_TIMEOUT; break;
    case C_ABORTED: o = O_ABORTED; break;
    default: o = O_ERROR;
  }
  atomic_fetch_add(&L->outcomes[o], 1);
  atomic_fetch_add(&L->bytes_in, p->d[0].bytes);
  atomic_fetch_add(&L->bytes_out, p->d[1].bytes);
  if (lc->acquired) atomic_fetch_sub(&ln->backend_active[KT_SLOT(lc->backend)], 1);
  if (lc->relay != NULL) {
    relay_finished(e, p, o, err != 0 ? err : lc->conn_err);  // its own summary record
  } else if (atomic_load(&L->log)) {
    // The routed name first, as raw bytes in REC_NAME records (from
    // F_NAME_BYTES on; JS reads them through a byte view), then the close record.
    enum { NAME_PER_REC = (KT_REC - F_NAME_BYTES) * sizeof(double), NAME_RECS = (KT_PEEK_NAME_MAX + NAME_PER_REC - 1) / NAME_PER_REC };
    double r[(NAME_RECS + 1) * KT_REC] = { 0 };
    size_t nrec = 0;
    size_t name_len = lc->name != NULL ? strlen(lc->name) : 0;
    for (size_t off = 0; off < name_len && nrec < NAME_RECS; off += NAME_PER_REC, nrec++) {
      double *q = r + nrec * KT_REC;
      size_t chunk = name_len - off < NAME_PER_REC ? name_len - off : NAME_PER_REC;
      q[F_TYPE] = REC_NAME;
      q[F_LISTENER] = L->id;
      q[F_BACKEND] = (double)chunk;  // the length
      memcpy(q + F_NAME_BYTES, lc->name + off, chunk);
    }
    double *c = r + nrec * KT_REC;
    c[F_TYPE] = REC_CLOSE;
    c[F_LISTENER] = L->id;
    c[F_BACKEND] = lc->backend;
    c[F_OUTCOME] = o;
    c[F_ERR] = err;
    c[F_BYTES_IN] = (double)p->d[0].bytes;
    c[F_BYTES_OUT] = (double)p->d[1].bytes;
    c[F_MS] = (double)(e->now_ms - lc->start_ms);
    c[F_ATTEMPTS] = lc->attempts;
    rec_client(c, &lc->client);
    c[F_ROUTE] = lc->route == R_NONE ? -1 : lc->route;
    c[F_GROUP] = lc->route == R_NONE ? -1 : lc->group;
    ring_emit_n(e, ln, r, nrec + 1);
  }
}

void kt_lane_after_batch (engine_t *e) {
  mux_after_batch(e);
}

void kt_lane_stop (engine_t *e) {
  lane_engine_t *le = e->lane;
  mux_stop(e);
  while (le->c_head != NULL) kt_finish(e, le->c_head, C_ABORTED, 0, 1);
  while (le->p_head != NULL) kt_finish(e, le->p_head, C_ABORTED, 0, 1);
  for (int i = 0; i < le->n_ls; i++) disarm(e, le->ls[i]);
}

