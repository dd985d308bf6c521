// Test hosts in network namespaces the test creates itself: a veth pair from
// the root namespace to a fresh namespace, addresses from 10.213.x.0/30.
// Everything is removed in teardown, even on failure.

import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'

export interface TestNetns {
  name: string
  hostIp: string
  nsIp: string
  exec (args: string[]): string
  remove (): void
}

function sh (args: string[]): string {
  return execFileSync(args[0] as string, args.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

export function netnsAvailable (): boolean {
  try {
    const n = `kt-probe-${randomBytes(3).toString('hex')}`
    sh(['ip', 'netns', 'add', n])
    sh(['ip', 'netns', 'del', n])
    return true
  } catch {
    return false
  }
}

let counter = 0

/** Create a namespace reachable from the host at nsIp via a /30 veth link. */
export function createNetns (): TestNetns {
  const id = randomBytes(3).toString('hex')
  const name = `kt-test-${id}`
  const hostIf = `ktv${id}a`
  const nsIf = `ktv${id}b`
  const third = (process.pid + counter++) % 250 + 1
  const fourth = (parseInt(id, 16) % 60) * 4
  const hostIp = `10.213.${third}.${fourth + 1}`
  const nsIp = `10.213.${third}.${fourth + 2}`
  const remove = (): void => {
    try { sh(['ip', 'netns', 'del', name]) } catch {}
    try { sh(['ip', 'link', 'del', hostIf]) } catch {}
  }
  try {
    sh(['ip', 'netns', 'add', name])
    sh(['ip', 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf])
    sh(['ip', 'link', 'set', nsIf, 'netns', name])
    sh(['ip', 'addr', 'add', `${hostIp}/30`, 'dev', hostIf])
    sh(['ip', 'link', 'set', hostIf, 'up'])
    sh(['ip', 'netns', 'exec', name, 'ip', 'addr', 'add', `${nsIp}/30`, 'dev', nsIf])
    sh(['ip', 'netns', 'exec', name, 'ip', 'link', 'set', nsIf, 'up'])
    sh(['ip', 'netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up'])
  } catch (err) {
    remove()
    throw err
  }
  return {
    name,
    hostIp,
    nsIp,
    exec: (args) => sh(['ip', 'netns', 'exec', name, ...args]),
    remove,
  }
}
