// `kind-tunnel doctor`: one line per check (ok, warn, FAIL with its fix,
// skip); exit status 1 when any check fails.

import type { Argv, ArgumentsCamelCase } from 'yargs'
import { checkClusterName } from '../app/config.js'
import { dockerAccess } from '../app/docker.js'
import { resolveStateDir } from '../app/state.js'
import { parseCidr } from '../routing/cidr.js'
import { parseHostPort, parseIntOption } from '../config/parse.js'
import { formatLine, runDoctor } from '../doctor/index.js'
import { EXIT_FAILURE, EXIT_OK } from './run.js'

export function doctorOptions<T> (y: Argv<T>) {
  return y
    .option('cluster', { type: 'string', describe: 'check only this kind cluster' })
    .option('kubeconfig', { type: 'string', describe: 'read the cluster through this kubeconfig instead of Docker' })
    .option('docker', { type: 'boolean', default: true, describe: 'consult Docker (--no-docker skips discovery and route probes)' })
    .option('ip-pool', { type: 'string', array: true, describe: 'kind-tunnel\'s LB pool(s) (default 127.240.0.0/16)' })
    .option('http-port', { type: 'string', describe: 'the shared HTTP port to check (default 8080)' })
    .option('https-port', { type: 'string', describe: 'the shared TLS port to check (default 8443)' })
    .option('port', { type: 'string', array: true, describe: 'another HOST:PORT that must be free (repeatable)' })
    .option('hosts-file', { type: 'string', describe: 'the hosts file to check (default /etc/hosts)' })
    .option('state-dir', { type: 'string', describe: 'the state dir of up (default $XDG_STATE_HOME/kind-tunnel; env KIND_TUNNEL_STATE_DIR)' })
    .option('timeout', { type: 'string', describe: 'per probe, ms (default 2000)' })
    .option('json', { type: 'boolean', default: false, describe: 'the lines as JSON' })
}

type DoctorArgv = ArgumentsCamelCase<{
  cluster?: string
  kubeconfig?: string
  docker: boolean
  ipPool?: string[]
  httpPort?: string
  httpsPort?: string
  port?: string[]
  hostsFile?: string
  stateDir?: string
  timeout?: string
  json: boolean
}>

export async function runDoctorCommand (argv: DoctorArgv): Promise<number> {
  const pools = argv.ipPool?.map((p) => parseCidr(p, { strict: true, what: '--ip-pool' }).text)
  const report = await runDoctor({
    stateDir: resolveStateDir({ stateDir: argv.stateDir }),
    ...(argv.cluster !== undefined ? { cluster: checkClusterName(argv.cluster) } : {}),
    ...(argv.kubeconfig !== undefined ? { kubeconfig: argv.kubeconfig } : {}),
    ...(argv.docker ? { docker: dockerAccess() } : {}),
    ...(pools !== undefined ? { ipPools: pools } : {}),
    ...(argv.httpPort !== undefined ? { httpPort: parseIntOption(argv.httpPort, '--http-port', 1, 65535) } : {}),
    ...(argv.httpsPort !== undefined ? { httpsPort: parseIntOption(argv.httpsPort, '--https-port', 1, 65535) } : {}),
    ...(argv.port !== undefined ? { extraPorts: argv.port.map((p) => parseHostPort(p, { what: '--port' })) } : {}),
    ...(argv.hostsFile !== undefined ? { hostsFile: argv.hostsFile } : {}),
    ...(argv.timeout !== undefined ? { timeoutMs: parseIntOption(argv.timeout, '--timeout', 10, 60_000) } : {}),
  })
  if (argv.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n')
  else for (const l of report.lines) process.stdout.write(`${formatLine(l)}\n`)
  return report.failed ? EXIT_FAILURE : EXIT_OK
}
