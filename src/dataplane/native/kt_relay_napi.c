// The relay listener's JS-thread side (kt_relay.c is its worker side):
// laneRelay configures a lane listener as a relay listener, laneRelayStats
// and laneRelayQuiet read and close it, and three differential-test entry
// points run kt_relay.c's checks on inputs from the tests
// (test/relay/native-lane.test.ts compares them with the TS originals).

#include "kt_lane.h"

#define RELAY_AUTH_LEN 46

// ---------------------------------------------------------------- configuration (JS thread)


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

// laneRelay(listener, token: Buffer, windowMs, headerMs, idleMs, info, allow: string[], portMin, portMax, extra: number[][, mux = true]):
// make a listener (laneListen with start false, before laneStart) a relay listener.
// `mux` false hands multiplexed carriers back to JS instead of serving them (kt_mux.c).
napi_value relay_js_configure (napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  lane_listener_t *L = argc >= 10 ? lane_listener_of(env, argv[0]) : NULL;
  if (L == NULL) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "laneRelay(listener, token, windowMs, headerMs, idleMs, info, allow, portMin, portMax, extra)");
  if (L->relay != NULL) return throw_msg(env, "ERR_INVALID_STATE", "laneRelay: already a relay listener");
  if (atomic_load(&L->started)) return throw_msg(env, "ERR_INVALID_STATE", "laneRelay: the listener already accepts (laneListen with start false, then laneRelay, then laneStart)");
  if (!crypto_ready()) return throw_msg(env, "ENOSYS", "laneRelay: this Node.js exports no SHA-256 (OpenSSL symbols)");
  bool is_buf = false;
  void *tok = NULL;
  size_t tl = 0;
  if (napi_is_buffer(env, argv[1], &is_buf) != napi_ok || !is_buf) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "laneRelay: token must be a Buffer");
  napi_get_buffer_info(env, argv[1], &tok, &tl);
  if (tl < 16 || tl > 64) return throw_msg(env, "ERR_INVALID_ARG_VALUE", "laneRelay: token must be 16-64 bytes");
  bool mux = true;
  if (argc >= 11 && napi_get_value_bool(env, argv[10], &mux) != napi_ok) return throw_msg(env, "ERR_INVALID_ARG_TYPE", "laneRelay: mux must be a boolean");
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
  relay_cfg_t *c = relay_cfg_new(v[0], wall_ms());
  if (c == NULL) return throw_msg(env, "ENOMEM", "laneRelay");
  hmac_key(&c->mac, tok, tl);
  c->header_ms = v[1];
  c->idle_ms = v[2];
  c->info = (uint8_t)v[3];
  c->mux = mux ? 1 : 0;
  c->port_min = (uint16_t)pmin;
  c->port_max = (uint16_t)pmax;
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
  o[RS_NONCES] = (double)(L->relay->gen[0].n + L->relay->gen[1].n + L->relay->gen[2].n);
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
  atomic_store(&L->relay->quiet, 1);
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
  relay_cfg_t *c = relay_cfg_new(w, start);
  if (c == NULL) return throw_msg(env, "ENOMEM", "relayNonceScript");
  c->max = (size_t)mx;
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
  relay_cfg_t *c = relay_cfg_new(1, 0);
  if (c == NULL) return throw_msg(env, "ENOMEM", "relayAllowScript");
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
  if (!crypto_ready()) return throw_msg(env, "ENOSYS", "relayMacCheck: no SHA-256 in this process");
  relay_mac_t m;
  hmac_key(&m, tok, tl);
  napi_get_boolean(env, mac_ok(&m, auth), &out);
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
