// Over 500 lines: the lane's N-API bindings, one per entry point index.ts
// declares, each checking its own arguments; nothing here runs on a worker.
// The native lane's JS-thread side (split from the lane in issue 15): create
// the lane, adopt listeners, push configuration, backends, routes and source
// ranges, read counters, and the differential-test hooks over kt_peek.c.

#include "kt_lane.h"

static const napi_type_tag kLaneTag = { 0x6b746c616e653031ULL, 0x6c616e656c616e65ULL };
static const napi_type_tag kListenerTag = { 0x6b746c6c69737431ULL, 0x6c697374656e6572ULL };

static napi_value throw_msg (napi_env env, const char *code, const char *msg) {
  napi_throw_error(env, code, msg);
  return NULL;
}

static void *unwrap_tagged (napi_env env, napi_value v, const napi_type_tag *tag) {
  bool ok = false;
  if (napi_check_object_type_tag(env, v, tag, &ok) != napi_ok || !ok) return NULL;
  void *ptr = NULL;
  if (napi_unwrap(env, v, &ptr) != napi_ok) return NULL;
  return ptr;
}

void lane_listener_cmd (lane_t *ln, int sub, lane_listener_t *L) {
  for (int i = 0; i < ln->n; i++) {
    cmd_t *c = calloc(1, sizeof *c);
    if (c == NULL) continue;
    c->type = CMD_LANE;
    c->sub = sub;
    c->arg = L;
    if (L != NULL) listener_ref(L);
    else c->arg = ln->les[i];
    kt_enqueue(ln->engines[i], c);
  }
}

// Node disposes of threadsafe functions in an environment cleanup hook of its
// own, before the splice engines' hooks join the workers (hooks run last-added
// first, and the lane is created after the engines). This hook, added after the
// lane's function, runs before that disposal: from here workers emit nothing.
static void lane_cleanup (void *arg) {
  (void)ring_close(arg);
}

static void lane_finalize (napi_env env, void *data, void *hint) {
  (void)env; (void)data; (void)hint;
  // The workers hold the lane (e->lane) for as long as they run and the lane is
  // one per process: it is left to the process's exit rather than raced here.
}

// What createLane allocated, on its error paths (a created lane is never freed: see lane_finalize).
static void lane_free (lane_t *ln) {
  for (int i = 0; i < KT_LANE_MAX_ENGINES; i++) free(ln->les[i]);
  free(ln->backend_active);
  free(ln->backend_failed);
  free(ln->backend_refs);
  free(ln->hist);
  free(ln);
  KT_PROBE_ADD(KT_PROBE_LIVE_LANES, -1);
}

// The connect-latency bounds (seconds, ascending) into ln; an error message, or NULL.
static const char *read_bounds (napi_env env, napi_value arr, lane_t *ln) {
  uint32_t nb = 0;
  napi_get_array_length(env, arr, &nb);
  if (nb > KT_HIST_MAX) return "createLane: too many connect buckets";
  for (uint32_t i = 0; i < nb; i++) {
    napi_value v;
    double d;
    napi_get_element(env, arr, i, &v);
    if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0) || d > 1e6) return "createLane: bad connect bucket";
    ln->hist_bound_ns[i] = (uint64_t)(d * 1e9 + 0.5);
    if (i > 0 && ln->hist_bound_ns[i] <= ln->hist_bound_ns[i - 1]) return "createLane: connect buckets must ascend";
  }
  ln->hist_n = (int)nb;
  return NULL;
}

// createLane(engines: object[], onEvents: (records: Float64Array) => void, connectBuckets?: number[] (seconds, ascending)) -> lane
// Everything is checked and allocated before the first side effect (the
// threadsafe function, the engines' index and attach): every failure frees
// what was allocated and leaves the engines as they were.
static napi_value js_create_lane (napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool is_arr = false;
  if (argc < 2 || napi_is_array(env, argv[0], &is_arr) != napi_ok || !is_arr) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "createLane(engines, onEvents)");
  uint32_t n = 0;
  napi_get_array_length(env, argv[0], &n);
  if (n == 0 || n > KT_LANE_MAX_ENGINES) return throw_msg(env, "ERR_INVALID_ARG_VALUE", "createLane: 1 to 64 engines");
  engine_t *es[KT_LANE_MAX_ENGINES];
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    napi_get_element(env, argv[0], i, &v);
    es[i] = kt_get_engine(env, v);
    if (es[i] == NULL) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "createLane: not a splice engine");
  }
  lane_t *ln = KT_ALLOC(KT_SITE_LANE, sizeof *ln);
  if (ln == NULL) return throw_msg(env, "ENOMEM", "createLane");
  memset(ln, 0, sizeof *ln);
  KT_PROBE_ADD(KT_PROBE_LIVE_LANES, 1);
  const char *code = "ENOMEM", *msg = "createLane";
  bool has_bounds = false;
  if (argc >= 3 && napi_is_array(env, argv[2], &has_bounds) == napi_ok && has_bounds) {
    msg = read_bounds(env, argv[2], ln);
    if (msg != NULL) { code = "ERR_INVALID_ARG_VALUE"; goto fail; }
    msg = "createLane";
    ln->hist = calloc(KT_LANE_MAX_BACKENDS, sizeof *ln->hist);
    if (ln->hist == NULL) goto fail;
  }
  ln->backend_active = calloc(KT_LANE_MAX_BACKENDS, sizeof *ln->backend_active);
  ln->backend_failed = calloc(KT_LANE_MAX_BACKENDS, sizeof *ln->backend_failed);
  ln->backend_refs = calloc(KT_LANE_MAX_BACKENDS, sizeof *ln->backend_refs);
  if (ln->backend_active == NULL || ln->backend_failed == NULL || ln->backend_refs == NULL) goto fail;
  for (uint32_t i = 0; i < n; i++) {
    ln->les[i] = calloc(1, sizeof(lane_engine_t));
    if (ln->les[i] == NULL) goto fail;
    ln->les[i]->lane = ln;
  }
  napi_value name;
  napi_create_string_utf8(env, "kind-tunnel native lane", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, NULL, NULL, ln, ring_deliver, &ln->tsfn) != napi_ok) {
    msg = "createLane: threadsafe function";
    goto fail;
  }
  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok || napi_wrap(env, obj, ln, lane_finalize, NULL, NULL) != napi_ok) {
    napi_release_threadsafe_function(ln->tsfn, napi_tsfn_abort);
    goto fail;
  }
  napi_type_tag_object(env, obj, &kLaneTag);
  napi_unref_threadsafe_function(env, ln->tsfn);
  pthread_mutex_init(&ln->rmu, NULL);
  atomic_store(&ln->cap_total, 10000);
  for (uint32_t i = 0; i < n; i++) {
    ln->engines[i] = es[i];
    es[i]->index = (int)i;  // read by the worker only after the attach command below
  }
  ln->n = (int)n;
  napi_add_env_cleanup_hook(env, lane_cleanup, ln);
  lane_listener_cmd(ln, L_ATTACH, NULL);
  return obj;
fail:
  lane_free(ln);
  return throw_msg(env, code, msg);
}

static void listener_finalize (napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  listener_unref(data);
}

// listen(lane, id, fd, start = true) -> listener: adopt a bound, listening TCP socket (dup'd; JS then closes its own handle).
// start false: the workers accept only after start(listener), so JS can push
// the source ranges (and backends) first: no connection waiting in the
// backlog is accepted before the listener's ranges are in place.
static napi_value js_listen (napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  lane_t *ln = argc >= 3 ? unwrap_tagged(env, argv[0], &kLaneTag) : NULL;
  if (ln == NULL) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "listen(lane, id, fd)");
  double id;
  int32_t fd;
  if (napi_get_value_double(env, argv[1], &id) != napi_ok || napi_get_value_int32(env, argv[2], &fd) != napi_ok || fd < 0) {
    return throw_msg(env, "ERR_INVALID_ARG_TYPE", "listen(lane, id, fd)");
  }
  int acc = 0;
  socklen_t len = sizeof acc;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0 || !acc) return throw_msg(env, "ENOTSOCK", "listen: not a listening socket");
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) return throw_msg(env, kt_errno_name(errno), "listen: dup failed");
  int fl = fcntl(d, F_GETFL);
  if (fl >= 0 && !(fl & O_NONBLOCK)) (void)fcntl(d, F_SETFL, fl | O_NONBLOCK);
  lane_listener_t *L = calloc(1, sizeof *L);
  if (L == NULL) { close(d); return throw_msg(env, "ENOMEM", "listen"); }
  L->ops = &lane_listener_ops;
  L->lane = ln;
  L->id = id;
  L->fd = d;
  atomic_store(&L->refs, 2);  // the JS handle and the registration
  atomic_store(&L->unlisten_pending, ln->n);
  atomic_store(&L->max_conns, 10000);
  atomic_store(&L->connect_ms, 5000);
  atomic_store(&L->idle_ms, 3600000);
  atomic_store(&L->half_ms, 30000);
  atomic_store(&L->attempts, 3);
  atomic_store(&L->peek_ms, 10000);
  atomic_store(&L->default_group, 0);
  L->listener_acl = -1;
  pthread_mutex_init(&L->mu, NULL);
  napi_value obj;
  napi_create_object(env, &obj);
  if (napi_wrap(env, obj, L, listener_finalize, NULL, NULL) != napi_ok) {
    close(d);
    free(L);
    return throw_msg(env, "ENOMEM", "listen");
  }
  napi_type_tag_object(env, obj, &kListenerTag);
  bool start = true;
  if (argc >= 4) napi_get_value_bool(env, argv[3], &start);
  if (start) {
    atomic_store(&L->started, 1);
    lane_listener_cmd(ln, L_LISTEN, L);
  }
  return obj;
}


lane_listener_t *lane_listener_of (napi_env env, napi_value v) {
  return unwrap_tagged(env, v, &kListenerTag);
}

static lane_listener_t *get_listener (napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < want) return NULL;
  return unwrap_tagged(env, argv[0], &kListenerTag);
}

// start(listener): begin accepting (a listener created with start false).
static napi_value js_start (napi_env env, napi_callback_info info) {
  napi_value argv[1];
  lane_listener_t *L = get_listener(env, info, 1, argv);
  if (L == NULL) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "start(listener)");
  if (atomic_load(&L->stopped)) return NULL;
  atomic_store(&L->started, 1);
  lane_listener_cmd(L->lane, L_LISTEN, L);
  return NULL;
}

// configure(listener, maxConns, connectMs, idleMs, halfMs, attempts, policy, log)
static napi_value js_configure (napi_env env, napi_callback_info info) {
  napi_value argv[8];
  lane_listener_t *L = get_listener(env, info, 8, argv);
  if (L == NULL) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "configure(listener, ...)");
  int32_t v[7];
  for (int i = 0; i < 7; i++) {
    if (napi_get_value_int32(env, argv[1 + i], &v[i]) != napi_ok || v[i] < 0) return throw_msg(env, "ERR_INVALID_ARG_VALUE", "configure: non-negative integers");
  }
  atomic_store(&L->max_conns, v[0]);
  atomic_store(&L->connect_ms, v[1]);
  atomic_store(&L->idle_ms, v[2]);
  atomic_store(&L->half_ms, v[3]);
  atomic_store(&L->attempts, v[4] < 1 ? 1 : (v[4] > 4 ? 4 : v[4]));
  pthread_mutex_lock(&L->mu);
  L->policy = v[5] == 1 ? 1 : 0;
  pthread_mutex_unlock(&L->mu);
  atomic_store(&L->log, v[6] != 0);
  return NULL;
}

// Make group g exist (its backends empty until set). Called with L->mu held.
static int ensure_groups (lane_listener_t *L, int n) {
  if (n <= L->n_groups) return 0;
  group_t *ng = realloc(L->groups, (size_t)n * sizeof *ng);
  if (ng == NULL) return -1;
  memset(ng + L->n_groups, 0, (size_t)(n - L->n_groups) * sizeof *ng);
  L->groups = ng;
  L->n_groups = n;
  return 0;
}

// setBackends(listener, ids: number[], hosts: string[], ports: number[], group = 0): the backends in rotation, in order.
static napi_value js_set_backends (napi_env env, napi_callback_info info) {
  napi_value argv[5];
  size_t argc = 5;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  lane_listener_t *L = argc >= 4 ? unwrap_tagged(env, argv[0], &kListenerTag) : NULL;
  if (L == NULL) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "setBackends(listener, ids, hosts, ports)");
  int32_t group = 0;
  if (argc >= 5 && (napi_get_value_int32(env, argv[4], &group) != napi_ok || group < 0 || group >= KT_LANE_MAX_GROUPS)) {
    return throw_msg(env, "ERR_INVALID_ARG_VALUE", "setBackends: bad group");
  }
  uint32_t n = 0;
  napi_get_array_length(env, argv[1], &n);
  backend_t *bs = n > 0 ? calloc(n, sizeof *bs) : NULL;
  if (n > 0 && bs == NULL) return throw_msg(env, "ENOMEM", "setBackends");
  for (uint32_t i = 0; i < n; i++) {
    napi_value vid, vhost, vport;
    napi_get_element(env, argv[1], i, &vid);
    napi_get_element(env, argv[2], i, &vhost);
    napi_get_element(env, argv[3], i, &vport);
    int32_t id, port;
    char host[64];
    size_t hl = 0;
    if (napi_get_value_int32(env, vid, &id) != napi_ok || id < 0 ||
        napi_get_value_int32(env, vport, &port) != napi_ok || port < 1 || port > 65535 ||
        napi_get_value_string_utf8(env, vhost, host, sizeof host, &hl) != napi_ok) {
      free(bs);
      return throw_msg(env, "ERR_INVALID_ARG_VALUE", "setBackends: bad backend");
    }
    backend_t *b = &bs[i];
    b->id = id;
    struct sockaddr_in *s4 = (void *)&b->addr;
    struct sockaddr_in6 *s6 = (void *)&b->addr;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
      s4->sin_family = AF_INET;
      s4->sin_port = htons((uint16_t)port);
      b->len = sizeof *s4;
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
      s6->sin6_family = AF_INET6;
      s6->sin6_port = htons((uint16_t)port);
      b->len = sizeof *s6;
    } else {
      free(bs);
      return throw_msg(env, "ERR_INVALID_ARG_VALUE", "setBackends: backend host is not an IP address");
    }
  }
  // Histogram slots first: published by the mutex below before any worker can pick the backend.
  lane_t *ln = L->lane;
  for (uint32_t i = 0; ln->hist != NULL && i < n; i++) {
    if (ln->hist[KT_SLOT(bs[i].id)] != NULL) continue;
    ln->hist[KT_SLOT(bs[i].id)] = calloc(1, sizeof(conn_hist_t));  // NULL (no memory): that backend's connects go uncounted
  }
  pthread_mutex_lock(&L->mu);
  if (ensure_groups(L, group + 1) != 0) {
    pthread_mutex_unlock(&L->mu);
    free(bs);
    return throw_msg(env, "ENOMEM", "setBackends");
  }
  backend_t *old = L->groups[group].backends;
  L->groups[group].backends = bs;
  L->groups[group].n = (int)n;
  pthread_mutex_unlock(&L->mu);
  free(old);
  return NULL;
}

int lane_parse_cidr (const char *s, cidr_t *out) {
  char addr[INET6_ADDRSTRLEN + 1];
  const char *slash = strchr(s, '/');
  size_t al = slash != NULL ? (size_t)(slash - s) : strlen(s);
  if (al == 0 || al >= sizeof addr) return -1;
  memcpy(addr, s, al);
  addr[al] = 0;
  int max, off;
  memset(out, 0, sizeof *out);
  if (inet_pton(AF_INET, addr, out->a + 12) == 1) {
    out->a[10] = out->a[11] = 0xff;
    max = 32;
    off = 96;
  } else if (inet_pton(AF_INET6, addr, out->a) == 1) {
    max = 128;
    off = 0;
  } else {
    return -1;
  }
  long bits = max;
  if (slash != NULL) {
    // 1 to 3 decimal digits, as routing/cidr.ts parseCidr (differential-tested).
    const char *d = slash + 1;
    size_t nd = strspn(d, "0123456789");
    if (nd < 1 || nd > 3 || d[nd] != 0) return -1;
    bits = strtol(d, NULL, 10);
    if (bits > max) return -1;
  }
  out->bits = (uint8_t)(off + bits);
  // Clear the host bits: BlockList.addSubnet matches by the prefix alone.
  for (int i = 0; i < 16; i++) {
    int keep = out->bits - 8 * i;
    if (keep >= 8) continue;
    out->a[i] &= keep <= 0 ? 0 : (uint8_t)(0xff00u >> keep);
  }
  return 0;
}

// sets: string[][] -> acl_t[n]; NULL with *err set on a bad argument.
static acl_t *parse_acls (napi_env env, napi_value sets, uint32_t *n_out, const char **err) {
  uint32_t n = 0;
  bool is_arr = false;
  *err = NULL;
  *n_out = 0;
  if (napi_is_array(env, sets, &is_arr) != napi_ok || !is_arr || napi_get_array_length(env, sets, &n) != napi_ok || n > KT_LANE_MAX_ACLS) { *err = "setRoutes: bad source-range sets"; return NULL; }
  if (n == 0) return NULL;
  acl_t *v = calloc(n, sizeof *v);
  if (v == NULL) { *err = "ENOMEM"; return NULL; }
  for (uint32_t i = 0; i < n; i++) {
    napi_value set;
    uint32_t m = 0;
    is_arr = false;
    if (napi_get_element(env, sets, i, &set) != napi_ok || napi_is_array(env, set, &is_arr) != napi_ok || !is_arr ||
        napi_get_array_length(env, set, &m) != napi_ok || m > KT_LANE_MAX_CIDRS) { *err = "setRoutes: bad source-range set"; acls_free(v, (int)n); return NULL; }
    v[i].v = m > 0 ? calloc(m, sizeof *v[i].v) : NULL;
    if (m > 0 && v[i].v == NULL) { *err = "ENOMEM"; acls_free(v, (int)n); return NULL; }
    v[i].n = (int)m;
    for (uint32_t k = 0; k < m; k++) {
      napi_value c;
      char buf[INET6_ADDRSTRLEN + 8];
      size_t bl = 0;
      if (napi_get_element(env, set, k, &c) != napi_ok || napi_get_value_string_utf8(env, c, buf, sizeof buf, &bl) != napi_ok ||
          bl >= sizeof buf - 1 || lane_parse_cidr(buf, &v[i].v[k]) != 0) { *err = "setRoutes: bad source range"; acls_free(v, (int)n); return NULL; }
    }
  }
  *n_out = n;
  return v;
}

// setRoutes(listener, routed, names: string[], wild: number[], groups: number[], defaultGroup, peekMs, nGroups,
//           acls?: number[], listenerAcl?: number, aclSets?: string[][]):
// the hostname routes (normalised and deduplicated by JS, first wins, as
// HostMatcher), the default group (-1: none) and how many groups there are;
// then the source ranges: each route's set (-1: everyone), the listener's own
// set (-1: everyone) and the sets as CIDR strings. Swapped in under the
// listener's mutex together with the routes: a connection being matched sees
// the old table or the new one, never a mix, never freed memory.
static napi_value js_set_routes (napi_env env, napi_callback_info info) {
  napi_value argv[11];
  size_t argc = 11;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  lane_listener_t *L = argc >= 11 ? unwrap_tagged(env, argv[0], &kListenerTag) : NULL;
  if (L == NULL) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "setRoutes(listener, routed, names, wild, groups, defaultGroup, peekMs, nGroups, acls, listenerAcl, aclSets)");
  int32_t routed, def, peek_ms, n_groups;
  uint32_t n = 0;
  if (napi_get_value_int32(env, argv[1], &routed) != napi_ok || napi_get_value_int32(env, argv[5], &def) != napi_ok ||
      napi_get_value_int32(env, argv[6], &peek_ms) != napi_ok || napi_get_value_int32(env, argv[7], &n_groups) != napi_ok ||
      peek_ms < 0 || n_groups < 1 || n_groups > KT_LANE_MAX_GROUPS || def < -1 || def >= n_groups ||
      napi_get_array_length(env, argv[2], &n) != napi_ok || n > KT_LANE_MAX_ROUTES) {
    return throw_msg(env, "ERR_INVALID_ARG_VALUE", "setRoutes: bad arguments");
  }
  // Source ranges.
  int32_t listener_acl = -1;
  uint32_t n_acls = 0;
  bool has_acl_arr = false;
  const char *aerr = NULL;
  acl_t *acls = parse_acls(env, argv[10], &n_acls, &aerr);
  if (aerr != NULL) return throw_msg(env, strcmp(aerr, "ENOMEM") == 0 ? "ENOMEM" : "ERR_INVALID_ARG_VALUE", aerr);
  if (napi_get_value_int32(env, argv[9], &listener_acl) != napi_ok || listener_acl < -1 || listener_acl >= (int32_t)n_acls ||
      napi_is_array(env, argv[8], &has_acl_arr) != napi_ok || !has_acl_arr) {
    acls_free(acls, (int)n_acls);
    return throw_msg(env, "ERR_INVALID_ARG_VALUE", "setRoutes: bad listener source-range set");
  }
  kt_route_t *v = n > 0 ? calloc(n, sizeof *v) : NULL;
  if (n > 0 && v == NULL) { acls_free(acls, (int)n_acls); return throw_msg(env, "ENOMEM", "setRoutes"); }
  kt_routes_t nr = { v, 0, 0 };
  for (uint32_t i = 0; i < n; i++) {
    napi_value vn, vw, vg;
    napi_get_element(env, argv[2], i, &vn);
    napi_get_element(env, argv[3], i, &vw);
    napi_get_element(env, argv[4], i, &vg);
    char raw[KT_PEEK_NAME_MAX + 2], norm[KT_PEEK_NAME_MAX + 1];
    size_t rl = 0;
    int32_t w, g;
    uint16_t nl = 0;
    // Names must already be in normal form: normalising again must not change them.
    if (napi_get_value_string_utf8(env, vn, raw, sizeof raw, &rl) != napi_ok || rl > KT_PEEK_NAME_MAX ||
        kt_normalize_hostname((const uint8_t *)raw, rl, norm, &nl) != 0 || nl != rl || memcmp(norm, raw, rl) != 0 ||
        napi_get_value_int32(env, vw, &w) != napi_ok || napi_get_value_int32(env, vg, &g) != napi_ok || g < 0 || g >= n_groups) {
      nr.n = (int)i;
      kt_routes_free(&nr);
      acls_free(acls, (int)n_acls);
      return throw_msg(env, "ERR_INVALID_ARG_VALUE", "setRoutes: bad route");
    }
    int32_t a = -1;
    if (has_acl_arr) {
      napi_value va;
      if (napi_get_element(env, argv[8], i, &va) != napi_ok || napi_get_value_int32(env, va, &a) != napi_ok || a < -1 || a >= (int32_t)n_acls) {
        nr.n = (int)i;
        kt_routes_free(&nr);
        acls_free(acls, (int)n_acls);
        return throw_msg(env, "ERR_INVALID_ARG_VALUE", "setRoutes: bad route source-range set");
      }
    }
    v[i].name = malloc(rl > 0 ? rl : 1);
    if (v[i].name == NULL) { nr.n = (int)i; kt_routes_free(&nr); acls_free(acls, (int)n_acls); return throw_msg(env, "ENOMEM", "setRoutes"); }
    memcpy(v[i].name, raw, rl);
    v[i].len = (uint16_t)rl;
    v[i].wild = w != 0;
    v[i].group = g;
    v[i].acl = a;
  }
  kt_routes_build(&nr, v, (int)n);
  pthread_mutex_lock(&L->mu);
  if (ensure_groups(L, n_groups) != 0) {
    pthread_mutex_unlock(&L->mu);
    kt_routes_free(&nr);
    acls_free(acls, (int)n_acls);
    return throw_msg(env, "ENOMEM", "setRoutes");
  }
  // Groups no route points at any more: new connections cannot pick them.
  for (int i = n_groups; i < L->n_groups; i++) { free(L->groups[i].backends); L->groups[i].backends = NULL; L->groups[i].n = 0; }
  L->n_groups = n_groups;
  kt_routes_t old = L->routes;
  L->routes = nr;
  atomic_store(&L->default_group, def);
  acl_t *old_acls = L->acls;
  int old_n_acls = L->n_acls;
  L->acls = acls;
  L->n_acls = (int)n_acls;
  L->listener_acl = listener_acl;
  atomic_store(&L->has_listener_acl, listener_acl >= 0);
  pthread_mutex_unlock(&L->mu);
  kt_routes_free(&old);
  acls_free(old_acls, old_n_acls);
  atomic_store(&L->peek_ms, peek_ms);
  atomic_store(&L->routed, routed != 0);
  return NULL;
}

// stop(listener): no new accepts from now on; pairs continue.
static napi_value js_stop (napi_env env, napi_callback_info info) {
  napi_value argv[1];
  lane_listener_t *L = get_listener(env, info, 1, argv);
  if (L == NULL) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "stop(listener)");
  if (atomic_exchange(&L->stopped, 1)) return NULL;
  lane_listener_cmd(L->lane, L_UNLISTEN, L);
  return NULL;
}

// dupFd(listener) -> a new descriptor of the listening socket (hand-back to JS; call before stop).
static napi_value js_dup_fd (napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  lane_listener_t *L = get_listener(env, info, 1, argv);
  if (L == NULL) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "dupFd(listener)");
  if (atomic_load(&L->stopped) || L->fd < 0) return throw_msg(env, "EBADF", "dupFd: the listener is stopped");
  int d = fcntl(L->fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) return throw_msg(env, kt_errno_name(errno), "dupFd failed");
  napi_create_int32(env, d, &out);
  return out;
}

// abort(listener): reset every pair of this listener now (drain timeout).
static napi_value js_abort_listener (napi_env env, napi_callback_info info) {
  napi_value argv[1];
  lane_listener_t *L = get_listener(env, info, 1, argv);
  if (L == NULL) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "abortListener(listener)");
  lane_listener_cmd(L->lane, L_ABORT, L);
  return NULL;
}

// stats(listener, out: Float64Array(S_COUNT))
static napi_value js_listener_stats (napi_env env, napi_callback_info info) {
  napi_value argv[2];
  lane_listener_t *L = get_listener(env, info, 2, argv);
  if (L == NULL) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "listenerStats(listener, out)");
  napi_typedarray_type t;
  size_t len;
  void *data;
  if (napi_get_typedarray_info(env, argv[1], &t, &len, &data, NULL, NULL) != napi_ok || t != napi_float64_array || len < S_COUNT) {
    return throw_msg(env, "ERR_INVALID_ARG_TYPE", "listenerStats: out must be a Float64Array");
  }
  double *o = data;
  o[S_ACCEPTED] = (double)atomic_load(&L->accepted);
  for (int i = 0; i < O_COUNT; i++) o[S_OUTCOMES + i] = (double)atomic_load(&L->outcomes[i]);
  o[S_BYTES_IN] = (double)atomic_load(&L->bytes_in);
  o[S_BYTES_OUT] = (double)atomic_load(&L->bytes_out);
  o[S_ACTIVE] = atomic_load(&L->active);
  o[S_EMFILE] = (double)atomic_load(&L->emfile);
  o[S_ACCEPT_OTHER] = (double)atomic_load(&L->accept_other);
  o[S_DROPPED] = (double)atomic_load(&L->lane->dropped);
  for (int i = 0; i < R_COUNT; i++) o[S_ROUTES + i] = (double)atomic_load(&L->routes_out[i]);
  return NULL;
}

// What a per-backend query answers from a lane and the backend's slot.
typedef napi_value (*backend_query_t) (napi_env env, lane_t *ln, uint32_t slot);

// Parse (lane, id) with id >= 0 and answer `query` for the id's slot; NULL
// with an exception thrown on bad arguments. The one argument path of the
// per-backend calls below.
static napi_value backend_query (napi_env env, napi_callback_info info, const char *usage, backend_query_t query) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  lane_t *ln = argc >= 2 ? unwrap_tagged(env, argv[0], &kLaneTag) : NULL;
  int32_t id = -1;
  if (ln == NULL || napi_get_value_int32(env, argv[1], &id) != napi_ok || id < 0) return throw_msg(env, "ERR_INVALID_ARG_TYPE", usage);
  return query(env, ln, KT_SLOT(id));
}

static napi_value backend_active_of (napi_env env, lane_t *ln, uint32_t slot) {
  napi_value out;
  napi_create_int32(env, atomic_load(&ln->backend_active[slot]), &out);
  return out;
}

// Whether the slot may be given to another backend: no pair holds it (JS has
// already pushed every list without it). Its failure flag is cleared for the
// next backend.
static napi_value backend_free_of (napi_env env, lane_t *ln, uint32_t slot) {
  napi_value out;
  bool free_now = atomic_load(&ln->backend_refs[slot]) == 0;
  if (free_now) atomic_store(&ln->backend_failed[slot], 0);
  napi_get_boolean(env, free_now, &out);
  return out;
}

// backendActive(lane, id) -> lane pairs using that backend now
static napi_value js_backend_active (napi_env env, napi_callback_info info) {
  return backend_query(env, info, "backendActive(lane, id)", backend_active_of);
}

// backendFree(lane, id) -> whether the id's slot may be given to another backend
static napi_value js_backend_free (napi_env env, napi_callback_info info) {
  return backend_query(env, info, "backendFree(lane, id)", backend_free_of);
}

// connectStats(lane, id, out: Float64Array(n + 2)) -> false when the backend has no slot:
// out[0] the sum in seconds, out[1..n+1] the per-bucket counts (the last one past every bound).
static napi_value js_connect_stats (napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  lane_t *ln = argc >= 3 ? unwrap_tagged(env, argv[0], &kLaneTag) : NULL;
  int32_t id = -1;
  napi_typedarray_type t;
  size_t len = 0;
  void *data = NULL;
  if (ln == NULL || napi_get_value_int32(env, argv[1], &id) != napi_ok || id < 0 ||
      napi_get_typedarray_info(env, argv[2], &t, &len, &data, NULL, NULL) != napi_ok || t != napi_float64_array || len < (size_t)ln->hist_n + 2) {
    return throw_msg(env, "ERR_INVALID_ARG_TYPE", "connectStats(lane, id, out)");
  }
  conn_hist_t *h = ln->hist != NULL ? ln->hist[KT_SLOT(id)] : NULL;
  double *o = data;
  if (h != NULL) {
    o[0] = (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9;
    for (int i = 0; i <= ln->hist_n; i++) o[1 + i] = (double)atomic_load_explicit(&h->b[i], memory_order_relaxed);
  }
  napi_get_boolean(env, h != NULL, &out);
  return out;
}

// setCap(lane, n): the global cap left for lane pairs (JS subtracts its own connections).
static napi_value js_set_cap (napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  lane_t *ln = argc >= 2 ? unwrap_tagged(env, argv[0], &kLaneTag) : NULL;
  int32_t cap;
  if (ln == NULL || napi_get_value_int32(env, argv[1], &cap) != napi_ok) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "setCap(lane, n)");
  atomic_store(&ln->cap_total, cap < 0 ? 0 : cap);
  return NULL;
}

// laneRef(lane, on): keep the process up while lane listeners or pairs live (JS closed its server handle).
static napi_value js_lane_ref (napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  lane_t *ln = argc >= 2 ? unwrap_tagged(env, argv[0], &kLaneTag) : NULL;
  if (ln == NULL) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "laneRef(lane, on)");
  bool on = false;
  napi_get_value_bool(env, argv[1], &on);
  if (ln->closed) return NULL;
  if (on) napi_ref_threadsafe_function(env, ln->tsfn);
  else napi_unref_threadsafe_function(env, ln->tsfn);
  return NULL;
}

// laneClose(lane): no more events to JS (the splicer's close() stops the workers).
static napi_value js_lane_close (napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  lane_t *ln = argc >= 1 ? unwrap_tagged(env, argv[0], &kLaneTag) : NULL;
  if (ln == NULL) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "laneClose(lane)");
  if (!ring_close(ln)) {
    napi_release_threadsafe_function(ln->tsfn, napi_tsfn_release);
#ifdef KT_TEST_HOOKS
    atomic_store(&ln->released, 1);
#endif
  }
  return NULL;
}

// ---------------------------------------------------------------- test hooks (differential tests)

// peekParse(buf, cuts?: number[]) -> [kind, reason, proto, name | undefined, decidedAt]
// Feeds buf[0..cut) for each cut in order, then the whole buffer, to one parser
// state: the same incremental path the lane takes on each read.
static napi_value js_peek_parse (napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool is_buf = false;
  if (argc < 1 || napi_is_buffer(env, argv[0], &is_buf) != napi_ok || !is_buf) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "peekParse(buf, cuts)");
  void *data;
  size_t len;
  napi_get_buffer_info(env, argv[0], &data, &len);
  kt_peek_t k;
  kt_peek_init(&k, KT_PEEK_MAX_MESSAGE);
  int kind = KP_NEED_MORE;
  double decided = -1;
  uint32_t n = 0;
  bool is_arr = false;
  if (argc >= 2 && napi_is_array(env, argv[1], &is_arr) == napi_ok && is_arr) napi_get_array_length(env, argv[1], &n);
  size_t last = 0;
  for (uint32_t i = 0; i <= n; i++) {
    size_t cut = len;
    if (i < n) {
      napi_value v;
      double d;
      napi_get_element(env, argv[1], i, &v);
      if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0)) continue;
      cut = d > (double)len ? len : (size_t)d;
      if (cut <= last) continue;  // only growing lengths, as reads give
    }
    last = cut;
    kind = kt_peek_feed(&k, (const uint8_t *)data, cut);
    if (kind != KP_NEED_MORE && decided < 0) decided = (double)cut;
  }
  napi_value out, v;
  napi_create_array_with_length(env, 5, &out);
  napi_create_int32(env, kind, &v); napi_set_element(env, out, 0, v);
  napi_create_int32(env, k.reason, &v); napi_set_element(env, out, 1, v);
  napi_create_int32(env, k.proto, &v); napi_set_element(env, out, 2, v);
  if (kind == KP_SNI || kind == KP_HOST) napi_create_string_latin1(env, k.name, k.name_len, &v);
  else napi_get_undefined(env, &v);
  napi_set_element(env, out, 3, v);
  napi_create_double(env, decided, &v); napi_set_element(env, out, 4, v);
  return out;
}

// peekMatch(names: string[], wild: number[], name: string) -> index of the matching entry, or -1.
static napi_value js_peek_match (napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t n = 0;
  if (argc < 3 || napi_get_array_length(env, argv[0], &n) != napi_ok || n > KT_LANE_MAX_ROUTES) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "peekMatch(names, wild, name)");
  kt_route_t *v = calloc(n > 0 ? n : 1, sizeof *v);
  if (v == NULL) return throw_msg(env, "ENOMEM", "peekMatch");
  for (uint32_t i = 0; i < n; i++) {
    napi_value vn, vw;
    char raw[KT_PEEK_NAME_MAX + 2];
    size_t rl = 0;
    int32_t w = 0;
    napi_get_element(env, argv[0], i, &vn);
    napi_get_element(env, argv[1], i, &vw);
    napi_get_value_string_utf8(env, vn, raw, sizeof raw, &rl);
    napi_get_value_int32(env, vw, &w);
    v[i].name = malloc(rl > 0 ? rl : 1);
    if (v[i].name != NULL) memcpy(v[i].name, raw, rl);
    v[i].len = (uint16_t)(v[i].name != NULL ? rl : 0);
    v[i].wild = w != 0;
    v[i].group = (int32_t)i;
  }
  kt_routes_t r;
  kt_routes_build(&r, v, (int)n);
  char name[1024], norm[KT_PEEK_NAME_MAX + 1];
  size_t nl = 0;
  uint16_t ml = 0;
  napi_get_value_string_latin1(env, argv[2], name, sizeof name, &nl);
  // HostMatcher.match normalises the client's name first.
  int32_t g = kt_normalize_hostname((const uint8_t *)name, nl, norm, &ml) == 0 ? kt_routes_match(&r, norm, ml) : -1;
  kt_routes_free(&r);
  napi_create_int32(env, g, &out);
  return out;
}

void kt_lane_init (napi_env env, napi_value exports) {
  napi_value vocab;
  napi_create_string_utf8(env, KT_VOCAB_HASH, NAPI_AUTO_LENGTH, &vocab);
  napi_property_descriptor props[] = {
    { "createLane", NULL, js_create_lane, NULL, NULL, NULL, napi_enumerable, NULL },
    { "laneListen", NULL, js_listen, NULL, NULL, NULL, napi_enumerable, NULL },
    { "laneConfigure", NULL, js_configure, NULL, NULL, NULL, napi_enumerable, NULL },
    { "laneSetBackends", NULL, js_set_backends, NULL, NULL, NULL, napi_enumerable, NULL },
    { "laneSetRoutes", NULL, js_set_routes, NULL, NULL, NULL, napi_enumerable, NULL },
    { "peekParse", NULL, js_peek_parse, NULL, NULL, NULL, napi_enumerable, NULL },
    { "peekMatch", NULL, js_peek_match, NULL, NULL, NULL, napi_enumerable, NULL },
    { "laneStop", NULL, js_stop, NULL, NULL, NULL, napi_enumerable, NULL },
    { "laneDupFd", NULL, js_dup_fd, NULL, NULL, NULL, napi_enumerable, NULL },
    { "laneAbort", NULL, js_abort_listener, NULL, NULL, NULL, napi_enumerable, NULL },
    { "laneStats", NULL, js_listener_stats, NULL, NULL, NULL, napi_enumerable, NULL },
    { "laneBackendActive", NULL, js_backend_active, NULL, NULL, NULL, napi_enumerable, NULL },
    { "laneBackendFree", NULL, js_backend_free, NULL, NULL, NULL, napi_enumerable, NULL },
    { "laneSetCap", NULL, js_set_cap, NULL, NULL, NULL, napi_enumerable, NULL },
    { "laneRef", NULL, js_lane_ref, NULL, NULL, NULL, napi_enumerable, NULL },
    { "laneClose", NULL, js_lane_close, NULL, NULL, NULL, napi_enumerable, NULL },
    { "laneStart", NULL, js_start, NULL, NULL, NULL, napi_enumerable, NULL },
    { "laneConnectStats", NULL, js_connect_stats, NULL, NULL, NULL, napi_enumerable, NULL },
    { "laneRelay", NULL, relay_js_configure, NULL, NULL, NULL, napi_enumerable, NULL },
    { "laneRelayStats", NULL, relay_js_stats, NULL, NULL, NULL, napi_enumerable, NULL },
    { "laneRelayQuiet", NULL, relay_js_quiet, NULL, NULL, NULL, napi_enumerable, NULL },
    { "vocabHash", NULL, NULL, NULL, NULL, vocab, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  relay_hooks_init(env, exports);
}
