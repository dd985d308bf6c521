// `kind-tunnel status [--json]`: asks the running `up` over its control
// socket. Not running: KT_ERR_NOT_RUNNING, exit 1.

import type { Argv, ArgumentsCamelCase } from 'yargs'
import { controlRequest } from '../app/control.js'
import { formatStatus } from '../app/render.js'
import { controlPath, readState, resolveStateDir } from '../app/state.js'
import type { UpStatus } from '../app/status.js'

export function statusOptions<T> (y: Argv<T>) {
  return y
    .option('json', { type: 'boolean', default: false, describe: 'the whole status as JSON' })
    .option('state-dir', { type: 'string', describe: 'the state dir of the up to ask (default $XDG_STATE_HOME/kind-tunnel; env KIND_TUNNEL_STATE_DIR)' })
}

type StatusArgv = ArgumentsCamelCase<{ json: boolean, stateDir?: string }>

export async function runStatus (argv: StatusArgv): Promise<number> {
  const dir = resolveStateDir({ stateDir: argv.stateDir })
  const state = await readState(dir).catch(() => undefined)
  const st = await controlRequest(state?.controlSocket ?? controlPath(dir), 'GET', '/status', 5000) as unknown as UpStatus
  if (argv.json) {
    process.stdout.write(JSON.stringify(st, null, 2) + '\n')
  } else {
    for (const l of formatStatus(st, Math.max(60, (process.stdout.columns ?? 120) - 1))) process.stdout.write(`${l}\n`)
  }
  return 0
}
