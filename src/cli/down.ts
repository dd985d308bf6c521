// `kind-tunnel down`: undo everything `up` did, whether it still runs (asked
// over its control socket) or died (undone from the state file).

import type { Argv, ArgumentsCamelCase } from 'yargs'
import type { LevelWithSilent } from 'pino'
import { checkClusterName } from '../app/config.js'
import { loadController } from '../app/controller-port.js'
import { dockerAccess } from '../app/docker.js'
import { runDown } from '../app/down.js'
import { resolveStateDir } from '../app/state.js'
import { parseIntOption } from '../config/parse.js'
import { createLogger } from '../observe/logger.js'
import { LOG_LEVELS } from './up.js'

export function downOptions<T> (y: Argv<T>) {
  return y
    .option('cluster', { type: 'string', describe: 'undo only this cluster' })
    .option('state-dir', { type: 'string', describe: 'the state dir of the up to stop (default $XDG_STATE_HOME/kind-tunnel; env KIND_TUNNEL_STATE_DIR)' })
    .option('force', { type: 'boolean', default: false, describe: 'undo from the state file even if its pid is alive (pid reused after a reboot)' })
    .option('timeout', { type: 'string', describe: 'wait this long for a running up to finish, ms (default 90000)' })
    .option('log-level', { type: 'string', default: 'warn', choices: LOG_LEVELS })
}

type DownArgv = ArgumentsCamelCase<{ cluster?: string, stateDir?: string, force: boolean, timeout?: string, logLevel: string }>

export async function runDownCommand (argv: DownArgv): Promise<number> {
  const cluster = argv.cluster !== undefined ? checkClusterName(argv.cluster) : undefined
  const timeoutMs = argv.timeout !== undefined ? parseIntOption(argv.timeout, '--timeout', 100, 3_600_000) : undefined
  const logger = createLogger({ level: argv.logLevel as LevelWithSilent })
  const code = await runDown({
    stateDir: resolveStateDir({ stateDir: argv.stateDir }),
    cluster,
    force: argv.force,
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    logger,
    controller: loadController,
    docker: dockerAccess(),
    print: (l) => process.stdout.write(`${l}\n`),
  })
  logger.flush()
  return code
}
