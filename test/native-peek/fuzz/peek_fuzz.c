// libFuzzer target for kt_peek.c, the native first-flight parser and hostname
// matcher (untrusted bytes from any client). See README.md here for how to run.
//
// Per input:
//  (a) the parser over the whole input, from a heap copy of exactly that size
//      (ASAN then flags any read past the bytes present);
//  (b) the same input fed as a read loop would: cut at a split point derived
//      from the first byte, and one byte (or one stride) at a time, each call
//      over an exact-size copy of the bytes "read" so far. Every way must give
//      the same kind, reason, protocol, name and decision offset; a mismatch
//      aborts (libFuzzer reports it as a crash with the input);
//  (c) the matcher, with a route table built from the input (the parsed name,
//      its suffixes, and NUL-separated chunks of the input that normalise),
//      against a linear reference of HostMatcher.match semantics.

#include "kt_peek.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct result {
  int kind, reason, proto;
  uint16_t name_len;
  char name[KT_PEEK_NAME_MAX + 1];
  size_t decided;  // the fed length at which the parser decided (0: never)
} result_t;

static void fail (const char *what, const result_t *a, const result_t *b) {
  fprintf(stderr, "peek_fuzz: %s: kind %d/%d reason %d/%d proto %d/%d decided %zu/%zu name '%.*s'/'%.*s'\n", what,
    a->kind, b->kind, a->reason, b->reason, a->proto, b->proto, a->decided, b->decided,
    a->name_len, a->name, b->name_len, b->name);
  abort();
}

static void take (result_t *r, const kt_peek_t *k, int kind, size_t at) {
  r->kind = kind;
  r->reason = k->reason;
  r->proto = k->proto;
  r->name_len = 0;
  r->name[0] = 0;
  if (kind == KP_SNI || kind == KP_HOST) {
    r->name_len = k->name_len;
    memcpy(r->name, k->name, k->name_len);
    r->name[k->name_len] = 0;
  }
  r->decided = kind == KP_NEED_MORE ? 0 : at;
}

// Feed growing prefixes ending at each of cuts[0..n) (then the whole input),
// each from a fresh exact-size heap copy, as the lane's read loop presents them.
static void feed_cuts (const uint8_t *data, size_t size, const size_t *cuts, size_t n, result_t *out) {
  kt_peek_t k;
  kt_peek_init(&k, KT_PEEK_MAX_MESSAGE);
  int kind = KP_NEED_MORE;
  size_t decided = 0;
  size_t last = 0;
  for (size_t i = 0; i <= n; i++) {
    size_t cut = i < n ? cuts[i] : size;
    if (cut <= last || cut > size) continue;
    last = cut;
    uint8_t *copy = malloc(cut);
    if (copy == NULL) abort();
    memcpy(copy, data, cut);
    int prev = kind;
    kind = kt_peek_feed(&k, copy, cut);
    free(copy);
    if (prev != KP_NEED_MORE && kind != prev) { fprintf(stderr, "peek_fuzz: a final outcome changed\n"); abort(); }
    if (kind != KP_NEED_MORE && decided == 0) decided = cut;
    if (kind != KP_NEED_MORE) break;  // the lane stops reading here
  }
  take(out, &k, kind, decided);
}

static int same (const result_t *a, const result_t *b) {
  return a->kind == b->kind && a->reason == b->reason && a->proto == b->proto && a->name_len == b->name_len &&
    memcmp(a->name, b->name, a->name_len) == 0;
}

// The names a route table can hold: normal form, 1..253 bytes.
static int is_normal (const char *s, size_t n) {
  char out[KT_PEEK_NAME_MAX + 1];
  uint16_t ol = 0;
  if (kt_normalize_hostname((const uint8_t *)s, n, out, &ol) != 0) return 0;
  return ol == n && memcmp(out, s, n) == 0;
}

// hostmatch.ts HostMatcher.match, linearly: an exact entry, else the longest
// wildcard suffix with at least one label in front of it.
static int32_t ref_match (const kt_route_t *v, int n, const char *name, size_t len) {
  for (int i = 0; i < n; i++) if (!v[i].wild && v[i].len == len && memcmp(v[i].name, name, len) == 0) return v[i].group;
  for (size_t i = 0; i < len; i++) {
    if (name[i] != '.') continue;
    const char *suf = name + i + 1;
    size_t sl = len - i - 1;
    for (int j = 0; j < n; j++) if (v[j].wild && v[j].len == sl && memcmp(v[j].name, suf, sl) == 0) return v[j].group;
  }
  return -1;
}

#define MAX_ROUTES 64

static int add_route (kt_route_t *v, int n, const char *s, size_t len, int wild, int32_t group) {
  if (n >= MAX_ROUTES || len == 0 || !is_normal(s, len)) return n;
  // JS deduplicates (first wins) before pushing; the table must not hold duplicates.
  for (int i = 0; i < n; i++) if (v[i].wild == wild && v[i].len == len && memcmp(v[i].name, s, len) == 0) return n;
  v[n].name = malloc(len);
  if (v[n].name == NULL) abort();
  memcpy(v[n].name, s, len);
  v[n].len = (uint16_t)len;
  v[n].wild = (uint8_t)wild;
  v[n].group = group;
  return n + 1;
}

static void check_match (const kt_routes_t *r, const kt_route_t *copy, int n, const char *name, size_t len) {
  int32_t got = kt_routes_match(r, name, len);
  int32_t want = ref_match(copy, n, name, len);
  if (got != want) {
    fprintf(stderr, "peek_fuzz: match '%.*s' gave %d, reference %d\n", (int)len, name, got, want);
    abort();
  }
}

static void fuzz_matcher (const uint8_t *data, size_t size, const result_t *res) {
  kt_route_t *v = calloc(MAX_ROUTES, sizeof *v);
  if (v == NULL) abort();
  int n = 0;
  uint8_t sel = size > 0 ? data[0] : 0;
  // The parsed name and its suffixes, exact or wildcard as bits of the first byte say.
  if (res->name_len > 0) {
    const char *nm = res->name;
    size_t nl = res->name_len;
    n = add_route(v, n, nm, nl, sel & 1, 0);
    int bit = 1;
    for (size_t i = 0; i < nl; i++) {
      if (nm[i] != '.') continue;
      n = add_route(v, n, nm + i + 1, nl - i - 1, (sel >> (bit & 7)) & 1, bit);
      bit++;
    }
  }
  // NUL-separated chunks of the input, lowercased: whatever normalises becomes an entry.
  size_t start = 0;
  for (size_t i = 0; i <= size && n < MAX_ROUTES; i++) {
    if (i < size && data[i] != 0) continue;
    size_t len = i - start;
    if (len > 0 && len <= KT_PEEK_NAME_MAX) {
      char norm[KT_PEEK_NAME_MAX + 1];
      uint16_t nl = 0;
      if (kt_normalize_hostname(data + start, len, norm, &nl) == 0) n = add_route(v, n, norm, nl, (int)(len & 1), (int32_t)(100 + n));
    }
    start = i + 1;
  }
  // Keep a copy of the unsorted table for the reference (build sorts in place).
  kt_route_t copy[MAX_ROUTES];
  memcpy(copy, v, (size_t)n * sizeof *v);
  kt_route_t *owned = n > 0 ? v : NULL;
  if (n == 0) free(v);
  kt_routes_t r;
  kt_routes_build(&r, owned, n);
  if (res->name_len > 0) check_match(&r, copy, n, res->name, res->name_len);
  // Every entry's name, as a client name, and with one label put in front.
  for (int i = 0; i < n; i++) {
    check_match(&r, copy, n, copy[i].name, copy[i].len);
    char buf[KT_PEEK_NAME_MAX + 3];
    if (copy[i].len + 2 <= KT_PEEK_NAME_MAX) {
      buf[0] = 'x';
      buf[1] = '.';
      memcpy(buf + 2, copy[i].name, copy[i].len);
      check_match(&r, copy, n, buf, copy[i].len + 2u);
    }
  }
  kt_routes_free(&r);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  // (a) whole
  result_t whole;
  feed_cuts(data, size, NULL, 0, &whole);
  if ((whole.kind == KP_SNI || whole.kind == KP_HOST) && !is_normal(whole.name, whole.name_len)) {
    fprintf(stderr, "peek_fuzz: a name not in normal form\n");
    abort();
  }
  if (whole.kind == KP_NEED_MORE && size >= KT_PEEK_TLS_RAW_CAP((size_t)KT_PEEK_MAX_MESSAGE)) {
    fprintf(stderr, "peek_fuzz: undecided past the raw cap (%zu bytes)\n", size);
    abort();
  }
  // (b) split at a point the first and last bytes choose
  size_t cut = ((size_t)data[0] * 257u + data[size - 1]) % (size + 1);
  result_t split;
  feed_cuts(data, size, &cut, 1, &split);
  if (!same(&whole, &split)) fail("whole vs split", &whole, &split);
  // (b) one byte at a time (a stride on long inputs, to bound the copying), plus the split
  // point and its neighbours so a decision right at it is cut every way.
  size_t stride = size <= 2048 ? 1 : 1 + size / 1024;
  size_t ncuts = size / stride + 4;
  size_t *cuts = malloc(ncuts * sizeof *cuts);
  if (cuts == NULL) abort();
  size_t m = 0;
  for (size_t c = 1; c <= size && m < ncuts; c += stride) cuts[m++] = c;
  result_t bytes;
  feed_cuts(data, size, cuts, m, &bytes);
  free(cuts);
  if (!same(&whole, &bytes)) fail("whole vs byte-at-a-time", &whole, &bytes);
  // The decision offset: byte-at-a-time finds the least prefix that decides;
  // that prefix fed whole must decide the same, and one byte less must not.
  if (stride == 1 && bytes.kind != KP_NEED_MORE) {
    result_t at, before;
    size_t d = bytes.decided;
    feed_cuts(data, d, NULL, 0, &at);
    if (!same(&whole, &at)) fail("whole vs decision prefix", &whole, &at);
    if (d > 1) {
      feed_cuts(data, d - 1, NULL, 0, &before);
      if (before.kind != KP_NEED_MORE) fail("decided before the decision offset", &bytes, &before);
    }
  }
  // (c) matcher
  fuzz_matcher(data, size, &whole);
  return 0;
}
