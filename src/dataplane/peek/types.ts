// The outcome of peeking at a client's first flight. Plain data; the data
// plane switches on `kind` and maps it to a route and a counter.

/**
 * Why a recognised protocol gave no usable name (for the access log; the
 * route is the listener's default whatever the reason):
 * - `absent`: no server_name / no Host, e.g. `openssl s_client -noservername`, HTTP/1.0;
 * - `bad-name`: a name is present but empty, not a hostname, or an IP literal;
 * - `malformed`: a length field or structure is wrong;
 * - `sslv2`: an SSL 2.0-format hello, which cannot carry extensions;
 * - `h2c`: the HTTP/2 prior-knowledge preface (`PRI * HTTP/2.0`), whose
 *   :authority is inside HPACK-compressed frames that are not peeked.
 */
export type NoNameReason = 'absent' | 'bad-name' | 'malformed' | 'sslv2' | 'h2c'

export type PeekOutcome =
  | { readonly kind: 'need-more' }
  /** TLS ClientHello with a usable server_name (normalised). */
  | { readonly kind: 'sni', readonly name: string }
  /** HTTP/1.x with a usable authority (normalised, port stripped). */
  | { readonly kind: 'host', readonly name: string }
  /** Recognised protocol but no usable name: the default route. */
  | { readonly kind: 'no-name', readonly protocol: 'tls' | 'http', readonly reason?: NoNameReason }
  | { readonly kind: 'not-tls-or-http' }
  | { readonly kind: 'too-large' }

/** How a complete message's name was read: a name, or why not. */
export type NameResult =
  | { readonly ok: true, readonly name: string }
  | { readonly ok: false, readonly reason: NoNameReason }
