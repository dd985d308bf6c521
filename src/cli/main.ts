#!/usr/bin/env node
// kind-tunnel command line. See docs/architecture.md for the CLI contract.

import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { InvalidArgumentError } from '../errors.js'
import { proxyOptions, runProxy } from './proxy.js'
import { EXIT_OK, EXIT_USAGE, reportError } from './run.js'
import { upOptions, runUp } from './up.js'
import { downOptions, runDownCommand } from './down.js'
import { statusOptions, runStatus } from './status.js'
import { doctorOptions, runDoctorCommand } from './doctor.js'
import { demoOptions, runDemo } from './demo.js'

async function runHelperCommand (argv: { ipPool: string }): Promise<number> {
  const { runHelper } = await import('../addresses/helper.js')
  await runHelper({ stdin: process.stdin, stdout: process.stdout, pool: argv.ipPool })
  return EXIT_OK
}

type Handler = (argv: any) => Promise<number>

function wrap (fn: Handler) {
  return async (argv: unknown): Promise<void> => {
    let code: number
    try {
      code = await fn(argv)
    } catch (err) {
      code = reportError(err)
    }
    process.exitCode = code
    // Let pino flush; then exit even if a stray handle lingers.
    setTimeout(() => process.exit(code), 50).unref()
  }
}

export async function main (args: string[]): Promise<void> {
  // `relay` runs inside the relay container with its own small parser (no
  // yargs needed in the image); hand it the raw arguments.
  if (args[0] === 'relay') {
    const { runRelay } = await import('../relay/main.js')
    await runRelay(args.slice(1))
    return
  }
  await yargs(args)
    .scriptName('kind-tunnel')
    .usage('$0 <command> [options]')
    .command('up', 'serve the LoadBalancer Services of kind clusters on the host until Ctrl-C', (y) => upOptions(y), wrap(runUp))
    .command('down', 'undo everything up did (also from another terminal, also after a crash)', (y) => downOptions(y), wrap(runDownCommand))
    .command('status', 'what the running up serves: Services, addresses, backends, connections', (y) => statusOptions(y), wrap(runStatus))
    .command('doctor', 'automated troubleshooting: one line per check, exit 1 on a failure', (y) => doctorOptions(y), wrap(runDoctorCommand))
    .command('demo', 'no Docker, no cluster: an embedded API server, two simulated nodes, and up', (y) => demoOptions(y), wrap(runDemo))
    .command('proxy', 'run the data plane alone with static routes', (y) => proxyOptions(y), wrap(runProxy))
    .command('relay', 'run the relay (inside the relay container); see relay --help', (y) => y, () => {})
    .command('helper', 'privileged address helper: JSON verbs on stdin (run with sudo by kind-tunnel up)', (y) => y
      .option('ip-pool', { type: 'string', demandOption: true, describe: 'the only CIDR the helper may touch' }), wrap(runHelperCommand))
    .demandCommand(1, 'give a command; see --help')
    .strict()
    .parserConfiguration({ 'duplicate-arguments-array': true, 'strip-aliased': true })
    .fail((msg, err) => {
      if (err !== undefined && err !== null) {
        process.exitCode = reportError(err)
      } else {
        process.exitCode = reportError(new InvalidArgumentError('KT_ERR_INVALID_ARG', (msg ?? 'invalid arguments').replace(/\s+/g, ' ')))
      }
      process.exit(process.exitCode ?? EXIT_USAGE)
    })
    .help()
    .version()
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .parseAsync()
}

main(hideBin(process.argv)).catch((err: unknown) => {
  process.exit(reportError(err))
})
