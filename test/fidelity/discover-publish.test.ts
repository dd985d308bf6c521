// Where the kubeconfig points for a kind cluster, as `kind get kubeconfig`
// decides it (kind pkg/cluster/internal/providers/docker/provider.go,
// GetAPIServerEndpoint): the `desktop.docker.io/ports/6443/tcp` label first
// (Docker Desktop), else the published HostIp and HostPort kept as they are.
// kind's API-server certificate carries `localhost` and the configured
// apiServerAddress (kubeadm certSANs), never 127.0.0.1 for a wildcard
// publish, so rewriting 0.0.0.0 to 127.0.0.1 fails TLS. The engine is a stub
// here: only its container listing matters (the real engine and real TLS are
// in wildcard-apiserver.test.ts).
import t from 'tap'
import type Docker from 'dockerode'
import { discoverClusters, KIND_CLUSTER_LABEL, KIND_ROLE_LABEL } from '../../src/docker/discover.js'
import type { DockerClient } from '../../src/docker/engine.js'

function container (name: string, role: string, ports: Docker.Port[], labels: Record<string, string> = {}): Docker.ContainerInfo {
  return {
    Id: `id-${name}`,
    Names: [`/${name}`],
    Image: 'kindest/node',
    ImageID: '',
    Command: '',
    Created: 0,
    Ports: ports,
    Labels: { [KIND_CLUSTER_LABEL]: 'k', [KIND_ROLE_LABEL]: role, ...labels },
    State: 'running',
    Status: 'Up',
    HostConfig: { NetworkMode: 'kind' },
    NetworkSettings: { Networks: { kind: { IPAddress: '172.18.0.2' } as Docker.NetworkInfo } },
    Mounts: [],
  }
}

function engine (list: Docker.ContainerInfo[]): DockerClient {
  return { listContainers: async () => list } as unknown as DockerClient
}

async function apiOf (ports: Docker.Port[], labels?: Record<string, string>): Promise<unknown> {
  const [c] = await discoverClusters({ docker: engine([container('k-control-plane', 'control-plane', ports, labels)]), network: 'kind' })
  return c?.apiServer
}

t.test('a wildcard publish keeps its HostIp (0.0.0.0 and ::), as kind does', async (t) => {
  t.same(await apiOf([{ IP: '0.0.0.0', PrivatePort: 6443, PublicPort: 40001, Type: 'tcp' }]), { host: '0.0.0.0', port: 40001 })
  t.same(await apiOf([{ IP: '::', PrivatePort: 6443, PublicPort: 40002, Type: 'tcp' }]), { host: '::', port: 40002 })
})

t.test('a specific publish address is kept too', async (t) => {
  t.same(await apiOf([{ IP: '127.0.0.1', PrivatePort: 6443, PublicPort: 40003, Type: 'tcp' }]), { host: '127.0.0.1', port: 40003 })
  t.same(await apiOf([{ IP: '192.0.2.10', PrivatePort: 6443, PublicPort: 40004, Type: 'tcp' }]), { host: '192.0.2.10', port: 40004 })
})

t.test('Docker Desktop: the desktop.docker.io/ports/6443/tcp label comes first', async (t) => {
  const ports: Docker.Port[] = [{ IP: '127.0.0.1', PrivatePort: 6443, PublicPort: 40005, Type: 'tcp' }]
  t.same(await apiOf(ports, { 'desktop.docker.io/ports/6443/tcp': '10.0.1.7:6443' }), { host: '10.0.1.7', port: 6443 })
  t.same(await apiOf(ports, { 'desktop.docker.io/ports/6443/tcp': '[fd00::7]:7443' }), { host: 'fd00::7', port: 7443 })
  // An empty label is no label (kind: `lines[0] != ""`).
  t.same(await apiOf(ports, { 'desktop.docker.io/ports/6443/tcp': '' }), { host: '127.0.0.1', port: 40005 })
  // Even without a published port in the listing.
  t.same(await apiOf([], { 'desktop.docker.io/ports/6443/tcp': '127.0.0.1:51234' }), { host: '127.0.0.1', port: 51234 })
})
