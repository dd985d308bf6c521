// Self-signed certificates made with the real openssl, and TLS servers that
// say who they are.

import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer as createTlsServer, type Server } from 'node:tls'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'

export interface Cert { key: string, cert: string }

/** A fresh P-256 self-signed certificate for `cn` (also its SAN). */
export function selfSigned (cn: string): Cert {
  const dir = mkdtempSync(join(tmpdir(), 'kt-cert-'))
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-subj', `/CN=${cn}`, '-addext', `subjectAltName=DNS:${cn}`, '-days', '2',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' })
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

export interface TlsBackend { server: Server, port: number, cn: string, close (): Promise<void> }

/** A TLS server presenting `cn`'s certificate; answers an HTTP/1.1 response naming itself. */
export async function startTlsBackend (cn: string): Promise<TlsBackend> {
  const c = selfSigned(cn)
  const server = createTlsServer({ key: c.key, cert: c.cert }, (s) => {
    s.on('error', () => {})
    s.once('data', () => {
      const body = `backend=${cn}\n`
      s.end(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    server,
    cn,
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}
