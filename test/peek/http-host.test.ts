// HTTP/1.x: the authority is read from the absolute-form target or the Host
// field of the first request head, within 16 KiB.
import t from 'tap'
import { parseHttpHead } from '../../src/dataplane/peek/index.js'
import { feedPieces, pieces, summary } from '../fixtures/peek-helpers.js'

type Want = ReturnType<typeof summary> & { reason?: string }
const host = (name: string): Want => ({ kind: 'host', name })
const noName = (reason: string): Want => ({ kind: 'no-name', protocol: 'http', reason })

const cases: Array<[string, string, Want]> = [
  ['Host with a port', 'GET / HTTP/1.1\r\nHost: Web.Example.TEST:8080\r\n\r\n', host('web.example.test')],
  ['Host with a trailing dot', 'GET / HTTP/1.1\r\nHost: web.example.test.\r\n\r\n', host('web.example.test')],
  ['Host with an empty port', 'GET / HTTP/1.1\r\nHost: web.example.test:\r\n\r\n', host('web.example.test')],
  ['lowercase field name, OWS around the value', 'GET / HTTP/1.1\r\nhost: \t a.test \t\r\nAccept: */*\r\n\r\n', host('a.test')],
  ['HOST in capitals, not first', 'GET / HTTP/1.1\r\nUser-Agent: x\r\nHOST: b.test\r\n\r\n', host('b.test')],
  ['bare LF line endings (RFC 9112 §2.2)', 'GET / HTTP/1.1\nHost: lf.test\n\n', host('lf.test')],
  ['one empty line before the request line (RFC 9112 §2.2)', '\r\nGET / HTTP/1.1\r\nHost: lead.test\r\n\r\n', host('lead.test')],
  ['HTTP/1.0 with Host', 'GET / HTTP/1.0\r\nHost: old.test\r\n\r\n', host('old.test')],
  ['HTTP/1.0 without Host', 'GET / HTTP/1.0\r\nAccept: */*\r\n\r\n', noName('absent')],
  ['HTTP/1.1 without Host', 'GET / HTTP/1.1\r\n\r\n', noName('absent')],
  ['absolute form wins over Host (RFC 9112 §3.2.2)', 'GET http://Abs.Test:81/x?y HTTP/1.1\r\nHost: other.test\r\n\r\n', host('abs.test')],
  ['absolute form https, no Host', 'GET https://secure.test/ HTTP/1.1\r\n\r\n', host('secure.test')],
  ['absolute form with a query and no path', 'GET http://q.test?x=1 HTTP/1.1\r\n\r\n', host('q.test')],
  ['absolute form with an IP: no fallback to Host', 'GET http://10.0.0.1/ HTTP/1.1\r\nHost: named.test\r\n\r\n', noName('bad-name')],
  ['absolute form with userinfo (RFC 9110 §4.2.4)', 'GET http://user:pw@u.test/ HTTP/1.1\r\nHost: u.test\r\n\r\n', noName('bad-name')],
  ['absolute URI without authority', 'GET urn:x:y HTTP/1.1\r\nHost: u.test\r\n\r\n', noName('bad-name')],
  ['CONNECT authority form', 'CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:443\r\n\r\n', host('tunnel.test')],
  ['OPTIONS asterisk form uses Host', 'OPTIONS * HTTP/1.1\r\nHost: star.test\r\n\r\n', host('star.test')],
  ['bracketed IPv6 Host', 'GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n', noName('bad-name')],
  ['bracketed IPv6 Host without port', 'GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n', noName('bad-name')],
  ['IPv4 Host', 'GET / HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n', noName('bad-name')],
  ['empty Host', 'GET / HTTP/1.1\r\nHost:\r\n\r\n', noName('absent')],
  ['Host with a bad port', 'GET / HTTP/1.1\r\nHost: a.test:http\r\n\r\n', noName('bad-name')],
  ['Host with two colons', 'GET / HTTP/1.1\r\nHost: a.test:1:2\r\n\r\n', noName('bad-name')],
  ['percent-encoded Host', 'GET / HTTP/1.1\r\nHost: a%2etest\r\n\r\n', noName('bad-name')],
  ['wildcard Host', 'GET / HTTP/1.1\r\nHost: *.test\r\n\r\n', noName('bad-name')],
  ['two Host fields (RFC 9112 §3.2)', 'GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n', noName('malformed')],
  ['whitespace before the colon (RFC 9112 §5.1)', 'GET / HTTP/1.1\r\nHost : a.test\r\n\r\n', noName('malformed')],
  ['folded Host (RFC 9112 §5.2)', 'GET / HTTP/1.1\r\nHost: a.test\r\n b.test\r\n\r\n', noName('malformed')],
  ['Hostname is another field', 'GET / HTTP/1.1\r\nHostname: x.test\r\nHost: y.test\r\n\r\n', host('y.test')],
  ['the h2c preface (RFC 9113 §3.4)', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', noName('h2c')],
  ['a body after the head is not read', 'POST / HTTP/1.1\r\nHost: post.test\r\nContent-Length: 30\r\n\r\nHost: evil.test\r\n\r\n', host('post.test')],
]

t.test('request heads', async (t) => {
  for (const [label, head, want] of cases) {
    const bytes = Buffer.from(head, 'latin1')
    const one = feedPieces([bytes]).outcome
    t.same(summary(one), { kind: want.kind, ...(want.name !== undefined ? { name: want.name } : {}), ...(want.protocol !== undefined ? { protocol: want.protocol } : {}) }, label)
    if (want.reason !== undefined) t.equal((one as { reason?: string }).reason, want.reason, `${label}: reason`)
    t.same(summary(feedPieces(pieces(bytes, 1)).outcome), summary(one), `${label}: one byte per push`)
  }
})

t.test('the h2c preface is decided at the end of its request line', async (t) => {
  const r = feedPieces(pieces(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), 1))
  t.equal(r.decidedAt, 16)
  t.equal(r.peeker.protocol, 'http')
})

t.test('the head must end within 16 KiB', async (t) => {
  const start = 'GET / HTTP/1.1\r\nHost: big.test\r\nX-Pad: '
  const end = '\r\n\r\n'
  const exact = Buffer.from(start + 'p'.repeat(16_384 - start.length - end.length) + end)
  t.equal(exact.length, 16_384)
  t.same(summary(feedPieces([exact]).outcome), { kind: 'host', name: 'big.test' }, 'a 16,384-byte head routes')
  t.same(summary(feedPieces(pieces(exact, 1)).outcome), { kind: 'host', name: 'big.test' })
  const over = Buffer.from(start + 'p'.repeat(16_385 - start.length - end.length) + end)
  const r = feedPieces(pieces(over, 100))
  t.same(summary(r.outcome), { kind: 'too-large' }, 'a 16,385-byte head is too-large')
  t.equal(r.decidedAt, 16_385, 'decided with the chunk that crosses 16,384 bytes')
  const endless = feedPieces([Buffer.from('GET / HTTP/1.1\r\n' + 'X: y\r\n'.repeat(5000))])
  t.same(summary(endless.outcome), { kind: 'too-large' })
})

t.test('parseHttpHead never throws on odd heads', async (t) => {
  for (const s of ['', '\r\n', 'GET', 'GET  HTTP/1.1\r\n\r\n', ' / HTTP/1.1\r\n\r\n', 'GET /\r\n\r\n', 'GET / HTTP/1.1\r\n:\r\n\r\n', 'GET / HTTP/1.1\r\nHost', 'GET / HTTP/1.1\r\n Host: a.test\r\n\r\n']) {
    t.doesNotThrow(() => parseHttpHead(Buffer.from(s, 'latin1')), JSON.stringify(s))
  }
  t.same(parseHttpHead(Buffer.from('GET / HTTP/1.1\r\n Host: a.test\r\n\r\n')), { ok: false, reason: 'absent' }, 'a folded line before any field is not a Host')
})
