// The API-server side of a kind-like test cluster: a certificate with the
// subject alternative names kind gives its API server, and a forwarder on the
// test network's gateway so the control-plane container's published 6443
// reaches the test API server (which binds loopback only) byte for byte.
//
// kind's kubeadm config (pkg/cluster/internal/kubeadm/config.go) sets
// `certSANs: [localhost, "<apiServerAddress>"]`; kubeadm adds the node's own
// names and addresses and the `kubernetes` Service names. 127.0.0.1 is there
// only when it is the apiServerAddress (kind's default), never for a
// wildcard publish.

import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { isIP, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { listenOnGateway, type TestNetwork } from './docker.js'

export interface KindApiCert { cert: string, key: string, sans: string[] }

/** A self-signed certificate (its own CA) for a kind API server published on `apiServerAddress`. */
export function kindApiCert (clusterName: string, apiServerAddress: string): KindApiCert {
  const sans = [
    'DNS:localhost',
    isIP(apiServerAddress) !== 0 ? `IP:${apiServerAddress}` : `DNS:${apiServerAddress}`,
    `DNS:${clusterName}-control-plane`,
    'DNS:kubernetes', 'DNS:kubernetes.default', 'DNS:kubernetes.default.svc', 'DNS:kubernetes.default.svc.cluster.local',
    'IP:10.96.0.1',
  ]
  const dir = mkdtempSync(join(tmpdir(), 'kt-kindapi-'))
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-subj', '/CN=kube-apiserver', '-addext', `subjectAltName=${sans.join(',')}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-days', '2',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' })
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), sans }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** A listener on the network's gateway that pipes each connection to 127.0.0.1:`port`. */
export async function forwardToLoopback (net: TestNetwork, port: number): Promise<{ host: string, port: number, close: () => Promise<void> }> {
  const f = await listenOnGateway(net, (s) => {
    const up = connect({ host: '127.0.0.1', port })
    s.on('error', () => up.destroy())
    up.on('error', () => s.destroy())
    s.pipe(up)
    up.pipe(s)
  })
  return { host: f.host, port: f.port, close: f.close }
}
