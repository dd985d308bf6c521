// Over 500 lines: the TLS ClientHello and HTTP head parsers and the hostname
// matcher ported together from the TS peeker, so the differential tests
// cover one unit.
// First-flight parser for the native accept lane (issue #3 benchmark target):
// a line-by-line port of src/dataplane/peek/{index,tls,http}.ts and
// routing/hostmatch.ts normalizeHostname(). The TS code is the specification;
// where this file looks odd (indexOf over the whole head, the order of checks)
// it is because the TS does the same, and the differential test
// (test/native-peek/differential.test.ts) holds the two to identical outcomes.
//
// Input is untrusted: every index is checked against the bytes present, and
// every length field against what remains (RFC 6066 §11.1).

#include "kt_peek.h"

#include <stdlib.h>
#include <string.h>

#define CR 0x0d
#define LF 0x0a
#define SP 0x20

enum { M_SNIFF = 0, M_TLS, M_HTTP, M_DONE };
enum { T_NEED_MORE = 0, T_COMPLETE, T_MALFORMED, T_TOO_LARGE };
enum { H_NEED_MORE = 0, H_COMPLETE, H_NOT_HTTP, H_H2, H_TOO_LARGE };
enum { S_LEAD = 0, S_METHOD, S_TARGET, S_VERSION, S_VERSION_LF, S_HEADERS };

#define MAX_METHOD 32      // http.ts: the longest registered method is 17 bytes
#define MAX_LEADING_EOL 4  // http.ts: RFC 9112 §2.2 leading empty lines

// RFC 9110 §5.6.2 tchar
static int is_tchar (uint8_t c) {
  if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) return 1;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return 1;
    default:
      return 0;
  }
}

// ---------------------------------------------------------------- names (hostmatch.ts)

// Decimal digits, or 0x + hex digits: what an IPv4 parser takes as a last label.
static int numeric_label (const uint8_t *s, size_t start, size_t end) {
  size_t i = start;
  int hex = 0;
  if (end - start >= 2 && s[i] == '0' && (s[i + 1] | 0x20) == 'x') { hex = 1; i += 2; }
  for (; i < end; i++) {
    uint8_t c = s[i];
    if (c >= '0' && c <= '9') continue;
    uint8_t l = c | 0x20;
    if (hex && l >= 'a' && l <= 'f') continue;
    return 0;
  }
  return 1;
}

int kt_normalize_hostname (const uint8_t *s, size_t n, char *out, uint16_t *out_len) {
  size_t end = n;
  if (end > 0 && s[end - 1] == '.') end--;  // one trailing dot only
  if (end == 0 || end > KT_PEEK_NAME_MAX) return -1;
  size_t label = 0, label_start = 0;
  for (size_t i = 0; i < end; i++) {
    uint8_t c = s[i];
    if (c == '.') {
      if (label == 0) return -1;
      label = 0;
      label_start = i + 1;
      continue;
    }
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || (c >= 'A' && c <= 'Z')) {
      if (++label > 63) return -1;  // RFC 1035 §2.3.4
      continue;
    }
    return -1;
  }
  if (label == 0) return -1;
  if (numeric_label(s, label_start, end)) return -1;
  for (size_t i = 0; i < end; i++) {
    uint8_t c = s[i];
    out[i] = (char)(c >= 'A' && c <= 'Z' ? c | 0x20 : c);
  }
  out[end] = 0;
  *out_len = (uint16_t)end;
  return 0;
}

// ---------------------------------------------------------------- TLS (tls.ts)

static int finish (kt_peek_t *k, int kind, int reason) {
  k->mode = M_DONE;
  k->kind = (uint8_t)kind;
  k->reason = (uint8_t)reason;
  return kind;
}

static int set_name (kt_peek_t *k, int kind, const uint8_t *s, size_t n) {
  if (kt_normalize_hostname(s, n, k->name, &k->name_len) != 0) return finish(k, KP_NO_NAME, KPR_BAD_NAME);
  return finish(k, kind, KPR_NONE);
}

static unsigned rd16 (const uint8_t *b, size_t p) { return ((unsigned)b[p] << 8) | b[p + 1]; }

// RFC 6066 §3: ServerNameList = server_name_list<1..2^16-1> of (name_type, HostName<1..2^16-1>).
// Returns KPR_NONE with *ns/*ne set, or a reason.
static int server_name_ext (const uint8_t *b, size_t start, size_t end, size_t *ns, size_t *ne) {
  if (start + 2 > end) return KPR_MALFORMED;
  size_t list = rd16(b, start);
  size_t p = start + 2;
  if (list == 0 || p + list != end) return KPR_MALFORMED;
  long name_start = -1, name_end = -1;
  while (p < end) {
    if (p + 3 > end) return KPR_MALFORMED;
    uint8_t type = b[p];
    size_t len = rd16(b, p + 1);
    p += 3;
    if (p + len > end) return KPR_MALFORMED;
    if (type == 0) {
      if (name_start >= 0) return KPR_MALFORMED;  // RFC 6066 §3: one name per name_type
      name_start = (long)p;
      name_end = (long)(p + len);
    }
    p += len;
  }
  if (name_start < 0) return KPR_ABSENT;
  if (name_end == name_start) return KPR_BAD_NAME;
  for (long i = name_start; i < name_end; i++) if (b[i] >= 0x80) return KPR_BAD_NAME;  // ASCII only
  *ns = (size_t)name_start;
  *ne = (size_t)name_end;
  return KPR_NONE;
}

// The ClientHello body (without its 4-byte header), RFC 8446 §4.1.2.
static int client_hello_body (kt_peek_t *k, const uint8_t *b, size_t end) {
  size_t p = 2 + 32;  // legacy_version, random
  if (p + 1 > end) return finish(k, KP_NO_NAME, KPR_MALFORMED);
  size_t sid = b[p++];
  if (sid > 32 || p + sid > end) return finish(k, KP_NO_NAME, KPR_MALFORMED);
  p += sid;
  if (p + 2 > end) return finish(k, KP_NO_NAME, KPR_MALFORMED);
  size_t cs = rd16(b, p);
  p += 2;
  if (cs < 2 || (cs & 1) != 0 || p + cs > end) return finish(k, KP_NO_NAME, KPR_MALFORMED);
  p += cs;
  if (p + 1 > end) return finish(k, KP_NO_NAME, KPR_MALFORMED);
  size_t cm = b[p++];
  if (cm < 1 || p + cm > end) return finish(k, KP_NO_NAME, KPR_MALFORMED);
  p += cm;
  if (p == end) return finish(k, KP_NO_NAME, KPR_ABSENT);  // RFC 5246 §7.4.1.2: no extensions
  if (p + 2 > end) return finish(k, KP_NO_NAME, KPR_MALFORMED);
  size_t ext_len = rd16(b, p);
  p += 2;
  if (p + ext_len != end) return finish(k, KP_NO_NAME, KPR_MALFORMED);
  int seen = 0, result = KPR_ABSENT;
  size_t ns = 0, ne = 0;
  while (p < end) {
    if (p + 4 > end) return finish(k, KP_NO_NAME, KPR_MALFORMED);
    unsigned type = rd16(b, p);
    size_t len = rd16(b, p + 2);
    p += 4;
    if (p + len > end) return finish(k, KP_NO_NAME, KPR_MALFORMED);
    // GREASE (RFC 8701) and every other unknown type are skipped by length.
    if (type == 0) {
      if (seen) return finish(k, KP_NO_NAME, KPR_MALFORMED);  // RFC 8446 §4.2: no type twice
      seen = 1;
      result = server_name_ext(b, p, p + len, &ns, &ne);
      if (result == KPR_MALFORMED) return finish(k, KP_NO_NAME, KPR_MALFORMED);
    }
    p += len;
  }
  if (result != KPR_NONE) return finish(k, KP_NO_NAME, result);
  return set_name(k, KP_SNI, b + ns, ne - ns);
}

// TlsHelloAssembler.step: follow the record layer; each byte looked at once.
static int tls_step (kt_peek_t *k, const uint8_t *buf, size_t length) {
  while (k->pos < length) {
    if (k->hdr_left > 0) {
      uint8_t byte = buf[k->pos++];
      switch (k->hdr_left) {
        case 5: if (byte != 0x16) return T_MALFORMED; break;  // RFC 8446 §5.1: no interleaving
        case 4: if (byte != 0x03) return T_MALFORMED; break;  // any 3.x record version
        case 2: k->hdr_len = (uint32_t)byte << 8; break;
        case 1:
          k->hdr_len |= byte;
          if (k->hdr_len == 0) return T_MALFORMED;  // RFC 8446 §5.1: no empty fragments
          k->rec_left = k->hdr_len;
          k->records++;
          break;
      }
      k->hdr_left--;
      continue;
    }
    if (k->hs_seen < 4) {
      uint8_t byte = buf[k->pos++];
      k->hs_seen++;
      k->rec_left--;
      if (k->hs_seen == 1) {
        if (byte != 0x01) return T_MALFORMED;  // client_hello
      } else {
        k->hs_len = (k->hs_len << 8) | byte;
        if (k->hs_seen == 4) {
          if (k->hs_len > k->max) return T_TOO_LARGE;
          if (k->hs_len == 0) return T_MALFORMED;
        }
      }
    } else {
      uint32_t want = 4 + k->hs_len - k->hs_seen;
      uint32_t n = want;
      if (k->rec_left < n) n = k->rec_left;
      if ((uint32_t)(length - k->pos) < n) n = (uint32_t)(length - k->pos);
      k->pos += n;
      k->hs_seen += n;
      k->rec_left -= n;
      if (n == want) return T_COMPLETE;
    }
    if (k->rec_left == 0) k->hdr_left = 5;
  }
  return T_NEED_MORE;
}

// The hello body out of its records (RFC 8446 §5.1: a message may span records).
static int tls_complete (kt_peek_t *k, const uint8_t *buf) {
  if (k->records == 1) return client_hello_body(k, buf + 9, k->hs_len);
  uint8_t *out = malloc(k->hs_len);
  if (out == NULL) return finish(k, KP_NO_NAME, KPR_MALFORMED);  // cannot read it: default route
  size_t r = 0, o = 0, skip_hs = 4;
  // tls_step walked these exact bytes: every header and fragment below is present.
  while (o < k->hs_len) {
    size_t rec = rd16(buf, r + 3);
    r += 5;
    size_t s = skip_hs < rec ? skip_hs : rec;
    r += s;
    skip_hs -= s;
    rec -= s;
    size_t n = rec < k->hs_len - o ? rec : k->hs_len - o;
    memcpy(out + o, buf + r, n);
    r += n;
    o += n;
  }
  int kind = client_hello_body(k, out, k->hs_len);
  free(out);
  return kind;
}

// SSL 2.0-format ClientHello (RFC 6101 E.2): 1 yes, 0 no, -1 undecided.
static int sslv2 (const uint8_t *b, size_t len) {
  if ((b[0] & 0x80) == 0) return 0;
  if (len < 2) return -1;
  if ((((unsigned)(b[0] & 0x7f) << 8) | b[1]) < 9) return 0;
  if (len < 3) return -1;
  if (b[2] != 0x01) return 0;
  if (len < 4) return -1;
  if (b[3] != 0x00 && b[3] != 0x03) return 0;
  if (len < 5) return -1;
  return b[3] == 0x03 || b[4] == 0x02;
}

// ---------------------------------------------------------------- HTTP (http.ts)

static int end_request_line (kt_peek_t *k) {
  if (k->major == 1) {
    k->hstate = S_HEADERS;
    k->line_bytes = 0;
    return H_NEED_MORE;
  }
  // RFC 9113 §3.4: the prior-knowledge preface starts `PRI * HTTP/2.0`.
  if (k->major == 2 && k->minor == 0 && k->is_pri && k->is_star) return H_H2;
  return H_NOT_HTTP;
}

// One byte of the request line: H_NEED_MORE to go on, else a decision.
static int request_line_byte (kt_peek_t *k, uint8_t b) {
  switch (k->hstate) {
    case S_LEAD:
      if (b == CR || b == LF) {
        if (++k->count > MAX_LEADING_EOL) return H_NOT_HTTP;
        return H_NEED_MORE;
      }
      if (!is_tchar(b)) return H_NOT_HTTP;
      k->hstate = S_METHOD;
      k->count = 1;
      k->is_pri = b == 'P';
      return H_NEED_MORE;
    case S_METHOD:
      if (b == SP) {
        k->is_pri = k->is_pri && k->count == 3;
        k->hstate = S_TARGET;
        k->count = 0;
        return H_NEED_MORE;
      }
      if (!is_tchar(b) || ++k->count > MAX_METHOD) return H_NOT_HTTP;
      if (k->count == 2) k->is_pri = k->is_pri && b == 'R';
      else if (k->count == 3) k->is_pri = k->is_pri && b == 'I';
      return H_NEED_MORE;
    case S_TARGET:
      if (b == SP) {
        if (k->count == 0) return H_NOT_HTTP;
        k->is_star = k->is_star && k->count == 1;
        k->hstate = S_VERSION;
        k->count = 0;
        return H_NEED_MORE;
      }
      if (b < 0x21 || b == 0x7f) return H_NOT_HTTP;  // HTTP/0.9 `GET /` ends here too
      if (k->count++ == 0) k->is_star = b == '*';
      return H_NEED_MORE;
    case S_VERSION: {
      // RFC 9112 §2.3: "HTTP/" DIGIT "." DIGIT, case-sensitive.
      uint32_t i = k->count++;
      if (i < 5) { if (b != (uint8_t)"HTTP/"[i]) return H_NOT_HTTP; }
      else if (i == 5) { if (b < '0' || b > '9') return H_NOT_HTTP; k->major = b - '0'; }
      else if (i == 6) { if (b != '.') return H_NOT_HTTP; }
      else if (i == 7) { if (b < '0' || b > '9') return H_NOT_HTTP; k->minor = b - '0'; }
      else if (b == CR) k->hstate = S_VERSION_LF;
      else if (b == LF) return end_request_line(k);
      else return H_NOT_HTTP;
      return H_NEED_MORE;
    }
    case S_VERSION_LF:
      if (b != LF) return H_NOT_HTTP;
      return end_request_line(k);
  }
  return H_NOT_HTTP;
}

static int http_step (kt_peek_t *k, const uint8_t *buf, size_t length) {
  size_t stop = length < k->max ? length : k->max;
  while (k->pos < stop) {
    if (k->hstate != S_HEADERS) {
      int r = request_line_byte(k, buf[k->pos++]);
      if (r != H_NEED_MORE) return r;
      continue;
    }
    // The empty line ends the head (CRLF or bare LF, RFC 9112 §2.2).
    const uint8_t *lf = memchr(buf + k->pos, LF, stop - k->pos);
    if (lf == NULL) {
      k->line_bytes += (uint32_t)(stop - k->pos);
      k->pos = (uint32_t)stop;
      break;
    }
    size_t at = (size_t)(lf - buf);
    size_t n = k->line_bytes + (at - k->pos);
    uint8_t prev = at > 0 ? buf[at - 1] : LF;
    k->pos = (uint32_t)(at + 1);
    k->line_bytes = 0;
    if (n == 0 || (n == 1 && prev == CR)) {
      k->head_end = k->pos;
      return H_COMPLETE;
    }
  }
  return k->pos >= k->max ? H_TOO_LARGE : H_NEED_MORE;
}

static long index_of (const uint8_t *s, size_t end, uint8_t c, size_t from) {
  if (from >= end) return -1;
  const uint8_t *hit = memchr(s + from, c, end - from);
  return hit == NULL ? -1 : (long)(hit - s);
}

// uri-host [":" port] (RFC 9110 §7.2); IP literals give no name.
static int authority_name (kt_peek_t *k, const uint8_t *a, size_t n) {
  if (n == 0) return finish(k, KP_NO_NAME, KPR_ABSENT);
  if (a[0] == '[') return finish(k, KP_NO_NAME, KPR_BAD_NAME);
  long colon = index_of(a, n, ':', 0);
  size_t host_len = n;
  if (colon >= 0) {
    size_t port_len = n - (size_t)colon - 1;
    if (port_len > 5) return finish(k, KP_NO_NAME, KPR_BAD_NAME);
    for (size_t i = (size_t)colon + 1; i < n; i++) if (a[i] < '0' || a[i] > '9') return finish(k, KP_NO_NAME, KPR_BAD_NAME);
    host_len = (size_t)colon;
  }
  return set_name(k, KP_HOST, a, host_len);
}

static int is_alpha (uint8_t c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

// parseHttpHead: the routing name of a complete head, as http.ts reads it.
static int http_head (kt_peek_t *k, const uint8_t *s, size_t end) {
  size_t p = 0;
  while (p < end && (s[p] == CR || s[p] == LF)) p++;
  long eol = index_of(s, end, LF, p);
  if (eol < 0) eol = (long)end;
  long line_end = eol > (long)p && s[eol - 1] == CR ? eol - 1 : eol;
  long sp1 = index_of(s, end, SP, p);
  long sp2 = sp1 < 0 ? -1 : index_of(s, end, SP, (size_t)sp1 + 1);
  if (sp1 <= (long)p || sp2 <= sp1 + 1 || sp2 >= line_end) return finish(k, KP_NO_NAME, KPR_MALFORMED);
  const uint8_t *method = s + p;
  size_t method_len = (size_t)sp1 - p;
  const uint8_t *target = s + sp1 + 1;
  size_t target_len = (size_t)(sp2 - sp1 - 1);

  const uint8_t *host = NULL;
  size_t host_len = 0;
  int host_count = 0, host_bad = 0, prev_was_host = 0;
  p = (size_t)eol + 1;
  while (p < end) {
    long e = index_of(s, end, LF, p);
    if (e < 0) e = (long)end;
    long le = e > (long)p && s[e - 1] == CR ? e - 1 : e;
    if (le == (long)p) break;  // the empty line
    uint8_t c0 = s[p];
    if (c0 == SP || c0 == 0x09) {
      // obs-fold continues the previous field (RFC 9112 §5.2)
      if (prev_was_host) host_bad = 1;
      p = (size_t)e + 1;
      continue;
    }
    prev_was_host = 0;
    // The colon is looked for up to the end of this line only (http.ts searches
    // the rest of the head, but only a colon before `le` counts, so the outcome
    // is the same): searching to the end of the head made a head of colon-less
    // lines quadratic, ~10x a whole connection's CPU per 16 KiB hostile head
    // (test/native-peek/header-scan-linear.test.ts).
    long colon = index_of(s, (size_t)le, ':', p);
    if (colon > (long)p && colon < le) {
      size_t name_len = (size_t)colon - p;
      if (name_len >= 4 && (s[p] | 0x20) == 'h' && (s[p + 1] | 0x20) == 'o' && (s[p + 2] | 0x20) == 's' && (s[p + 3] | 0x20) == 't') {
        if (name_len == 4) {
          host_count++;
          size_t a = (size_t)colon + 1, b = (size_t)le;
          while (a < b && (s[a] == SP || s[a] == 0x09)) a++;
          while (b > a && (s[b - 1] == SP || s[b - 1] == 0x09)) b--;
          host = s + a;
          host_len = b - a;
          prev_was_host = 1;
        } else {
          int ws = 1;
          for (size_t i = p + 4; i < (size_t)colon; i++) if (s[i] != SP && s[i] != 0x09) ws = 0;
          if (ws) host_bad = 1;  // `Host :` (RFC 9112 §5.1)
        }
      }
    }
    p = (size_t)e + 1;
  }

  if (method_len == 7 && memcmp(method, "CONNECT", 7) == 0) return authority_name(k, target, target_len);
  if (target[0] != '/' && !(target_len == 1 && target[0] == '*')) {
    // RFC 3986 §3.1 scheme "://" authority; absolute-form wins (RFC 9112 §3.2.2).
    size_t i = 0;
    if (!is_alpha(target[0])) return finish(k, KP_NO_NAME, KPR_BAD_NAME);
    i = 1;
    while (i < target_len && (is_alpha(target[i]) || (target[i] >= '0' && target[i] <= '9') || target[i] == '+' || target[i] == '.' || target[i] == '-')) i++;
    if (i + 3 > target_len || target[i] != ':' || target[i + 1] != '/' || target[i + 2] != '/') return finish(k, KP_NO_NAME, KPR_BAD_NAME);
    size_t a = i + 3, b = a;
    while (b < target_len && target[b] != '/' && target[b] != '?' && target[b] != '#') b++;
    // RFC 9110 §4.2.4: userinfo in an http(s) URI is an error.
    if (index_of(target, b, '@', a) >= 0) return finish(k, KP_NO_NAME, KPR_BAD_NAME);
    return authority_name(k, target + a, b - a);
  }
  if (host_bad || host_count > 1) return finish(k, KP_NO_NAME, KPR_MALFORMED);
  if (host == NULL) return finish(k, KP_NO_NAME, KPR_ABSENT);  // e.g. HTTP/1.0 without Host
  return authority_name(k, host, host_len);
}

// ---------------------------------------------------------------- the peeker (index.ts)

void kt_peek_init (kt_peek_t *k, uint32_t max_message) {
  memset(k, 0, sizeof *k);
  k->max = max_message;
  k->hdr_left = 5;
  k->is_pri = 1;
  k->is_star = 1;
}

int kt_peek_feed (kt_peek_t *k, const uint8_t *buf, size_t len) {
  if (k->mode == M_DONE) return k->kind;
  if (len == 0) return KP_NEED_MORE;
  if (k->mode == M_SNIFF) {
    uint8_t b0 = buf[0];
    if (b0 == 0x16) {
      if (len < 2) return KP_NEED_MORE;
      if (buf[1] != 0x03) return finish(k, KP_NOT_TLS_OR_HTTP, KPR_NONE);
      k->mode = M_TLS;
      k->proto = KPP_TLS;
    } else if (b0 & 0x80) {
      int v2 = sslv2(buf, len);
      if (v2 < 0) return KP_NEED_MORE;
      if (!v2) return finish(k, KP_NOT_TLS_OR_HTTP, KPR_NONE);
      k->proto = KPP_TLS;
      return finish(k, KP_NO_NAME, KPR_SSLV2);
    } else if (is_tchar(b0) || b0 == CR || b0 == LF) {
      k->mode = M_HTTP;
    } else {
      return finish(k, KP_NOT_TLS_OR_HTTP, KPR_NONE);
    }
  }
  if (k->mode == M_TLS) {
    size_t cap = KT_PEEK_TLS_RAW_CAP((size_t)k->max);
    int step = tls_step(k, buf, len < cap ? len : cap);
    if (step == T_COMPLETE) return tls_complete(k, buf);
    if (step == T_MALFORMED) return finish(k, KP_NO_NAME, KPR_MALFORMED);
    if (step == T_TOO_LARGE) return finish(k, KP_TOO_LARGE, KPR_NONE);
    return len >= cap ? finish(k, KP_TOO_LARGE, KPR_NONE) : KP_NEED_MORE;
  }
  int step = http_step(k, buf, len);
  if (k->hstate == S_HEADERS) k->proto = KPP_HTTP;
  switch (step) {
    case H_COMPLETE:
      k->proto = KPP_HTTP;
      return http_head(k, buf, k->head_end);
    case H_H2:
      k->proto = KPP_HTTP;
      return finish(k, KP_NO_NAME, KPR_H2C);
    case H_NOT_HTTP:
      return finish(k, KP_NOT_TLS_OR_HTTP, KPR_NONE);
    case H_TOO_LARGE:
      return finish(k, KP_TOO_LARGE, KPR_NONE);
  }
  return KP_NEED_MORE;
}

// ---------------------------------------------------------------- routes (hostmatch.ts HostMatcher)

static int route_cmp (const void *a, const void *b) {
  const kt_route_t *x = a, *y = b;
  if (x->wild != y->wild) return (int)x->wild - (int)y->wild;
  if (x->len != y->len) return (int)x->len - (int)y->len;
  return memcmp(x->name, y->name, x->len);
}

static const kt_route_t *find (const kt_routes_t *r, uint8_t wild, const char *name, size_t len) {
  kt_route_t key;
  key.wild = wild;
  key.len = (uint16_t)len;
  key.name = (char *)name;
  return bsearch(&key, r->v, (size_t)r->n, sizeof *r->v, route_cmp);
}

void kt_routes_build (kt_routes_t *r, kt_route_t *v, int n) {
  // Entries arrive normalised and deduplicated by JS (first wins, as HostMatcher).
  if (n > 1) qsort(v, (size_t)n, sizeof *v, route_cmp);
  r->v = v;
  r->n = n;
  r->has_wild = 0;
  for (int i = 0; i < n; i++) if (v[i].wild) r->has_wild = 1;
}

void kt_routes_free (kt_routes_t *r) {
  for (int i = 0; i < r->n; i++) free(r->v[i].name);
  free(r->v);
  r->v = NULL;
  r->n = 0;
}

const kt_route_t *kt_routes_find (const kt_routes_t *r, const char *name, size_t len) {
  if (r->n == 0 || r->v == NULL || len == 0) return NULL;
  const kt_route_t *hit = find(r, 0, name, len);  // an exact entry wins over any wildcard
  if (hit != NULL || !r->has_wild) return hit;
  // Suffixes left to right: the first found is the longest; at least one
  // label stays in front of it (`*.x.test` never matches `x.test`).
  for (size_t i = 0; i < len; i++) {
    if (name[i] != '.') continue;
    hit = find(r, 1, name + i + 1, len - i - 1);
    if (hit != NULL) return hit;
  }
  return NULL;
}

int32_t kt_routes_match (const kt_routes_t *r, const char *name, size_t len) {
  const kt_route_t *hit = kt_routes_find(r, name, len);
  return hit == NULL ? -1 : hit->group;
}
