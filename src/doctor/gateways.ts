// Gateway checks of `kind-tunnel doctor`, from the running up's status: a
// Gateway whose implementation never published an address, one with no
// Service found, a route whose hostnames meet no listener, a name another
// Service holds; and the Gateway hostnames that need a hosts-file entry
// (anything but *.localhost).

import { gatewaysOf } from '../app/gateways.js'
import type { UpStatus } from '../app/status.js'
import type { CheckLine } from './checks.js'

const FIX: Record<string, string> = {
  NoAddress: 'check the Gateway implementation is running and its Service got an address: `kubectl get gateway -A`, `kubectl get svc -A`',
  NoService: 'annotate the Gateway\'s LoadBalancer Service with kind-tunnel.dev/ingress-class=<gatewayClassName> (docs/gateway.md)',
  NoServicePort: 'give the Gateway\'s Service a port numbered like the listener (the implementation normally does)',
  InvalidHostname: 'fix the listener hostname',
  RouteHostnameUnmatched: 'make the route\'s spec.hostnames fall under a listener hostname (or drop the listener hostname)',
}

export function checkGateways (st: (Pick<UpStatus, 'clusters'> & Partial<Pick<UpStatus, 'conflicts'>>) | undefined): CheckLine[] {
  if (st === undefined) return [{ check: 'gateway', status: 'skip', message: 'no kind-tunnel up is running; Gateways are checked from its status' }]
  const gws = gatewaysOf(st)
  if (gws.length === 0) return [{ check: 'gateway', status: 'ok', message: 'no Gateway API Gateway seen' }]
  const out: CheckLine[] = []
  let good = 0
  for (const g of gws) {
    const where = `cluster ${g.cluster}: Gateway ${g.key}`
    let bad = false
    for (const p of g.problems) {
      bad = true
      out.push({ check: 'gateway', status: 'warn', message: `${where}: ${p.message}`, ...(FIX[p.reason] !== undefined ? { fix: FIX[p.reason] as string } : {}) })
    }
    for (const h of g.hostnames) {
      if (h.served) continue
      bad = true
      out.push({ check: 'gateway', status: 'warn', message: `${where}: ${h.name} (${h.route}) is held by another Service or cluster on the same port; see the HostnameConflict event and kind-tunnel status`, fix: 'give one of them another hostname' })
    }
    if (!bad) good++
  }
  if (good > 0) out.unshift({ check: 'gateway', status: 'ok', message: `${good} Gateway${good === 1 ? '' : 's'} routed by name` })
  return out
}

/** Gateway hostnames that resolve only through the hosts file (or DNS): not wildcards, not *.localhost. */
export function gatewayHostnamesToResolve (st: Pick<UpStatus, 'clusters'> | undefined): Array<{ name: string, from: string }> {
  if (st === undefined) return []
  const out = new Map<string, string>()
  for (const g of gatewaysOf(st)) {
    for (const h of g.hostnames) {
      const n = h.name
      if (n.startsWith('*.') || n === 'localhost' || n.endsWith('.localhost') || out.has(n)) continue
      out.set(n, `${h.route} via Gateway ${g.key}`)
    }
  }
  return [...out].map(([name, from]) => ({ name, from }))
}
