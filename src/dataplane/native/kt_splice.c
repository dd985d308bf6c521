// Over 500 lines: the splice engine's worker loop, pump and N-API bindings
// share its private pair and carrier helpers (static, so they inline).
// kind-tunnel native splice fast path (issue #8).
//
// JS keeps the control plane: it accepts, routes and connects, then hands the two
// connected TCP sockets to this addon. One worker thread per engine owns an
// edge-triggered epoll set and moves bytes in both directions, either with
// splice(2) through a pipe taken from a pool (mode "splice") or with a plain
// read/write loop through a pooled buffer (mode "rw", the shape macOS/Windows
// would need). When a pair ends it reports once to JS through a threadsafe
// function, with byte counts and the termination cause; JS then destroys its
// sockets. See docs in index.ts for the contract.
//
// Plain C N-API (node_api.h, NAPI_VERSION 8): no node-addon-api, no libuv.

#include "kt_engine.h"

static const napi_type_tag kEngineTag = { 0x6b74737069636531ULL, 0x6e61746976653031ULL };

// ---------------------------------------------------------------- helpers

static int64_t mono_ms (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *errno_name (int err) {
  switch (err) {
    case ECONNRESET: return "ECONNRESET";
    case EPIPE: return "EPIPE";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ECONNABORTED: return "ECONNABORTED";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ENETUNREACH: return "ENETUNREACH";
    case ENETDOWN: return "ENETDOWN";
    case ENOTCONN: return "ENOTCONN";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ENOMEM: return "ENOMEM";
    case ENOBUFS: return "ENOBUFS";
    case ENOSPC: return "ENOSPC";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case ENOTSOCK: return "ENOTSOCK";
    case EIO: return "EIO";
    default: return "EUNKNOWN";
  }
}

static void wake (engine_t *e) {
  uint64_t one = 1;
  // A full eventfd counter (EAGAIN) still leaves it readable: the worker wakes either way.
  ssize_t r = write(e->evfd, &one, sizeof one);
  (void)r;
}

// ---------------------------------------------------------------- worker: carriers

// Small messages (keep-alive requests and responses) are cheaper through a
// buffer: recv/send, and a short recv proves the socket drained, which saves
// the EAGAIN read. Once a read fills the buffer the direction is moving bulk,
// and splice(2) then avoids copying through user space; a splice that moves
// little switches back (HAProxy's splice-auto follows the same idea).
static int take_carrier (engine_t *e, dir_t *d) {
  if (e->mode == MODE_SPLICE && d->bulk) {
    if (e->pool_n > 0) {
      e->pool_n--;
      d->pr = e->pool_r[e->pool_n];
      d->pw = e->pool_w[e->pool_n];
      atomic_fetch_sub(&e->pipes_pooled, 1);
      return 0;
    }
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0) {
      if (e->pipe_size > 0) (void)fcntl(fds[1], F_SETPIPE_SZ, e->pipe_size);
      d->pr = fds[0];
      d->pw = fds[1];
      return 0;
    }
    // Out of descriptors (EMFILE/ENFILE) or pipe memory: carry this chunk through
    // a buffer so the pair keeps flowing (anchors.md: `ulimit -n 64` causes no crash).
    atomic_fetch_add(&e->pipe_fallbacks, 1);
  }
  if (e->bufs_n > 0) {
    d->buf = e->bufs[--e->bufs_n];
  } else {
    d->buf = malloc(KT_RW_BUF_SIZE);
    if (d->buf == NULL) return ENOMEM;
  }
  d->off = 0;
  return 0;
}

// Only an empty carrier goes back to a pool: a pipe with bytes left in it would
// leak one pair's bytes into another.
static void drop_carrier (engine_t *e, dir_t *d) {
  if (d->pr >= 0) {
    if (d->held == 0 && e->pool_n < KT_POOL_MAX) {
      e->pool_r[e->pool_n] = d->pr;
      e->pool_w[e->pool_n] = d->pw;
      e->pool_n++;
      atomic_fetch_add(&e->pipes_pooled, 1);
    } else {
      close(d->pr);
      close(d->pw);
    }
    d->pr = d->pw = -1;
  }
  if (d->buf != NULL) {
    if (e->bufs_n < KT_POOL_MAX) e->bufs[e->bufs_n++] = d->buf;
    else free(d->buf);
    d->buf = NULL;
  }
  d->held = 0;
  d->off = 0;
}

// ---------------------------------------------------------------- worker: pair lifecycle

static void hash_remove (engine_t *e, pair_t *p) {
  if (!p->in_hash) return;
  pair_t **pp = &e->buckets[p->id % KT_BUCKETS];
  while (*pp != NULL && *pp != p) pp = &(*pp)->hnext;
  if (*pp == p) *pp = p->hnext;
  p->in_hash = 0;
}

static pair_t *hash_find (engine_t *e, uint64_t id) {
  for (pair_t *p = e->buckets[id % KT_BUCKETS]; p != NULL; p = p->hnext) {
    if (p->id == id) return p;
  }
  return NULL;
}

// The completion was allocated when JS handed the pair over (js_add), so the
// end of a pair is always reported: JS's done runs exactly once.
static void post (engine_t *e, pair_t *p, int cause, int err) {
  completion_t *c = p->done;
  p->done = NULL;
  if (c == NULL) return;
  c->id = (double)p->id;
  c->a2b = (double)p->d[0].bytes;
  c->b2a = (double)p->d[1].bytes;
  c->cause = cause;
  c->err = err;
  if (napi_call_threadsafe_function(e->tsfn, c, napi_tsfn_nonblocking) != napi_ok) free(c);
}

// Send an RST now. SO_LINGER {1,0} makes the final close() abortive, but the
// final close is JS's (it still holds the original fd), so also disconnect the
// socket: connect(AF_UNSPEC) on TCP runs tcp_disconnect(), which sends the RST
// at once whatever other descriptors still point at the socket.
static void reset_fd (int fd) {
  struct linger lg = { 1, 0 };
  (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  struct sockaddr sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_family = AF_UNSPEC;
  (void)connect(fd, &sa, sizeof sa);
}

static void finish (engine_t *e, pair_t *p, int cause, int err, int reset) {
  if (p->dead) return;
  p->dead = 1;
  for (int i = 0; i < 2; i++) {
    // epoll keys a registration on the open file description, which JS's fd keeps
    // alive: closing our dup alone would leave it armed and firing for a freed pair.
    if (p->s[i].fd >= 0) (void)epoll_ctl(e->ep, EPOLL_CTL_DEL, p->s[i].fd, NULL);
  }
  for (int i = 0; i < 2; i++) {
    int fd = p->s[i].fd;
    if (fd < 0) continue;
    if (reset) reset_fd(fd);
    close(fd);
    p->s[i].fd = -1;
  }
  for (int i = 0; i < 2; i++) {
    drop_carrier(e, &p->d[i]);
    free(p->d[i].head);
    p->d[i].head = NULL;
  }
  hash_remove(e, p);
  if (p->prev != NULL) {
    p->prev->next = p->next;
    p->next->prev = p->prev;
    p->prev = p->next = NULL;
  }
  // Events for this pair may remain in the current epoll batch: free it after.
  p->gnext = e->grave;
  e->grave = p;
  atomic_fetch_sub(&e->pairs, 1);
  // A lane pair is JS's only as counters and a close record, not a pending done.
  if (p->lane != NULL) kt_lane_finished(e, p, cause, err);
  else post(e, p, cause, err);
}

static int is_reset_errno (int err) {
  return err == ECONNRESET || err == EPIPE;
}

// side: the socket whose syscall failed, or -1 when neither (a carrier failed).
static void fail (engine_t *e, pair_t *p, int side, int err) {
  int cause = C_ERROR;
  if (side >= 0 && is_reset_errno(err)) cause = side == 0 ? C_RESET_A : C_RESET_B;
  finish(e, p, cause, err, 1);
}

static void arm_deadline (engine_t *e, pair_t *p);
static const kt_ops_t kt_side_ops;

// Move bytes for one direction until it blocks. Returns -1 when the pair ended,
// 1 when the budget ran out with work left, 0 when waiting for an event.
static int pump_dir (engine_t *e, pair_t *p, int i) {
  dir_t *d = &p->d[i];
  side_t *src = &p->s[i];
  side_t *dst = &p->s[1 - i];
  int budget = KT_BUDGET;
  for (;;) {
    if (d->shut) return 0;
    if (d->head_off < d->head_len) {
      if (!dst->writable) return 0;
      ssize_t n = send(dst->fd, d->head + d->head_off, d->head_len - d->head_off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        d->head_off += (size_t)n;
        d->bytes += (uint64_t)n;
        p->last_ms = e->now_ms;
        if (d->head_off == d->head_len) {
          free(d->head);
          d->head = NULL;
          d->head_len = d->head_off = 0;
        }
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { dst->writable = 0; return 0; }
      fail(e, p, dst->idx, n < 0 ? errno : EIO);
      return -1;
    }
    if (d->held > 0) {
      if (!dst->writable) return 0;
      if (budget <= 0) return 1;
      ssize_t n;
      if (d->pr >= 0) {
        n = splice(d->pr, NULL, dst->fd, NULL, d->held, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      } else {
        n = send(dst->fd, d->buf + d->off, d->held, MSG_NOSIGNAL | MSG_DONTWAIT);
      }
      if (n > 0) {
        d->held -= (size_t)n;
        d->off += (size_t)n;
        d->bytes += (uint64_t)n;
        p->last_ms = e->now_ms;
        budget--;
        if (d->held == 0) drop_carrier(e, d);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      // The pipe holds d->held > 0 bytes, so EAGAIN here can only mean dst is full.
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { dst->writable = 0; return 0; }
      fail(e, p, dst->idx, n < 0 ? errno : EIO);
      return -1;
    }
    if (d->eof) {
      // Everything read from src has reached dst: pass the half-close on, once.
      d->shut = 1;
      if (shutdown(dst->fd, SHUT_WR) < 0) {
        // ENOTCONN: dst already went to CLOSE, which only an RST does before we shut it.
        int err = errno == ENOTCONN ? ECONNRESET : errno;
        fail(e, p, dst->idx, err);
        return -1;
      }
      arm_deadline(e, p);  // the half-close timeout may now be the nearer one
      return 0;
    }
    if (!src->readable) return 0;
    if (budget <= 0) return 1;
    if (d->pr < 0 && d->buf == NULL) {
      int err = take_carrier(e, d);
      if (err != 0) { fail(e, p, -1, err); return -1; }
    }
    ssize_t n;
    if (d->pr >= 0) {
      // We read only into an empty pipe, so EAGAIN means "src empty", never
      // "pipe full": edge-triggered splice cannot tell the two apart otherwise.
      n = splice(src->fd, NULL, d->pw, NULL, KT_SPLICE_REQ, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    } else {
      n = recv(src->fd, d->buf, KT_RW_BUF_SIZE, MSG_DONTWAIT);
    }
    if (n > 0) {
      d->held = (size_t)n;
      d->off = 0;
      p->last_ms = e->now_ms;
      budget--;
      if (d->pr >= 0) {
        if (n < KT_SMALL_SPLICE) d->bulk = 0;
      } else if ((size_t)n == KT_RW_BUF_SIZE) {
        if (e->mode == MODE_SPLICE) d->bulk = 1;
      } else if (!src->rdhup) {
        // recv() on TCP returns everything queued up to the length asked, so a
        // short read drained the socket; data arriving later raises a new edge.
        // Not after FIN/RST was signalled: that edge is spent, and the EOF or
        // error must still be read.
        src->readable = 0;
      }
      continue;
    }
    if (n == 0) {
      d->eof = 1;
      drop_carrier(e, d);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      src->readable = 0;
      drop_carrier(e, d);
      return 0;
    }
    fail(e, p, src->idx, errno);
    return -1;
  }
}

static void push_ready (engine_t *e, pair_t *p) {
  if (p->in_ready) return;
  p->in_ready = 1;
  p->rnext = e->ready;
  e->ready = p;
}

static void pump_pair (engine_t *e, pair_t *p) {
  if (p->dead) return;
  int more = 0;
  for (int i = 0; i < 2; i++) {
    int r = pump_dir(e, p, i);
    if (r < 0) return;
    if (r > 0) more = 1;
  }
  if (p->d[0].shut && p->d[1].shut) {
    finish(e, p, C_EOF, 0, 0);
    return;
  }
  if (more) push_ready(e, p);
}

static void add_pair (engine_t *e, pair_t *p) {
  p->last_ms = e->now_ms;
  if (p->lane == NULL) {  // lane pairs are aborted by listener, never by id
    pair_t **b = &e->buckets[p->id % KT_BUCKETS];
    p->hnext = *b;
    *b = p;
    p->in_hash = 1;
  }
  p->next = e->live.next;
  p->prev = &e->live;
  e->live.next->prev = p;
  e->live.next = p;
  // Both sides splice from now on, including a lane pair's already registered ones.
  p->s[0].ops = p->s[1].ops = &kt_side_ops;
  for (int i = 0; i < 2; i++) {
    if (p->registered & (1u << i)) continue;
    struct epoll_event ev;
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = &p->s[i];
    if (epoll_ctl(e->ep, EPOLL_CTL_ADD, p->s[i].fd, &ev) < 0) {
      fail(e, p, -1, errno);
      return;
    }
  }
  arm_deadline(e, p);
  pump_pair(e, p);  // heads, and whatever is already readable
}

static void run_commands (engine_t *e) {
  pthread_mutex_lock(&e->mu);
  cmd_t *c = e->q_head;
  e->q_head = e->q_tail = NULL;
  pthread_mutex_unlock(&e->mu);
  while (c != NULL) {
    cmd_t *next = c->next;
    if (c->type == CMD_ADD) {
      add_pair(e, c->p);
    } else if (c->type == CMD_LANE) {
      kt_lane_command(e, c);
    } else {
      pair_t *p = hash_find(e, c->id);
      if (p != NULL) finish(e, p, C_ABORTED, 0, 1);
    }
    free(c);
    c = next;
  }
}

// The quiet period after which a pair ends: idle_ms, or the shorter half-close
// timeout once one direction is done (anchors.md: half-close 30 s).
static uint32_t quiet_limit (const pair_t *p) {
  uint32_t limit = p->idle_ms;
  if (p->half_ms > 0 && (p->d[0].shut || p->d[1].shut) && (limit == 0 || p->half_ms < limit)) limit = p->half_ms;
  return limit;
}

static void arm_deadline (engine_t *e, pair_t *p) {
  uint32_t limit = quiet_limit(p);
  if (limit == 0) return;
  kt_timer_arm_before(&e->timers, &e->idle, p->last_ms + limit);
}

// The idle timer. Activity only ever moves deadlines later, so the timer's due
// time stays a lower bound: one pass over the live pairs when it is reached,
// none in between.
static void idle_scan (engine_t *e, kt_timer_t *t) {
  (void)t;
  int64_t next = INT64_MAX;
  pair_t *p = e->live.next;
  while (p != &e->live) {
    pair_t *nx = p->next;
    uint32_t limit = quiet_limit(p);
    if (limit > 0) {
      int64_t deadline = p->last_ms + limit;
      // Idle ends a pair as the pure-JS path does: both sides reset.
      if (deadline <= e->now_ms) finish(e, p, C_IDLE_TIMEOUT, 0, 1);
      else if (deadline < next) next = deadline;
    }
    p = nx;
  }
  // Staggered activity could otherwise make the earliest deadline creep forward
  // a little at a time, with a full scan at each step.
  if (next != INT64_MAX && next < e->now_ms + KT_SCAN_MIN_MS) next = e->now_ms + KT_SCAN_MIN_MS;
  if (next != INT64_MAX) kt_timer_arm_before(&e->timers, &e->idle, next);
}

static void free_grave (engine_t *e) {
  pair_t *p = e->grave;
  e->grave = NULL;
  while (p != NULL) {
    pair_t *nx = p->gnext;
    free(p->lane);
    free(p);
    p = nx;
  }
}

// ---------------------------------------------------------------- worker: ops tables (kt_obj_t)

// A side of a pair being spliced.
static void side_event (engine_t *e, void *obj, uint32_t ev) {
  side_t *s = obj;
  pair_t *p = s->p;
  if (p->dead) return;
  if (ev & EPOLLERR) {
    // A pending socket error (an RST) is reported once: take it here so a
    // quiet direction does not miss it and later read it as a clean EOF.
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
      fail(e, p, s->idx, err);
      return;
    }
  }
  kt_note_events(s, ev);
  pump_pair(e, p);
}

static const kt_ops_t kt_side_ops = { "side", side_event };

// The command eventfd (level-triggered: drained by one read per wakeup). The
// queue runs after the batch, once, however many commands woke it.
static void wake_event (engine_t *e, void *obj, uint32_t ev) {
  (void)obj; (void)ev;
  uint64_t v;
  ssize_t r = read(e->evfd, &v, sizeof v);
  (void)r;
  e->commands = 1;
}

static const kt_ops_t kt_wake_ops = { "wake", wake_event };

static void *worker (void *arg) {
  engine_t *e = arg;
  sigset_t all;
  sigfillset(&all);
  // Signals belong to the JS thread. A SIGPIPE from splice() into a reset socket
  // stays pending here, harmlessly, instead of reaching the process.
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  struct epoll_event events[KT_MAX_EVENTS];
  e->now_ms = mono_ms();
  for (;;) {
    int timeout = -1;
    if (e->ready != NULL || e->lane_more) {
      timeout = 0;
    } else {
      // The earliest registered deadline (idle scan, connect and peek timeouts, ring flush, accept backoff).
      int64_t next = kt_timers_next(&e->timers);
      if (next != INT64_MAX) {
        int64_t wait = next - mono_ms();
        timeout = wait <= 0 ? 0 : (wait > 60000 ? 60000 : (int)wait);
      }
    }
    int n = epoll_wait(e->ep, events, KT_MAX_EVENTS, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;  // cannot happen with a valid epoll fd; stop rather than spin
    }
    e->now_ms = mono_ms();
    e->commands = 0;
    for (int k = 0; k < n; k++) {
      kt_obj_t *o = events[k].data.ptr;
      o->ops->on_event(e, o, events[k].events);
    }
    if (e->commands) run_commands(e);
    if (e->ready != NULL) {
      pair_t *p = e->ready;
      e->ready = NULL;
      while (p != NULL) {
        pair_t *nx = p->rnext;
        p->in_ready = 0;
        pump_pair(e, p);
        p = nx;
      }
    }
    if (atomic_load(&e->stopping)) break;
    kt_timers_run(&e->timers, e, e->now_ms);
    if (e->lane != NULL) kt_lane_after_batch(e);  // multiplexed carriers send what the batch queued
    free_grave(e);
  }
  // Stopping: abort every pair. Pairs still queued were never registered or
  // pumped; they end as aborted too, so JS hears about every pair it handed over.
  pthread_mutex_lock(&e->mu);
  cmd_t *c = e->q_head;
  e->q_head = e->q_tail = NULL;
  pthread_mutex_unlock(&e->mu);
  while (c != NULL) {
    cmd_t *next = c->next;
    if (c->type == CMD_ADD) finish(e, c->p, C_ABORTED, 0, 1);
    else if (c->type == CMD_LANE) kt_lane_command(e, c);
    free(c);
    c = next;
  }
  if (e->lane != NULL) kt_lane_stop(e);  // connecting pairs and listener registrations
  while (e->live.next != &e->live) finish(e, e->live.next, C_ABORTED, 0, 1);
  free_grave(e);
  while (e->pool_n > 0) {
    e->pool_n--;
    close(e->pool_r[e->pool_n]);
    close(e->pool_w[e->pool_n]);
  }
  atomic_store(&e->pipes_pooled, 0);
  while (e->bufs_n > 0) free(e->bufs[--e->bufs_n]);
  return NULL;
}

// ---------------------------------------------------------------- JS thread

static void stop_worker (engine_t *e) {
  pthread_mutex_lock(&e->mu);
  atomic_store(&e->stopping, 1);
  pthread_mutex_unlock(&e->mu);
  if (e->thread_started && !e->joined) {
    wake(e);
    pthread_join(e->thread, NULL);
    e->joined = 1;
  }
  if (e->ep >= 0) close(e->ep);
  if (e->evfd >= 0) close(e->evfd);
  e->ep = e->evfd = -1;
}

static void cleanup_hook (void *arg) {
  // The environment is going away (process exit, worker_threads teardown).
  // Cleanup hooks run last-registered first, and this one was added after the
  // threadsafe function was created, so the worker is joined before Node tears
  // that function down: the worker never calls into a freed one. Node disposes
  // of the function itself; touching it from here on (release) is not ours to do.
  engine_t *e = arg;
  e->hook_added = 0;
  stop_worker(e);
  e->tsfn_released = 1;
}

static void engine_finalize (napi_env env, void *data, void *hint) {
  (void)hint;
  engine_t *e = data;
  if (e->hook_added) {
    napi_remove_env_cleanup_hook(env, cleanup_hook, e);
    e->hook_added = 0;
  }
  stop_worker(e);
  if (!e->tsfn_released && e->tsfn != NULL) {
    napi_release_threadsafe_function(e->tsfn, napi_tsfn_release);
    e->tsfn_released = 1;
  }
  pthread_mutex_destroy(&e->mu);
  free(e);
}

static void call_js (napi_env env, napi_value cb, void *ctx, void *data) {
  (void)ctx;
  completion_t *c = data;
  if (env != NULL && cb != NULL) {
    napi_value argv[5], undef;
    napi_get_undefined(env, &undef);
    napi_create_double(env, c->id, &argv[0]);
    napi_create_double(env, c->a2b, &argv[1]);
    napi_create_double(env, c->b2a, &argv[2]);
    napi_create_int32(env, c->cause, &argv[3]);
    if (c->err != 0) napi_create_string_utf8(env, errno_name(c->err), NAPI_AUTO_LENGTH, &argv[4]);
    else argv[4] = undef;
    if (napi_call_function(env, undef, cb, 5, argv, NULL) == napi_pending_exception) {
      napi_value exc;
      if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
    }
  }
  free(c);
}

static napi_value throw_errno (napi_env env, int err, const char *what) {
  napi_value msg, code, obj;
  char text[128];
  snprintf(text, sizeof text, "%s: %s", what, strerror(err));
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, msg, &obj);
  napi_throw(env, obj);
  return NULL;
}

static napi_value throw_type (napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

static engine_t *get_engine (napi_env env, napi_value v) {
  bool ok = false;
  if (napi_check_object_type_tag(env, v, &kEngineTag, &ok) != napi_ok || !ok) return NULL;
  void *ptr = NULL;
  if (napi_unwrap(env, v, &ptr) != napi_ok) return NULL;
  return ptr;
}

// The arguments of a call on an engine (at most *argc of them, into argv),
// and the engine in argv[0]; NULL, with a TypeError thrown, when it is not one.
static engine_t *engine_call (napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_get_cb_info(env, info, argc, argv, NULL, NULL);
  engine_t *e = *argc >= 1 ? get_engine(env, argv[0]) : NULL;
  if (e == NULL) throw_type(env, "not a splice engine");
  return e;
}

// createEngine(mode: 0 | 1, pipeSize: number, onDone: Function) -> engine object
static napi_value js_create_engine (napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) return throw_type(env, "createEngine(mode, pipeSize, onDone)");
  int32_t mode = 0, pipe_size = 0;
  napi_valuetype t;
  if (napi_get_value_int32(env, argv[0], &mode) != napi_ok || (mode != MODE_SPLICE && mode != MODE_RW)) {
    return throw_type(env, "mode must be 0 or 1");
  }
  if (napi_get_value_int32(env, argv[1], &pipe_size) != napi_ok || pipe_size < 0) {
    return throw_type(env, "pipeSize must be a non-negative integer");
  }
  napi_typeof(env, argv[2], &t);
  if (t != napi_function) return throw_type(env, "onDone must be a function");

  engine_t *e = calloc(1, sizeof *e);
  if (e == NULL) return throw_errno(env, ENOMEM, "createEngine");
  e->mode = mode;
  e->pipe_size = pipe_size;
  e->env = env;
  e->live.next = e->live.prev = &e->live;
  e->wake.ops = &kt_wake_ops;
  kt_timer_init(&e->idle, "idle", idle_scan, NULL);
  pthread_mutex_init(&e->mu, NULL);
  e->ep = epoll_create1(EPOLL_CLOEXEC);
  e->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (e->ep < 0 || e->evfd < 0) {
    int err = errno;
    if (e->ep >= 0) close(e->ep);
    if (e->evfd >= 0) close(e->evfd);
    pthread_mutex_destroy(&e->mu);
    free(e);
    return throw_errno(env, err, "createEngine");
  }
  struct epoll_event ev;
  ev.events = EPOLLIN;  // level-triggered: drained by one read per wakeup
  ev.data.ptr = &e->wake;
  epoll_ctl(e->ep, EPOLL_CTL_ADD, e->evfd, &ev);

  napi_value name;
  napi_create_string_utf8(env, "kind-tunnel native splice", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, NULL, NULL, NULL, call_js, &e->tsfn) != napi_ok) {
    close(e->ep);
    close(e->evfd);
    pthread_mutex_destroy(&e->mu);
    free(e);
    return throw_errno(env, ENOMEM, "createEngine");
  }
  // Unreferenced until a pair is live: an idle splicer must not keep the process up.
  napi_unref_threadsafe_function(env, e->tsfn);

  napi_value obj;
  napi_create_object(env, &obj);
  if (napi_wrap(env, obj, e, engine_finalize, NULL, NULL) != napi_ok) {
    napi_release_threadsafe_function(e->tsfn, napi_tsfn_release);
    close(e->ep);
    close(e->evfd);
    pthread_mutex_destroy(&e->mu);
    free(e);
    return throw_errno(env, ENOMEM, "createEngine");
  }
  napi_type_tag_object(env, obj, &kEngineTag);
  if (napi_add_env_cleanup_hook(env, cleanup_hook, e) == napi_ok) e->hook_added = 1;

  int rc = pthread_create(&e->thread, NULL, worker, e);
  if (rc != 0) {
    stop_worker(e);  // the wrap's finalizer frees the rest
    return throw_errno(env, rc, "createEngine: worker thread");
  }
  e->thread_started = 1;
  return obj;
}

static int copy_head (napi_env env, napi_value v, char **out, size_t *len) {
  *out = NULL;
  *len = 0;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_undefined || t == napi_null) return 0;
  bool is_buf = false;
  napi_is_buffer(env, v, &is_buf);
  if (!is_buf) return -1;
  void *data;
  size_t n;
  napi_get_buffer_info(env, v, &data, &n);
  if (n == 0) return 0;
  *out = malloc(n);
  if (*out == NULL) return ENOMEM;
  memcpy(*out, data, n);
  *len = n;
  return 0;
}

static int dup_socket (int fd, int *out) {
  // F_DUPFD_CLOEXEC: JS may destroy its socket (closing fd) at any time, and the
  // number could then be reused by an unrelated file. Our own reference cannot.
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) return errno;
  int type = 0;
  socklen_t len = sizeof type;
  if (getsockopt(d, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
    int err = errno == 0 || type != SOCK_STREAM ? ENOTSOCK : errno;
    close(d);
    return err;
  }
  int fl = fcntl(d, F_GETFL);
  if (fl >= 0 && !(fl & O_NONBLOCK)) (void)fcntl(d, F_SETFL, fl | O_NONBLOCK);
  // Each chunk goes out as it arrives: Nagle would only add delay (Go proxies
  // such as docker-proxy set TCP_NODELAY by default too).
  int one = 1;
  (void)setsockopt(d, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  *out = d;
  return 0;
}

// add(engine, id, fdA, fdB, idleMs, headAtoB?, headBtoA?, halfCloseMs?)
static napi_value js_add (napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 5) return throw_type(env, "add(engine, id, fdA, fdB, idleMs, headAtoB, headBtoA)");
  engine_t *e = get_engine(env, argv[0]);
  if (e == NULL) return throw_type(env, "not a splice engine");
  double idd;
  int32_t fda, fdb;
  uint32_t idle;
  if (napi_get_value_double(env, argv[1], &idd) != napi_ok || idd < 0) return throw_type(env, "id must be a number");
  if (napi_get_value_int32(env, argv[2], &fda) != napi_ok || fda < 0) return throw_type(env, "fdA must be a descriptor");
  if (napi_get_value_int32(env, argv[3], &fdb) != napi_ok || fdb < 0) return throw_type(env, "fdB must be a descriptor");
  if (napi_get_value_uint32(env, argv[4], &idle) != napi_ok) return throw_type(env, "idleMs must be a non-negative integer");
  uint32_t half = 0;
  if (argc >= 8) {
    napi_valuetype t;
    napi_typeof(env, argv[7], &t);
    if (t != napi_undefined && napi_get_value_uint32(env, argv[7], &half) != napi_ok) {
      return throw_type(env, "halfCloseMs must be a non-negative integer");
    }
  }
  if (atomic_load(&e->stopping)) return throw_errno(env, EBADF, "add: splicer closed");

  char *heads[2] = { NULL, NULL };
  size_t lens[2] = { 0, 0 };
  for (int i = 0; i < 2; i++) {
    if ((size_t)(5 + i) < argc) {
      int r = copy_head(env, argv[5 + i], &heads[i], &lens[i]);
      if (r != 0) {
        free(heads[0]);
        free(heads[1]);
        if (r < 0) return throw_type(env, "heads must be Buffers");
        return throw_errno(env, r, "add");
      }
    }
  }
  int da = -1, db = -1, err = dup_socket(fda, &da);
  if (err == 0) err = dup_socket(fdb, &db);
  pair_t *p = err == 0 ? calloc(1, sizeof *p) : NULL;
  cmd_t *c = p != NULL ? calloc(1, sizeof *c) : NULL;
  completion_t *done = c != NULL ? KT_ALLOC(KT_SITE_COMPLETION, sizeof *done) : NULL;
  if (done == NULL) {
    if (err == 0) err = ENOMEM;
    if (da >= 0) close(da);
    if (db >= 0) close(db);
    free(c);
    free(p);
    free(heads[0]);
    free(heads[1]);
    return throw_errno(env, err, "add");
  }
  p->id = (uint64_t)idd;
  p->done = done;
  p->idle_ms = idle;
  p->half_ms = half;
  int fds[2] = { da, db };
  for (int i = 0; i < 2; i++) {
    p->s[i].p = p;
    p->s[i].fd = fds[i];
    p->s[i].idx = (uint8_t)i;
    p->s[i].readable = 1;  // unknown until tried: EAGAIN clears it
    p->s[i].writable = 1;
    p->d[i].pr = p->d[i].pw = -1;
    p->d[i].head = heads[i];
    p->d[i].head_len = lens[i];
  }
  c->type = CMD_ADD;
  c->p = p;
  atomic_fetch_add(&e->pairs, 1);
  // Registration is the worker's job: epoll_ctl from this thread would race its
  // event handling, so hand the pair over through a queue and an eventfd.
  kt_enqueue(e, c);
  return NULL;
}

// abort(engine, id)
static napi_value js_abort (napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  engine_t *e = engine_call(env, info, &argc, argv);
  if (e == NULL) return NULL;
  double idd;
  if (argc < 2 || napi_get_value_double(env, argv[1], &idd) != napi_ok) return throw_type(env, "id must be a number");
  if (atomic_load(&e->stopping)) return NULL;
  cmd_t *c = calloc(1, sizeof *c);
  if (c == NULL) return throw_errno(env, ENOMEM, "abort");
  c->type = CMD_ABORT;
  c->id = (uint64_t)idd;
  kt_enqueue(e, c);
  return NULL;
}

// stats(engine) -> [pairs, pipesPooled, pipeFallbacks]
static napi_value js_stats (napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  engine_t *e = engine_call(env, info, &argc, argv);
  if (e == NULL) return NULL;
  napi_value arr, v;
  napi_create_array_with_length(env, 3, &arr);
  napi_create_int32(env, atomic_load(&e->pairs), &v);
  napi_set_element(env, arr, 0, v);
  napi_create_int32(env, atomic_load(&e->pipes_pooled), &v);
  napi_set_element(env, arr, 1, v);
  napi_create_int32(env, atomic_load(&e->pipe_fallbacks), &v);
  napi_set_element(env, arr, 2, v);
  return arr;
}

// ref(engine, on: boolean): keep the loop alive while pairs are live.
static napi_value js_ref (napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  engine_t *e = engine_call(env, info, &argc, argv);
  if (e == NULL) return NULL;
  bool on = false;
  if (argc >= 2) napi_get_value_bool(env, argv[1], &on);
  if (e->tsfn_released) return NULL;
  if (on) napi_ref_threadsafe_function(env, e->tsfn);
  else napi_unref_threadsafe_function(env, e->tsfn);
  return NULL;
}

// close(engine): abort every pair (their completions still arrive), stop the worker.
static napi_value js_close (napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  engine_t *e = engine_call(env, info, &argc, argv);
  if (e == NULL) return NULL;
  stop_worker(e);
  if (!e->tsfn_released) {
    // Queued completions are still delivered before the function is finalized.
    napi_release_threadsafe_function(e->tsfn, napi_tsfn_release);
    e->tsfn_released = 1;
  }
  return NULL;
}

// ---------------------------------------------------------------- shared with the lane

engine_t *kt_get_engine (napi_env env, napi_value v) { return get_engine(env, v); }
void kt_start_pair (engine_t *e, pair_t *p) { add_pair(e, p); }
void kt_finish (engine_t *e, pair_t *p, int cause, int err, int reset) { finish(e, p, cause, err, reset); }
void kt_reset_fd (int fd) { reset_fd(fd); }
int kt_established_now (int fd) {
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 || len < 1 || ti.tcpi_state != TCP_ESTABLISHED) return 0;
  KT_PROBE_ADD(KT_PROBE_CONNECTED_NOW, 1);
  return 1;
}
int64_t kt_mono_ms (void) { return mono_ms(); }
const char *kt_errno_name (int err) { return errno_name(err); }

// Commands reach the worker through the same queue and eventfd as pairs, so
// only the worker touches its epoll set and lists.
void kt_enqueue (engine_t *e, cmd_t *c) {
  pthread_mutex_lock(&e->mu);
  if (e->q_tail != NULL) e->q_tail->next = c;
  else e->q_head = c;
  e->q_tail = c;
  pthread_mutex_unlock(&e->mu);
  wake(e);
}

// ---------------------------------------------------------------- test hooks (KT_TEST_HOOKS builds only)

#ifdef KT_TEST_HOOKS
atomic_int kt_test_fail_at[KT_SITE_COUNT];
atomic_int kt_test_post_delay_ms;
atomic_long kt_test_probe[KT_PROBE_COUNT];

int kt_test_fail (int site) {
  int left = atomic_load(&kt_test_fail_at[site]);
  while (left > 0) {
    if (atomic_compare_exchange_weak(&kt_test_fail_at[site], &left, left - 1)) return left == 1;
  }
  return 0;
}

void *kt_test_alloc (int site, size_t n) {
  return kt_test_fail(site) ? NULL : malloc(n);
}

void kt_test_post_delay (void) {
  int ms = atomic_load(&kt_test_post_delay_ms);
  if (ms <= 0) return;
  atomic_fetch_add(&kt_test_probe[KT_PROBE_POST_DELAYS], 1);
  atomic_fetch_add(&kt_test_probe[KT_PROBE_IN_POST_DELAY], 1);
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
  atomic_fetch_sub(&kt_test_probe[KT_PROBE_IN_POST_DELAY], 1);
}

// ktTest(op, arg, value) -> number. op 0: fail the value-th allocation at site arg
// from now (0: never); op 1: post delay of value ms; op 2: read probe arg.
static napi_value js_test (napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out;
  int32_t v[3] = { 0, 0, 0 };
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  for (size_t i = 0; i < argc && i < 3; i++) napi_get_value_int32(env, argv[i], &v[i]);
  double r = 0;
  if (v[0] == 0 && v[1] >= 0 && v[1] < KT_SITE_COUNT) atomic_store(&kt_test_fail_at[v[1]], v[2]);
  else if (v[0] == 1) atomic_store(&kt_test_post_delay_ms, v[2]);
  else if (v[0] == 2 && v[1] >= 0 && v[1] < KT_PROBE_COUNT) r = (double)atomic_load(&kt_test_probe[v[1]]);
  napi_create_double(env, r, &out);
  return out;
}
#endif

static napi_value init (napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "createEngine", NULL, js_create_engine, NULL, NULL, NULL, napi_enumerable, NULL },
    { "add", NULL, js_add, NULL, NULL, NULL, napi_enumerable, NULL },
    { "abort", NULL, js_abort, NULL, NULL, NULL, napi_enumerable, NULL },
    { "stats", NULL, js_stats, NULL, NULL, NULL, napi_enumerable, NULL },
    { "ref", NULL, js_ref, NULL, NULL, NULL, napi_enumerable, NULL },
    { "close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
#ifdef KT_TEST_HOOKS
  napi_property_descriptor test = { "ktTest", NULL, js_test, NULL, NULL, NULL, napi_enumerable, NULL };
  napi_define_properties(env, exports, 1, &test);
  kt_timer_test_init(env, exports);
#endif
  kt_lane_init(env, exports);
  return exports;
}

#ifndef NODE_GYP_MODULE_NAME
#define NODE_GYP_MODULE_NAME kt_splice
#endif
NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
