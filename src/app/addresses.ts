// How `up` binds LB IPs: which Addresses implementation, and the sidecar's
// pool. The addresses module owns the commands; this file only picks.
//
// - Loopback, every pool address answering already (Linux and Windows with a
//   pool in 127.0.0.0/8): an in-process AddressManager that never runs a command.
// - Loopback, aliases needed, running as root: the same AddressManager.
// - Loopback, aliases needed, not root (macOS): the privileged helper through
//   sudo, `kind-tunnel helper --ip-pool POOL`, which takes verbs only.
// - Sidecar: an AddressManager whose backend adds IP/32 to the container's
//   own interface (eth0) instead of lo, so other containers on the bridge and
//   the CI host reach it (the kernel answers ARP for any local address).

import { spawn } from 'node:child_process'
import { networkInterfaces } from 'node:os'
import { fileURLToPath } from 'node:url'
import { KtError } from '../errors.js'
import { AddressHelperClient } from '../addresses/client.js'
import { type AddressBackend, backendFor, linuxBackend } from '../addresses/backends.js'
import { AddressManager, type AddressChange, type Addresses } from '../addresses/manager.js'
import type { CommandRunner } from '../addresses/runner.js'
import { validatePool } from '../addresses/validate.js'
import type { LoopbackAddress } from '../addresses/backends.js'
import { type Cidr, canonicalIp, cidrSize, formatIp, parseCidr, parseIp } from '../routing/cidr.js'

/** The Linux backend on another device: `ip addr add IP/32 dev eth0`. */
export function deviceBackend (device: string): AddressBackend {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(device)) throw new KtError('KT_ERR_SIDECAR', `${JSON.stringify(device)} is not an interface name`)
  const swap = (args: readonly string[]): string[] => args.map((a, i) => (i > 0 && args[i - 1] === 'dev' ? device : a))
  return {
    platform: 'linux',
    add (ip) {
      // linuxBackend returns null for 127/8 on lo; on a real interface every address needs adding.
      const p = parseIp(ip)
      if (p === null || canonicalIp(ip) !== ip) throw new KtError('KT_ERR_ADDRESS_REFUSED', `${JSON.stringify(ip)} is not a canonical IP address`)
      return { file: 'ip', args: ['addr', 'add', `${ip}/${p.family === 4 ? 32 : 128}`, 'dev', device] }
    },
    remove (ip) {
      const c = linuxBackend.remove(ip)
      return { file: c.file, args: swap(c.args) }
    },
    list: [{ file: 'ip', args: ['-o', 'addr', 'show', 'dev', device] }],
    parseList: (stdout) => linuxBackend.parseList(stdout),
  }
}

/** Whether binding `pool` addresses on this platform's loopback needs a command at all. */
export function poolNeedsAliases (pool: Cidr, backend: AddressBackend): boolean {
  // The backends answer null for addresses the OS already serves (127/8 on
  // Linux and Windows); the first usable address stands for the whole pool,
  // which validatePool keeps from straddling 127/8's edge only when it is inside.
  const first = formatIp(pool.family, pool.base + (cidrSize(pool) > 2n ? 1n : 0n))
  const last = formatIp(pool.family, pool.base + cidrSize(pool) - (cidrSize(pool) > 2n ? 2n : 1n))
  return backend.add(first) !== null || backend.add(last) !== null
}

export interface OpenedAddresses {
  readonly addresses: Addresses
  /** `lo` or the interface name, for the state file. */
  readonly device: string
  readonly how: 'none-needed' | 'in-process' | 'helper'
  close (): Promise<void>
}

export interface OpenAddressesOptions {
  readonly pool: string
  /** Default `lo`. */
  readonly device?: string
  readonly platform?: string
  readonly runner?: CommandRunner
  /** Override the root check (tests). */
  readonly isRoot?: boolean
  /** Progress line before a sudo prompt may appear. */
  readonly onHelper?: (argv: readonly string[]) => void
}

export function openAddresses (o: OpenAddressesOptions): OpenedAddresses {
  const pool = validatePool(o.pool)
  const device = o.device ?? 'lo'
  const withRunner = o.runner !== undefined ? { runner: o.runner } : {}
  if (device !== 'lo') {
    return { addresses: new AddressManager({ pool, backend: deviceBackend(device), ...withRunner }), device, how: 'in-process', close: async () => {} }
  }
  const backend = backendFor(o.platform ?? process.platform)
  if (!poolNeedsAliases(pool, backend)) {
    return { addresses: new AddressManager({ pool, backend, ...withRunner }), device, how: 'none-needed', close: async () => {} }
  }
  const root = o.isRoot ?? (typeof process.getuid === 'function' ? process.getuid() === 0 : true)
  if (root) return { addresses: new AddressManager({ pool, backend, ...withRunner }), device, how: 'in-process', close: async () => {} }
  return spawnHelper(pool.text, o.onHelper)
}

/**
 * `sudo kind-tunnel helper --ip-pool POOL`, started on first use so a user who
 * never gets an ip-mode Service never sees a password prompt. sudo reads the
 * password from the terminal; the helper's stdin/stdout carry JSON lines.
 */
function spawnHelper (pool: string, onHelper?: (argv: readonly string[]) => void): OpenedAddresses {
  const cli = fileURLToPath(new URL('../cli/main.js', import.meta.url))
  const argv = ['--', process.execPath, cli, 'helper', '--ip-pool', pool]
  let client: AddressHelperClient | undefined
  let child: ReturnType<typeof spawn> | undefined
  const get = (): AddressHelperClient => {
    if (client !== undefined) return client
    onHelper?.(['sudo', ...argv])
    child = spawn('sudo', argv, { stdio: ['pipe', 'pipe', 'inherit'] })
    child.on('error', () => {})
    client = new AddressHelperClient({ input: child.stdin as NonNullable<typeof child.stdin>, output: child.stdout as NonNullable<typeof child.stdout>, timeoutMs: 120_000 })
    return client
  }
  const addresses: Addresses = {
    ensure: (ip: string): Promise<AddressChange> => get().ensure(ip),
    release: (ip: string): Promise<AddressChange> => get().release(ip),
    list: (): Promise<LoopbackAddress[]> => get().list(),
  }
  return {
    addresses,
    device: 'lo',
    how: 'helper',
    close: async () => {
      if (client === undefined || child === undefined) return
      client.close()
      const c = child
      await new Promise<void>((resolve) => {
        if (c.exitCode !== null || c.signalCode !== null) { resolve(); return }
        const timer = setTimeout(() => { c.kill('SIGTERM'); resolve() }, 5000)
        c.once('exit', () => { clearTimeout(timer); resolve() })
      })
    },
  }
}

/** Records every IP ensured, before the command runs, so a crash mid-way is still undone. */
export function trackAddresses (inner: Addresses, record: (ip: string) => Promise<void>): Addresses {
  return {
    ensure: async (ip) => {
      await record(ip)
      return await inner.ensure(ip)
    },
    release: (ip) => inner.release(ip),
    list: () => inner.list(),
  }
}

export interface SidecarNetwork {
  readonly device: string
  /** The container's own address on it. */
  readonly address: string
  readonly subnet: Cidr
  /** LB IPs: the top of the subnet, away from Docker's allocations, which start at the bottom. */
  readonly pool: Cidr
}

/**
 * The top block of a subnet: a /24 of a /16-/20 (kind's default network is a
 * /16, so x.y.255.0/24), else the top sixteenth of a smaller one.
 */
export function topOfSubnet (subnet: Cidr): Cidr {
  const bits = subnet.family === 4 ? 32 : 128
  const prefix = subnet.family === 4
    ? (subnet.prefix <= 20 ? 24 : Math.min(30, subnet.prefix + 4))
    : Math.max(subnet.prefix + 4, 120)
  if (prefix > bits - 2 || prefix <= subnet.prefix) throw new KtError('KT_ERR_SIDECAR', `the network ${subnet.text} is too small to spare LB addresses; pass --ip-pool`)
  const size = 1n << BigInt(bits - prefix)
  const base = subnet.base + cidrSize(subnet) - size
  return parseCidr(`${formatIp(subnet.family, base)}/${prefix}`, { strict: true })
}

/** The interface the sidecar serves on: `device`, else the first non-internal IPv4 one (eth0 in a container). */
export function sidecarNetwork (device?: string, interfaces = networkInterfaces()): SidecarNetwork {
  const names = device !== undefined ? [device] : Object.keys(interfaces).sort((a, b) => (a === 'eth0' ? -1 : b === 'eth0' ? 1 : a.localeCompare(b)))
  for (const name of names) {
    for (const a of interfaces[name] ?? []) {
      if (a.internal || a.family !== 'IPv4' || a.cidr === null) continue
      const subnet = parseCidr(a.cidr)
      return { device: name, address: a.address, subnet, pool: topOfSubnet(subnet) }
    }
  }
  throw new KtError('KT_ERR_SIDECAR', device !== undefined
    ? `interface ${device} has no IPv4 address; is the container on the kind network (docker run --network kind)?`
    : 'no network interface with an IPv4 address; run the sidecar with --network kind')
}
