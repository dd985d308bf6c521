#!/usr/bin/env node
// kind-tunnel command line. See docs/architecture.md for the CLI contract.

import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import type { Argv } from 'yargs'
import { InvalidArgumentError } from '../errors.js'
import { EXIT_OK, EXIT_USAGE, reportError } from './run.js'

async function runHelperCommand (argv: { ipPool: string }): Promise<number> {
  const { runHelper } = await import('../addresses/helper.js')
  await runHelper({ stdin: process.stdin, stdout: process.stdout, pool: argv.ipPool })
  return EXIT_OK
}

type Handler = (argv: any) => Promise<number>

interface Command {
  readonly builder: (y: Argv) => Argv<any>
  readonly handler: Handler
}

// Each command's module (and what it imports) is loaded only when that
// command runs: `status` does not load the data plane, `proxy` not the
// controller. Fewer modules read at start also means fewer files open at
// once while Node loads them, which a low `ulimit -n` otherwise runs out of.
const COMMANDS: Record<string, readonly [string, () => Promise<Command>]> = {
  up: ['serve the LoadBalancer Services of kind clusters on the host until Ctrl-C', async () => { const m = await import('./up.js'); return { builder: m.upOptions, handler: m.runUp } }],
  down: ['undo everything up did (also from another terminal, also after a crash)', async () => { const m = await import('./down.js'); return { builder: m.downOptions, handler: m.runDownCommand } }],
  status: ['what the running up serves: Services, addresses, backends, connections', async () => { const m = await import('./status.js'); return { builder: m.statusOptions, handler: m.runStatus } }],
  doctor: ['automated troubleshooting: one line per check, exit 1 on a failure', async () => { const m = await import('./doctor.js'); return { builder: m.doctorOptions, handler: m.runDoctorCommand } }],
  demo: ['no Docker, no cluster: an embedded API server, two simulated nodes, and up', async () => { const m = await import('./demo.js'); return { builder: m.demoOptions, handler: m.runDemo } }],
  proxy: ['run the data plane alone with static routes', async () => { const m = await import('./proxy.js'); return { builder: m.proxyOptions, handler: m.runProxy } }],
}

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
  // The command asked for (the first word that is not an option): its module, loaded now.
  const asked = args.find((a) => !a.startsWith('-'))
  const entry = asked !== undefined && Object.hasOwn(COMMANDS, asked) ? COMMANDS[asked] : undefined
  const loaded = entry !== undefined ? await entry[1]() : undefined
  let y = yargs(args)
    .scriptName('kind-tunnel')
    .usage('$0 <command> [options]')
  for (const [name, [describe, load]] of Object.entries(COMMANDS)) {
    y = y.command(name, describe, (b) => (name === asked && loaded !== undefined ? loaded.builder(b) : b), wrap(async (argv) => (name === asked && loaded !== undefined ? loaded : await load()).handler(argv)))
  }
  await y
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
