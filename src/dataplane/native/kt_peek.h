// First-flight parser for the native accept lane: the C port of
// src/dataplane/peek/*.ts (TLS ClientHello server_name, HTTP/1.x authority).
// Pure functions over a contiguous buffer the caller keeps growing; no I/O,
// no allocation except one copy of a hello split across several records.
// The TS parser is the specification: test/native-peek/differential.test.ts
// feeds both the same corpora and asserts identical outcomes.
#ifndef KT_PEEK_H
#define KT_PEEK_H

#include <stddef.h>
#include <stdint.h>

// peek/index.ts PEEK_MAX_MESSAGE_BYTES, PEEK_MAX_TLS_RECORDS, tlsRawCap()
#define KT_PEEK_MAX_MESSAGE 16384
#define KT_PEEK_MAX_RECORDS 256
#define KT_PEEK_TLS_RAW_CAP(max) ((max) + 4 + KT_PEEK_MAX_RECORDS * 5)
// RFC 1035 §2.3.4 in dotted text: the longest name normalize can return.
#define KT_PEEK_NAME_MAX 253

// PeekOutcome kinds (types.ts).
enum { KP_NEED_MORE = 0, KP_SNI, KP_HOST, KP_NO_NAME, KP_NOT_TLS_OR_HTTP, KP_TOO_LARGE };
// NoNameReason (types.ts); 0 when the outcome has none.
enum { KPR_NONE = 0, KPR_ABSENT, KPR_BAD_NAME, KPR_MALFORMED, KPR_SSLV2, KPR_H2C };
enum { KPP_NONE = 0, KPP_TLS, KPP_HTTP };

typedef struct kt_peek {
  uint8_t mode;       // sniff, tls, http, done
  uint8_t kind;       // KP_* once final (KP_NEED_MORE until then)
  uint8_t reason;     // KPR_* for KP_NO_NAME
  uint8_t proto;      // KPP_*
  uint32_t max;       // largest hello body / HTTP head that routes
  uint32_t pos;       // bytes of the stream consumed by the sub-parser
  // TLS record walk (tls.ts TlsHelloAssembler)
  uint32_t hdr_left, hdr_len, rec_left, hs_seen, hs_len, records;
  // HTTP head scan (http.ts HttpHeadScanner)
  uint8_t hstate, is_pri, is_star, major, minor;
  uint32_t count, line_bytes, head_end;
  uint16_t name_len;
  char name[KT_PEEK_NAME_MAX + 1];  // normalised, NUL-terminated, for KP_SNI / KP_HOST
} kt_peek_t;

void kt_peek_init (kt_peek_t *k, uint32_t max_message);
// Feed the stream so far: buf[0..len) holds every byte read, len only grows
// between calls. Returns the outcome (KP_*); once final it stays so.
int kt_peek_feed (kt_peek_t *k, const uint8_t *buf, size_t len);
// A listener's hostname routes: exact names and `*.suffix` wildcards (stored
// without the `*.`), each to an upstream group. Sorted once, then bsearch.
typedef struct kt_route {
  char *name;       // normalised (malloc'd), not NUL-terminated
  uint16_t len;
  uint8_t wild;
  int32_t group;
  int32_t acl;      // the route's own source ranges (index into the listener's sets), -1: everyone
} kt_route_t;

typedef struct kt_routes {
  kt_route_t *v;
  int n;
  int has_wild;
} kt_routes_t;

// Takes ownership of v (and each name).
void kt_routes_build (kt_routes_t *r, kt_route_t *v, int n);
void kt_routes_free (kt_routes_t *r);
// The group for a normalised name, or -1 (default route). HostMatcher.match semantics.
int32_t kt_routes_match (const kt_routes_t *r, const char *name, size_t len);
// The matching entry itself (group and source ranges), or NULL. Same rules.
const kt_route_t *kt_routes_find (const kt_routes_t *r, const char *name, size_t len);

// Exposed for the differential tests and the matcher: 0 on success.
int kt_normalize_hostname (const uint8_t *s, size_t n, char *out, uint16_t *out_len);

#endif
