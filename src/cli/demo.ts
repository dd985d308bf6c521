// `kind-tunnel demo`: no Docker, no cluster. An embedded API server, two
// simulated nodes on loopback and one LoadBalancer Service, served by the
// same code as `up` (direct mode). Prints what to curl.

import { join } from 'node:path'
import type { Argv, ArgumentsCamelCase } from 'yargs'
import type { LevelWithSilent } from 'pino'
import { buildUpConfig } from '../app/config.js'
import { DEMO_CLUSTER, demoLines, startDemoCluster, writeKubeconfig } from '../app/demo.js'
import { runSession } from '../app/session.js'
import { resolveStateDir } from '../app/state.js'
import { parseIntOption } from '../config/parse.js'
import { errorCode } from '../errors.js'
import { silentLogger } from '../observe/logger.js'
import { fdLimit, shutdownSignal } from './run.js'
import { servingOptions } from './up.js'

export function demoOptions<T> (y: Argv<T>) {
  return servingOptions(y)
    .option('kubeconfig-out', { type: 'string', describe: 'write a kubeconfig for the embedded API server, for kubectl' })
    .option('service-port', { type: 'string', describe: 'the demo Service\'s port (default 80; 8000 when this user cannot bind 80)' })
}

type DemoArgv = ArgumentsCamelCase<{
  kubeconfigOut?: string
  servicePort?: string
  address?: string
  ipPool?: string
  httpPort?: string
  httpsPort?: string
  metrics?: string
  logLevel: string
  jsonLogs: boolean
  stateDir?: string
  drainTimeout?: string
  accessLog: boolean
}>

export async function runDemo (argv: DemoArgv): Promise<number> {
  // Every 127/8 address answers on Linux and Windows, so the demo can show
  // dedicated IPs there without root; macOS would need a loopback alias.
  const address = argv.address ?? (process.platform === 'darwin' ? 'hostname' : 'both')
  const servicePort = argv.servicePort !== undefined ? parseIntOption(argv.servicePort, '--service-port', 1, 65535) : undefined
  const base = buildUpConfig({
    mode: 'direct',
    address,
    ipPool: argv.ipPool,
    httpPort: argv.httpPort,
    httpsPort: argv.httpsPort,
    metrics: argv.metrics,
    // Its own state dir: a demo must never take over (or undo) a real `up`.
    stateDir: argv.stateDir ?? join(resolveStateDir(), 'demo'),
    docker: false,
    drainTimeout: argv.drainTimeout ?? '2000',
    accessLog: argv.accessLog,
  }, await fdLimit())
  const signal = shutdownSignal()
  const demo = await startDemoCluster({ ...(servicePort !== undefined ? { servicePort } : {}), gateway: true, logger: silentLogger() })
  try {
    if (argv.kubeconfigOut !== undefined) await writeKubeconfig(argv.kubeconfigOut, demo.kubeconfig())
    const cfg = { ...base, cluster: DEMO_CLUSTER, kubeconfigText: demo.kubeconfig() }
    const { code } = await runSession({
      cfg,
      logLevel: argv.logLevel as LevelWithSilent,
      jsonLogs: argv.jsonLogs,
      signal,
      readyLines: (run) => demoLines(run.status(), argv.kubeconfigOut),
    })
    return code
  } catch (err) {
    if (signal.aborted && errorCode(err) === 'KT_ERR_NOT_READY') return 130
    throw err
  } finally {
    await demo.close()
  }
}
