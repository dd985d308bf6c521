// Bytes that are neither a TLS record nor an HTTP/1 request line are
// refused as soon as that is decidable, not after 16 KiB.
import t from 'tap'
import { feedPieces, pieces, summary } from '../fixtures/peek-helpers.js'

const cases: Array<[string, Buffer, number]> = [
  ['a NUL byte (PostgreSQL, MySQL-style binary)', Buffer.from([0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]), 1],
  ['a space first', Buffer.from(' GET / HTTP/1.1\r\n'), 1],
  ['an SSH banner: decided at the CR of its first line', Buffer.from('SSH-2.0-OpenSSH_9.2p1 Debian\r\n'), 29],
  ['a Redis inline command', Buffer.from('PING\r\n'), 5],
  ['an SMTP-like line without a version', Buffer.from('EHLO mail.test\r\n'), 15],
  ['HTTP/0.9', Buffer.from('GET /index.html\r\n'), 16],
  ['a method longer than 32 bytes', Buffer.from('A'.repeat(100)), 33],
  ['a lowercase version', Buffer.from('GET / http/1.1\r\n'), 7],
  ['HTTP/2.0 that is not the preface', Buffer.from('GET / HTTP/2.0\r\n'), 16],
  ['HTTP/3.0', Buffer.from('GET / HTTP/3.0\r\n'), 16],
  ['a version with two digits', Buffer.from('GET / HTTP/1.10\r\n'), 15],
  ['two spaces after the method', Buffer.from('GET  / HTTP/1.1\r\n'), 5],
  ['a control byte in the target', Buffer.from('GET /\x01 HTTP/1.1\r\n'), 6],
  ['five leading CR/LF bytes', Buffer.from('\r\n\r\n\r'), 5],
  ['0x16 followed by a non-3 major', Buffer.from([0x16, 0x02, 0x01]), 2],
  ['TLS after leading CRLF', Buffer.from([0x0d, 0x0a, 0x16, 0x03, 0x01]), 3],
  ['random high bytes', Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00]), 3],
]

t.test('decided early, whatever the split', async (t) => {
  for (const [label, bytes, at] of cases) {
    const r = feedPieces(pieces(bytes, 1))
    t.same(summary(r.outcome), { kind: 'not-tls-or-http' }, label)
    t.equal(r.decidedAt, at, `${label}: decided at byte ${at}`)
    t.same(summary(feedPieces([bytes]).outcome), { kind: 'not-tls-or-http' }, `${label}: one push`)
    t.equal(r.peeker.protocol, undefined)
  }
})

t.test('1 MiB of garbage is refused at the first byte, and the bytes are kept', async (t) => {
  const garbage = Buffer.alloc(1 << 20, 0xfe)
  const r = feedPieces(pieces(garbage, 65_536))
  t.equal(r.decidedAt, 65_536)
  t.same(summary(r.outcome), { kind: 'not-tls-or-http' })
  t.equal(r.peeker.length, 1 << 20)
})
