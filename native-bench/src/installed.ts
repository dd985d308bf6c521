// kind-tunnel as a user installs it: the repository packed (its prepack makes
// the prebuilds) and installed with `npm install -g --prefix` into an empty
// prefix. Shared by the `installed` contender and `--relay --installed`.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface InstalledPackage {
  /** The prefix's `kind-tunnel` bin. */
  bin: string;
  /** The installed package's directory (PREFIX/lib/node_modules/kind-tunnel). */
  pkgDir: string;
  /** A PATH of only the prefix's bin and `node`: no C compiler, so the addon can only be the tarball's prebuild. */
  path: string;
}

/**
 * KT_INSTALLED (a kind-tunnel bin installed from the tarball) when set, else
 * the repository packed and installed under `dir`.
 */
export function installPackedPackage(dir: string): InstalledPackage {
  const nodeOnly = join(dir, 'node-only');
  mkdirSync(nodeOnly, { recursive: true });
  if (!existsSync(join(nodeOnly, 'node'))) symlinkSync(process.execPath, join(nodeOnly, 'node'));
  let bin = process.env['KT_INSTALLED'];
  if (bin === undefined || bin === '') {
    const repo = fileURLToPath(new URL('../../../', import.meta.url)); // build/src/ -> the repository root
    const inst = join(dir, 'installed');
    mkdirSync(inst, { recursive: true });
    // The outer `npm run bench` leaves npm_config_* / npm_package_* in the environment; a user's shell has none.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
    execFileSync('npm', ['pack', '--pack-destination', inst, '--loglevel=error'], { cwd: repo, env, stdio: ['ignore', 'ignore', 'inherit'], timeout: 600_000 });
    const tgz = readdirSync(inst).find((f) => f.endsWith('.tgz'));
    if (tgz === undefined) throw new Error('npm pack made no tarball');
    execFileSync('npm', ['install', '-g', '--prefix', join(inst, 'prefix'), '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', join(inst, tgz)], { cwd: inst, env, stdio: ['ignore', 'ignore', 'inherit'], timeout: 600_000 });
    bin = join(inst, 'prefix', 'bin', 'kind-tunnel');
  }
  // PREFIX/bin/kind-tunnel -> PREFIX/lib/node_modules/kind-tunnel
  const pkgDir = join(dirname(dirname(bin)), 'lib', 'node_modules', 'kind-tunnel');
  if (!existsSync(join(pkgDir, 'dist', 'src'))) throw new Error(`no installed package at ${pkgDir} (from ${bin})`);
  return { bin, pkgDir, path: `${dirname(bin)}:${nodeOnly}` };
}
