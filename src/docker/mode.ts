// `--mode auto`: can the host route to the kind network? Linux with Docker
// Engine (and WSL2 with Docker inside WSL) can; Docker Desktop, Podman
// machine, colima, Rancher Desktop and OrbStack run the engine in a VM whose
// bridge the host cannot reach, so they need the relay.
//
// Only a completed TCP handshake counts as proof. A refusal could come from
// an unrelated host that happens to use the same private range on the LAN,
// which is exactly the situation on a laptop where the kind subnet is not routed.

import { probeReachable, type PortProbe } from '../dataplane/probe.js'
import type { KindCluster, KindNode } from './discover.js'

export type ReachMode = 'direct' | 'relay'

export interface ModeChoice {
  readonly mode: ReachMode
  readonly reason: string
  /** The probes behind the choice, for `doctor` and `status`. */
  readonly probes: ReadonlyArray<{ readonly host: string, readonly results: readonly PortProbe[] }>
}

export interface ChooseModeOptions {
  /** Per-connect deadline (default 800 ms: a LAN/bridge answer takes well under 10 ms). */
  readonly timeoutMs?: number
  /** Default [10256, 6443]: kube-proxy's health port on every node, the API server on control planes. */
  readonly ports?: readonly number[]
  /** How many nodes to probe at once (default 2). */
  readonly maxNodes?: number
}

function addressOf (n: KindNode): string | undefined {
  return n.ipv4 ?? n.ipv6
}

export async function chooseMode (cluster: KindCluster, opts: ChooseModeOptions = {}): Promise<ModeChoice> {
  const timeoutMs = opts.timeoutMs ?? 800
  const ports = opts.ports ?? [10256, 6443]
  // Control planes first: they answer on 6443 even without kube-proxy (kube-proxy-free CNIs).
  const rank = (n: KindNode): number => n.role === 'control-plane' ? 0 : n.role === 'worker' ? 1 : 2
  const nodes = cluster.nodes
    .filter((n) => n.role !== 'external-load-balancer' && addressOf(n) !== undefined && n.state === 'running')
    .sort((a, b) => rank(a) - rank(b))
    .slice(0, opts.maxNodes ?? 2)
  if (nodes.length === 0) {
    return { mode: 'relay', reason: `no running node of cluster ${cluster.name} has an address on network ${cluster.network}; cannot test direct routing`, probes: [] }
  }
  const probes = await Promise.all(nodes.map((n) => probeReachable(addressOf(n) as string, ports, timeoutMs)))
  const hit = probes.find((p) => p.reachable)
  const summary = probes.map((p) => ({ host: p.host, results: p.results }))
  if (hit !== undefined) {
    return { mode: 'direct', reason: `the host reached ${hit.host}:${hit.port} on network ${cluster.network} directly`, probes: summary }
  }
  const seen = probes.map((p) => `${p.host} (${p.results.map((r) => `${r.port} ${r.outcome}`).join(', ')})`).join('; ')
  return {
    mode: 'relay',
    reason: `no TCP handshake with the nodes of ${cluster.name} within ${timeoutMs} ms: ${seen}; the host cannot route to network ${cluster.network} (typical of Docker Desktop, Podman machine, colima, OrbStack), so connections go through the relay container`,
    probes: summary,
  }
}
