// Docker as `up`, `down` and `doctor` use it: one lazily connected engine
// handle behind plain functions. The docker module does the work; this file
// only remembers the connection and answers "no such cluster" with undefined.

// The docker modules are loaded on first use: dockerode costs a few hundred
// milliseconds of startup that `status` or `demo` never need.
import type { CloudProviderKindContainer } from '../docker/cloud-provider-kind.js'
import type { DockerConnection, Env } from '../docker/engine.js'
import type { KindCluster } from '../docker/discover.js'
import type { ModeChoice } from '../docker/mode.js'
import type { RelayInfo } from '../docker/relay-container.js'

export interface DockerAccess {
  /** Every kind cluster (running or not), sorted by name. Throws KT_ERR_DOCKER_UNAVAILABLE. */
  clusters (): Promise<KindCluster[]>
  /**
   * The cluster's admin kubeconfig; undefined when the cluster no longer
   * exists. `internal`: the server is the control plane's address on the kind
   * network (for a sidecar on that network), not the host's published port.
   */
  kubeconfig (cluster: string, opts?: { internal?: boolean }): Promise<string | undefined>
  chooseMode (cluster: KindCluster): Promise<ModeChoice>
  ensureRelay (cluster: KindCluster, opts: { base?: string | undefined, onProgress?: (line: string) => void }): Promise<RelayInfo>
  /** Remove the cluster's relay container(s); how many were removed. */
  removeRelay (cluster: string): Promise<number>
  /** Containers cloud-provider-kind made (another load-balancer controller for kind). */
  cloudProviderKind?: () => Promise<CloudProviderKindContainer[]>
}

export function dockerAccess (opts: { env?: Env, network?: string } = {}): DockerAccess {
  let conn: Promise<DockerConnection> | undefined
  const get = async (): Promise<DockerConnection> => {
    conn ??= import('../docker/engine.js').then(({ connectDocker }) => connectDocker(opts.env !== undefined ? { env: opts.env } : {}))
    try {
      return await conn
    } catch (err) {
      conn = undefined
      throw err
    }
  }
  const discover = async (): Promise<KindCluster[]> => {
    const { docker } = await get()
    const { discoverClusters } = await import('../docker/discover.js')
    return await discoverClusters({ docker, ...(opts.network !== undefined ? { network: opts.network } : {}), ...(opts.env !== undefined ? { env: opts.env } : {}) })
  }
  return {
    clusters: discover,
    async kubeconfig (name, o = {}) {
      const c = (await discover()).find((x) => x.name === name)
      if (c === undefined) return undefined
      const { docker } = await get()
      const { getKubeconfig, primaryControlPlane, API_SERVER_PORT } = await import('../docker/discover.js')
      const text = await getKubeconfig(docker, c)
      if (o.internal !== true) return text
      const cp = primaryControlPlane(c)
      const ip = cp?.ipv4 ?? cp?.ipv6
      if (ip === undefined) return text
      // kubeadm puts the node address in the API server certificate's SANs.
      const server = `https://${ip.includes(':') ? `[${ip}]` : ip}:${API_SERVER_PORT}`
      return text.replace(/^(\s*server:\s*)\S.*$/gm, (_m, lead: string) => `${lead}${server}`)
    },
    chooseMode: async (c) => (await import('../docker/mode.js')).chooseMode(c),
    async ensureRelay (cluster, o) {
      const { docker } = await get()
      const { ensureRelay } = await import('../docker/relay-container.js')
      return await ensureRelay({
        docker,
        cluster,
        ...(o.base !== undefined ? { base: o.base } : {}),
        ...(o.onProgress !== undefined ? { onProgress: o.onProgress } : {}),
      })
    },
    async cloudProviderKind () {
      const { docker } = await get()
      const { findCloudProviderKind } = await import('../docker/cloud-provider-kind.js')
      return await findCloudProviderKind(docker)
    },
    async removeRelay (cluster) {
      const { docker } = await get()
      const { removeRelay } = await import('../docker/relay-container.js')
      return await removeRelay(docker, cluster)
    },
  }
}
