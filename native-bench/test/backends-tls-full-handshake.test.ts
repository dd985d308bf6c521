// The TLS backend of the tlsclose workload: the host nginx serves the same 100-byte body
// over TLS 1.3 and 1.2 with the run's fresh ECDSA certificate, and never resumes a
// session, so every benchmark connection is a full handshake carrying its SNI.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, type PeerCertificate, type SecureVersion } from 'node:tls';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { BODY, startHostBackends } from '../src/backends.js';
import { stop } from '../src/proc.js';

const buildDir = join(dirname(fileURLToPath(import.meta.url)), '../src');
const missing = ['nginx', 'openssl'].filter((b) => !['/usr/bin', '/usr/sbin', '/bin', '/usr/local/bin'].some((d) => existsSync(join(d, b))));

interface Fetched {
  body: string;
  protocol: string | null;
  reused: boolean;
  cert: PeerCertificate;
  session: Buffer | undefined;
}

/** One GET with Connection: close; bounded by a timer. */
function get(port: number, version: SecureVersion, session?: Buffer): Promise<Fetched> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, minVersion: version, maxVersion: version, ...(session !== undefined ? { session } : {}) });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('no answer in 5 s'));
    }, 5000);
    const chunks: Buffer[] = [];
    let latest: Buffer | undefined;
    s.on('session', (b: Buffer) => {
      latest = b;
    });
    // read what the handshake gave before the socket closes: afterwards it is gone
    let protocol: string | null = null;
    let reused = false;
    let cert: PeerCertificate | undefined;
    s.on('secureConnect', () => {
      protocol = s.getProtocol();
      reused = s.isSessionReused();
      cert = s.getPeerCertificate();
      s.write('GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    });
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      if (cert === undefined) return reject(new Error('closed before the handshake completed'));
      resolve({ body: text.slice(text.indexOf('\r\n\r\n') + 4), protocol, reused, cert, session: latest ?? s.getSession() });
    });
  });
}

t.test('TLS 1.3 and 1.2, the same body, the run\'s certificate, and no resumption', { skip: missing.length > 0 ? `missing ${missing.join(', ')}` : false }, async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'ktb-tls-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const b = await startHostBackends(tmp, buildDir);
  t.teardown(() => Promise.all(b.procs.map((p) => stop(p))));
  t.not(b.ports.https, b.ports.http, 'its own port');
  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    const first = await get(b.ports.https, version);
    t.equal(first.protocol, version);
    t.equal(first.body, BODY, `${version}: the 100-byte body`);
    t.equal(first.cert.subject.CN, 'bench.localhost');
    t.match(first.cert.subjectaltname ?? '', /DNS:bench\.localhost, DNS:localhost/);
    t.match(first.cert.asn1Curve ?? '', /prime256v1|P-256/, 'ECDSA P-256');
    // offer the first session back: with tickets and the session cache off the server must refuse it
    const second = await get(b.ports.https, version, first.session);
    t.equal(second.body, BODY);
    t.equal(second.reused, false, `${version}: a full handshake again`);
  }
});
