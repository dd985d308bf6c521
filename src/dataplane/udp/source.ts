// The local address a UDP flow's upstream socket binds before it connects,
// so that no socket, not even a flow's first, is bound to a wildcard address
// (issue #16: "nothing binds a wildcard address by default"). A socket that
// connects unbound is bound to 0.0.0.0 or :: by the kernel first, and can
// take a datagram from anyone until its connect() lands.
//
// Told without a socket, for the destinations kind-tunnel dials directly:
// loopback (the kernel's source is 127.0.0.1 or ::1), an address of this host
// (itself), or an address on the subnet of one of this host's interfaces
// (kind's nodes on the Docker bridge: that interface's address). Anything else
// (a routed destination) is undefined, and the plane learns the address from
// the kernel's choice on the first connected socket, as before.

import { BlockList, isIP } from 'node:net'
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os'

export function onLinkSource (host: string, ifaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces()): string | undefined {
  const fam = isIP(host)
  if (fam === 0) return undefined
  if (fam === 4 && host.startsWith('127.')) return '127.0.0.1'
  if (fam === 6 && (host === '::1' || /^(0{1,4}:){7}0{0,3}1$/.test(host))) return '::1'
  const type = fam === 4 ? 'ipv4' : 'ipv6'
  // IPv6 link-local addresses (scope id ≠ 0) need a scope to bind: left to the kernel.
  const all = Object.values(ifaces).flatMap((l) => l ?? []).filter((a) => a.family === (fam === 4 ? 'IPv4' : 'IPv6') && (fam === 4 || a.scopeid === 0))
  for (const a of all) if (a.address === host) return host
  for (const a of all) {
    if (a.internal || a.cidr === null) continue
    const prefix = Number(a.cidr.slice(a.cidr.lastIndexOf('/') + 1))
    const bl = new BlockList()
    try { bl.addSubnet(a.address, prefix, type) } catch { continue }
    if (bl.check(host, type)) return a.address
  }
  return undefined
}
