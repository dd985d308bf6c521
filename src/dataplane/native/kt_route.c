// Routed listeners of the native lane (issue #3; split from the lane in issue 15).
//
// A listener with hostname routes reads the client's first flight here, on
// the worker, with the C port of the TS peeker (kt_peek.c): accept -> read
// into a per-connection buffer until the parser decides or the absolute peek
// deadline passes -> match the name against the routes JS pushed -> pick a
// backend of the matched upstream group -> connect -> the bytes read go
// upstream first, then the pair is spliced as any other. Outcomes and route
// counters are the JS path's (connection.ts decide/route/routeDefault).


#include "kt_lane.h"

void lane_wait_unlink (engine_t *e, pair_t *p) {
  lane_engine_t *le = e->lane;
  lane_conn_t *lc = p->lane;
  if (lc->cprev != NULL) lc->cprev->lane->cnext = lc->cnext;
  else if (le->p_head == p) le->p_head = lc->cnext;
  if (lc->cnext != NULL) lc->cnext->lane->cprev = lc->cprev;
  else if (le->p_tail == p) le->p_tail = lc->cprev;
  lc->cprev = lc->cnext = NULL;
}

// Deadline order (peek deadlines, and a relay's header and idle deadlines).
// The peek timer is armed for the new deadline unless already due earlier.
void lane_wait_insert (engine_t *e, pair_t *p) {
  lane_engine_t *le = e->lane;
  lane_conn_t *lc = p->lane;
  if (lc->deadline_ms != INT64_MAX) kt_timer_arm_before(&e->timers, &le->peek_t, lc->deadline_ms);
  // From whichever end is nearer in time: a relay's new connections (a
  // header deadline) belong near the head, its idle pooled ones (a longer
  // deadline) at the tail, so neither walks past the other.
  pair_t *after = le->p_tail;
  if (le->p_head != NULL && after->lane->deadline_ms > lc->deadline_ms &&
      lc->deadline_ms - le->p_head->lane->deadline_ms < after->lane->deadline_ms - lc->deadline_ms) {
    after = NULL;
    pair_t *n = le->p_head;
    while (n != NULL && n->lane->deadline_ms <= lc->deadline_ms) { after = n; n = n->lane->cnext; }
  } else {
    while (after != NULL && after->lane->deadline_ms > lc->deadline_ms) after = after->lane->cprev;
  }
  lc->cprev = after;
  lc->cnext = after != NULL ? after->lane->cnext : le->p_head;
  if (lc->cnext != NULL) lc->cnext->lane->cprev = p;
  else le->p_tail = p;
  if (after != NULL) after->lane->cnext = p;
  else le->p_head = p;
}

void route_free_peek (lane_conn_t *lc) {
  peek_conn_t *pk = lc->peek;
  if (pk == NULL) return;
  free(pk->buf);
  free(pk);
  lc->peek = NULL;
}

void route_end_peek (engine_t *e, pair_t *p) {
  if (!p->lane->peeking) return;
  lane_wait_unlink(e, p);
  p->lane->peeking = 0;
}

// The client's address and port in a record (close and route records share the layout).
// The route decided: count it, then the group's backends, or close (no group).
static void route_to (engine_t *e, pair_t *p, int32_t group, int route) {
  lane_conn_t *lc = p->lane;
  lane_listener_t *L = lc->listener;
  peek_conn_t *pk = lc->peek;
  route_end_peek(e, p);
  lc->route = (uint8_t)route;
  lc->group = group;
  atomic_fetch_add(&L->routes_out[route], 1);
  if (route == R_PEEK_TIMEOUT || route == R_TOO_LARGE || route == R_NO_ROUTE) {
    // The JS path logs these; JS logs them from this record (bounded by the ring).
    double r[KT_REC] = { 0 };
    r[F_TYPE] = REC_ROUTE;
    r[F_LISTENER] = L->id;
    r[F_BACKEND] = -1;
    r[F_ROUTE] = route;
    r[F_GROUP] = group;  // -1: closed, else sent to the default
    r[F_MS] = (double)(e->now_ms - lc->start_ms);
    r[F_ATTEMPTS] = pk != NULL ? (double)pk->len : 0;  // the bytes peeked
    rec_client(r, &lc->client);
    ring_emit(e, L->lane, r);
  }
  if (group < 0) {
    lc->outcome = 1 + (route == R_PEEK_TIMEOUT ? O_PEEK_TIMEOUT : route == R_TOO_LARGE ? O_TOO_LARGE : O_NO_ROUTE);
    kt_finish(e, p, C_ERROR, 0, 1);  // reset: the JS path's resetAndDestroy
    return;
  }
  // Every byte read goes upstream first (d[0].head: written before anything
  // else, freed as soon as it is written): not one byte is lost.
  if (pk != NULL) {
    if (pk->len > 0) {
      p->d[0].head = (char *)pk->buf;
      p->d[0].head_len = pk->len;
      pk->buf = NULL;
    }
    if (pk->eof) p->s[0].rdhup = 1;  // its FIN follows the bytes
    route_free_peek(lc);
  }
  p->s[0].readable = 1;
  p->s[0].writable = 1;
  p->s[0].ops = &lane_hold_ops;  // until the upstream is connected
  struct epoll_event ev;
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = &p->s[0];
  if (epoll_ctl(e->ep, EPOLL_CTL_MOD, p->s[0].fd, &ev) < 0) {
    lc->outcome = 1 + O_ERROR;
    kt_finish(e, p, C_ERROR, errno, 1);
    return;
  }
  lane_connect_next(e, p);
}

// connection.ts routeDefault(): the listener's default, or close (no_route).
static void route_default (engine_t *e, pair_t *p) {
  int32_t def = default_group(p->lane->listener);
  route_to(e, p, def, def >= 0 ? R_DEFAULT : R_NO_ROUTE);
}

// connection.ts decide(): a final parser outcome to a route.
static void decide (engine_t *e, pair_t *p, int kind) {
  lane_conn_t *lc = p->lane;
  lane_listener_t *L = lc->listener;
  peek_conn_t *pk = lc->peek;
  if (kind == KP_SNI || kind == KP_HOST) {
    if (atomic_load(&L->log)) lc->name = strndup(pk->st.name, pk->st.name_len);
    pthread_mutex_lock(&L->mu);
    const kt_route_t *hit = kt_routes_find(&L->routes, pk->st.name, pk->st.name_len);
    int32_t g = hit != NULL ? hit->group : -1;
    if (g >= L->n_groups) g = -1;
    // A Service sharing the listener enforces its own loadBalancerSourceRanges
    // once its name matched, before any connect (connection.ts decide()).
    int denied = g >= 0 && !acl_allows(L, hit->acl, &lc->client);
    pthread_mutex_unlock(&L->mu);
    if (denied) {
      // As the JS path: the route outcome is remembered for the access log but
      // not counted in kt_route_decisions_total, the outcome is source_denied,
      // and the client is reset (resetAndDestroy).
      route_end_peek(e, p);
      route_free_peek(lc);
      lc->route = (uint8_t)(kind == KP_SNI ? R_SNI : R_HOST);
      lc->group = -1;
      lc->outcome = 1 + O_SOURCE_DENIED;
      kt_finish(e, p, C_ERROR, KT_ERR_SOURCE_DENIED, 1);
      return;
    }
    if (g >= 0) { route_to(e, p, g, kind == KP_SNI ? R_SNI : R_HOST); return; }
    route_default(e, p);
    return;
  }
  if (kind == KP_NOT_TLS_OR_HTTP) { route_to(e, p, default_group(L), R_NOT_TLS_OR_HTTP); return; }
  if (kind == KP_TOO_LARGE) { route_to(e, p, default_group(L), R_TOO_LARGE); return; }
  route_default(e, p);  // no-name
}

// Read what the client sent until the parser decides, EAGAIN, EOF or an error.
// Bounded: every read adds a byte or more and the parser decides by the raw cap.
static void peek_read (engine_t *e, pair_t *p) {
  lane_conn_t *lc = p->lane;
  peek_conn_t *pk = lc->peek;
  const size_t max_cap = KT_PEEK_TLS_RAW_CAP(KT_PEEK_MAX_MESSAGE);
  for (;;) {
    if (pk->len == pk->cap) {
      if (pk->cap >= max_cap) { decide(e, p, KP_TOO_LARGE); return; }  // the parser decides first
      size_t ncap = pk->cap == 0 ? KT_PEEK_FIRST_BUF : pk->cap * 2;
      if (ncap > max_cap) ncap = max_cap;
      uint8_t *nb = realloc(pk->buf, ncap);
      if (nb == NULL) {
        lc->outcome = 1 + O_ERROR;
        kt_finish(e, p, C_ERROR, ENOMEM, 1);
        return;
      }
      pk->buf = nb;
      pk->cap = ncap;
    }
    ssize_t n = recv(p->s[0].fd, pk->buf + pk->len, pk->cap - pk->len, MSG_DONTWAIT);
    if (n > 0) {
      pk->len += (size_t)n;
      int kind = kt_peek_feed(&pk->st, pk->buf, pk->len);
      if (kind != KP_NEED_MORE) { decide(e, p, kind); return; }
      continue;
    }
    if (n == 0) {
      // Half-closed before a decision: the bytes and the FIN go to the default (connection.ts onPeekEnd).
      pk->eof = 1;
      route_default(e, p);
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    // Reset (or failed) while we peeked: nothing to route (connection.ts onEarlyClientClose).
    lc->outcome = 1 + O_CLIENT_CLOSED;
    kt_finish(e, p, C_RESET_A, errno, 0);
    return;
  }
}

// The client side while it peeks (peek_ops).
static void peek_event (engine_t *e, void *obj, uint32_t events) {
  (void)events;  // an error or hangup shows up as the read's result
  pair_t *p = ((side_t *)obj)->p;
  if (p->dead) return;
  peek_read(e, p);
}

static const kt_ops_t peek_ops = { "peek", peek_event };

void route_peek_start (engine_t *e, pair_t *p) {
  lane_conn_t *lc = p->lane;
  lane_listener_t *L = lc->listener;
  peek_conn_t *pk = calloc(1, sizeof *pk);
  if (pk == NULL) {
    lc->outcome = 1 + O_ERROR;
    kt_finish(e, p, C_ERROR, ENOMEM, 1);
    return;
  }
  kt_peek_init(&pk->st, KT_PEEK_MAX_MESSAGE);
  lc->peek = pk;
  struct epoll_event ev;
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = &p->s[0];
  p->s[0].ops = &peek_ops;
  if (epoll_ctl(e->ep, EPOLL_CTL_ADD, p->s[0].fd, &ev) < 0) {
    lc->outcome = 1 + O_ERROR;
    kt_finish(e, p, C_ERROR, errno, 1);
    return;
  }
  p->registered |= 1;
  lc->peeking = 1;
  // Absolute deadline from accept (--peek-timeout; anchors.md: slowloris cut at it).
  int ms = atomic_load(&L->peek_ms);
  lc->deadline_ms = ms > 0 ? lc->start_ms + ms : INT64_MAX;
  lane_wait_insert(e, p);
  peek_read(e, p);  // the first flight is often there already
}

// A new pair on its worker: peek first on a routed listener, else connect to the default group.

// The peek timer: peek deadlines due get the default route when the listener
// has one, else are closed (counted either way); then armed for the next.
void route_peek_timer (engine_t *e, kt_timer_t *t) {
  lane_engine_t *le = e->lane;
  int guard = 1024;
  while (le->p_head != NULL && le->p_head->lane->deadline_ms <= e->now_ms && guard-- > 0) {
    pair_t *p = le->p_head;
    if (p->lane->relay != NULL) relay_deadline(e, p);  // a relay header: kt_relay.c
    else route_to(e, p, default_group(p->lane->listener), R_PEEK_TIMEOUT);
  }
  if (le->p_head != NULL && le->p_head->lane->deadline_ms != INT64_MAX) kt_timer_arm_before(&e->timers, t, le->p_head->lane->deadline_ms);
}
