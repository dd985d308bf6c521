// /etc/hosts (or %SystemRoot%\System32\drivers\etc\hosts): name → addresses.
// Pure parsing; the path is a parameter so tests use fixtures.

import { canonicalIp } from '../routing/cidr.js'

export function defaultHostsFile (platform: string = process.platform): string {
  if (platform === 'win32') return `${process.env.SystemRoot ?? 'C:\\Windows'}\\System32\\drivers\\etc\\hosts`
  return '/etc/hosts'
}

/** Lowercased names → every address a line gives them, in file order. */
export function parseHosts (text: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/#.*$/, '').trim()
    if (line === '') continue
    const [addr, ...names] = line.split(/\s+/)
    const ip = canonicalIp((addr ?? '').split('%')[0] ?? '')
    if (ip === null) continue
    for (const n of names) {
      const k = n.toLowerCase().replace(/\.$/, '')
      const list = out.get(k) ?? []
      if (!list.includes(ip)) list.push(ip)
      out.set(k, list)
    }
  }
  return out
}

export function isLoopbackIp (ip: string): boolean {
  return ip === '::1' || /^127\./.test(ip)
}
