// One backend per platform: the exact argv that binds, removes and lists a
// loopback address, and a parser for the listing. Pure: building a command
// runs nothing (runner.ts does that, without a shell).

import { KtError } from '../errors.js'
import { canonicalIp, parseIp } from '../routing/cidr.js'

export type AddressPlatform = 'linux' | 'darwin' | 'win32'

export interface Command {
  /** A bare program name; the runner resolves it in fixed system directories, never via PATH. */
  readonly file: string
  readonly args: readonly string[]
}

export interface LoopbackAddress {
  readonly ip: string
  readonly prefix: number
  readonly family: 4 | 6
}

export interface AddressBackend {
  readonly platform: AddressPlatform
  /** The command that binds `ip` on loopback; null when the OS answers on it already. */
  add (ip: string): Command | null
  /** The command that removes `ip` from loopback. */
  remove (ip: string): Command
  /** Commands whose output, through parseList, lists the loopback addresses. */
  readonly list: readonly Command[]
  /** Every address found in one list command's output, the system ones included. */
  parseList (stdout: string): LoopbackAddress[]
}

/** Defence in depth: a backend only ever formats our own canonical spelling of an IP. */
function checked (ip: string): { ip: string, family: 4 | 6, value: bigint } {
  const p = parseIp(ip)
  if (p === null || canonicalIp(ip) !== ip) throw new KtError('KT_ERR_ADDRESS_REFUSED', `${JSON.stringify(ip)} is not a canonical IP address`)
  return { ip, family: p.family, value: p.value }
}

/** 127.0.0.0/8: on Linux and Windows every address in it already answers on loopback. */
function inLoopback8 (family: 4 | 6, value: bigint): boolean {
  return family === 4 && (value >> 24n) === 127n
}

/** The addresses an OS puts on loopback by itself: not aliases, never stale. */
export function isSystemLoopback (a: LoopbackAddress): boolean {
  if (a.ip === '127.0.0.1' || a.ip === '::1') return true
  const p = parseIp(a.ip)
  // fe80::/10 link-local, e.g. macOS's fe80::1%lo0.
  return p !== null && p.family === 6 && (p.value >> 118n) === 0x3fan
}

function prefixFromMask (mask: string): number | null {
  let bits: bigint
  if (/^0x[0-9a-f]{8}$/i.test(mask)) {
    bits = BigInt(mask)
  } else {
    const p = parseIp(mask)
    if (p === null || p.family !== 4) return null
    bits = p.value
  }
  let n = 0
  for (let i = 31n; i >= 0n && ((bits >> i) & 1n) === 1n; i--) n++
  return n
}

function entry (rawIp: string, prefix: number | null): LoopbackAddress | null {
  // Listings show link-local addresses with a zone (`fe80::1%lo0`).
  const ip = canonicalIp(rawIp.split('%')[0] ?? '')
  if (ip === null) return null
  const family = ip.includes(':') ? 6 : 4
  return { ip, prefix: prefix ?? (family === 4 ? 32 : 128), family }
}

export const linuxBackend: AddressBackend = {
  platform: 'linux',
  add (raw) {
    const a = checked(raw)
    if (inLoopback8(a.family, a.value)) return null
    return { file: 'ip', args: ['addr', 'add', `${a.ip}/${a.family === 4 ? 32 : 128}`, 'dev', 'lo'] }
  },
  remove (raw) {
    const a = checked(raw)
    return { file: 'ip', args: ['addr', 'del', `${a.ip}/${a.family === 4 ? 32 : 128}`, 'dev', 'lo'] }
  },
  list: [{ file: 'ip', args: ['-o', 'addr', 'show', 'dev', 'lo'] }],
  // `1: lo    inet 10.77.0.5/32 scope global lo\       valid_lft forever ...`
  parseList (stdout) {
    const out: LoopbackAddress[] = []
    for (const line of stdout.split('\n')) {
      const m = /\sinet6?\s+([0-9a-fA-F:.]+)\/(\d{1,3})\s/.exec(`${line} `)
      if (m === null) continue
      const e = entry(m[1] ?? '', Number(m[2]))
      if (e !== null) out.push(e)
    }
    return out
  },
}

export const darwinBackend: AddressBackend = {
  platform: 'darwin',
  add (raw) {
    const a = checked(raw)
    // macOS answers on 127.0.0.1 only; every other address needs an alias.
    return a.family === 4
      ? { file: 'ifconfig', args: ['lo0', 'alias', a.ip, 'netmask', '255.255.255.255'] }
      : { file: 'ifconfig', args: ['lo0', 'inet6', a.ip, 'prefixlen', '128', 'alias'] }
  },
  remove (raw) {
    const a = checked(raw)
    return a.family === 4
      ? { file: 'ifconfig', args: ['lo0', '-alias', a.ip] }
      : { file: 'ifconfig', args: ['lo0', 'inet6', a.ip, '-alias'] }
  },
  list: [{ file: 'ifconfig', args: ['lo0'] }],
  // `\tinet 127.0.0.1 netmask 0xff000000`, `\tinet6 fe80::1%lo0 prefixlen 64 scopeid 0x1`
  parseList (stdout) {
    const out: LoopbackAddress[] = []
    for (const line of stdout.split('\n')) {
      const v4 = /^\s*inet\s+([0-9.]+)\s+netmask\s+(\S+)/.exec(line)
      if (v4 !== null) {
        const e = entry(v4[1] ?? '', prefixFromMask(v4[2] ?? ''))
        if (e !== null) out.push(e)
        continue
      }
      const v6 = /^\s*inet6\s+([0-9a-fA-F:.]+(?:%\S+)?)\s+prefixlen\s+(\d{1,3})/.exec(line)
      if (v6 !== null) {
        const e = entry(v6[1] ?? '', Number(v6[2]))
        if (e !== null) out.push(e)
      }
    }
    return out
  },
}

export const win32Backend: AddressBackend = {
  platform: 'win32',
  add (raw) {
    const a = checked(raw)
    if (inLoopback8(a.family, a.value)) return null
    return a.family === 4
      ? { file: 'netsh', args: ['interface', 'ip', 'add', 'address', 'loopback', a.ip, '255.255.255.255'] }
      : { file: 'netsh', args: ['interface', 'ipv6', 'add', 'address', 'loopback', a.ip] }
  },
  remove (raw) {
    const a = checked(raw)
    return a.family === 4
      ? { file: 'netsh', args: ['interface', 'ip', 'delete', 'address', 'loopback', a.ip] }
      : { file: 'netsh', args: ['interface', 'ipv6', 'delete', 'address', 'loopback', a.ip] }
  },
  list: [
    { file: 'netsh', args: ['interface', 'ip', 'show', 'addresses', 'loopback'] },
    { file: 'netsh', args: ['interface', 'ipv6', 'show', 'addresses', 'loopback'] },
  ],
  // IPv4: `    IP Address:   10.0.0.5` then `    Subnet Prefix:   10.0.0.5/32 (mask 255.255.255.255)`.
  // IPv6: `Address fd00::5 Parameters`. netsh output is localised; only English labels are read.
  parseList (stdout) {
    const out: LoopbackAddress[] = []
    let pending: string | null = null
    const flush = (prefix: number | null): void => {
      if (pending === null) return
      const e = entry(pending, prefix)
      if (e !== null) out.push(e)
      pending = null
    }
    for (const line of stdout.split(/\r?\n/)) {
      const ip = /^\s*IP Address:\s*([0-9.]+)\s*$/.exec(line)
      if (ip !== null) { flush(null); pending = ip[1] ?? null; continue }
      const sub = /^\s*Subnet Prefix:\s*[0-9.]+\/(\d{1,2})\b/.exec(line)
      if (sub !== null) { flush(Number(sub[1])); continue }
      const v6 = /^\s*Address\s+([0-9a-fA-F:.]+(?:%\S+)?)\s+Parameters\s*$/.exec(line)
      if (v6 !== null) { flush(null); const e = entry(v6[1] ?? '', 128); if (e !== null) out.push(e) }
    }
    flush(null)
    return out
  },
}

export function backendFor (platform: string = process.platform): AddressBackend {
  if (platform === 'linux') return linuxBackend
  if (platform === 'darwin') return darwinBackend
  if (platform === 'win32') return win32Backend
  throw new KtError('KT_ERR_ADDRESS_COMMAND', `no loopback address backend for platform ${platform}`)
}

/** The command line a user can paste to remove a stale alias (doctor prints it). */
export function cleanupCommand (ip: string, backend: AddressBackend): string {
  const c = backend.remove(ip)
  const line = [c.file, ...c.args].join(' ')
  return backend.platform === 'win32' ? `${line}   (in an Administrator prompt)` : `sudo ${line}`
}
