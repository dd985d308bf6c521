#!/usr/bin/env node
// kind-tunnel command line. See docs/architecture.md for the CLI contract.

import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { InvalidArgumentError } from '../errors.js'
import { proxyOptions, runProxy } from './proxy.js'
import { EXIT_USAGE, reportError } from './run.js'

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
  await yargs(args)
    .scriptName('kind-tunnel')
    .usage('$0 <command> [options]')
    .command('proxy', 'run the data plane alone with static routes', (y) => proxyOptions(y), wrap(runProxy))
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
