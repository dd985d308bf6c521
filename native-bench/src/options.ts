// Command-line options of the bench. Pure, so it is table-tested.
import { ALL_CONTENDERS, QUICK_CONTENDERS } from './contenders.js';
import { WORKLOAD_ORDER, type Placement, type WorkloadId } from './defs.js';

export const USAGE = `usage: npm run bench -- [options]      (from native-bench/, or the repo root)

  --slowpath           a separate mode: warm pools over a slow connect path (--slowpath --help)
  --quick              1 s runs, the quick contender set, 1000 idle connections, 200 TTFB samples
  --rounds N           interleaved rounds, at least 3 (default 3)
  --duration S         seconds per throughput run (default 10; quick 1)
  --contenders LIST    comma-separated ids: ${ALL_CONTENDERS.map((c) => c.info.id).join(',')}
  --workloads LIST     comma-separated ids: ${WORKLOAD_ORDER.join(',')}
  --idle-conns N       connections held open for the memory workload (default 5000)
  --ttfb-samples N     sequential connections timed for TTFB (default 2000; quick 200)
  --pool-size N        --pool-size of the warm-pool contender (default 32)
  --placement P        pinned (default): load generator on CPU 0, every proxy on CPU 1;
                       shared: nothing pinned, load generator, backends and proxies share
                       every core. A shared run writes only its own docs section.
  --seed N             seed of the shuffled order within each round
  --out FILE           results JSON (default results/<time>-<mode>[-shared].json, also
                       results/latest[-shared].json)
  --docs-dir DIR       where benchmarks.md and .svg go (default ../docs); --no-docs to skip

environment:
  KT_BIN    the kind-tunnel command, split on spaces (default: node <repo>/dist/src/cli/main.js)
  KT_ARGS   extra arguments for every kind-tunnel contender, split on spaces
`;

export interface Options {
  mode: 'quick' | 'full' | 'custom';
  rounds: number;
  durationS: number;
  bulkOmitS: number;
  contenders: string[];
  workloads: WorkloadId[];
  idleConns: number;
  ttfbSamples: number;
  poolSize: number;
  placement: Placement;
  seed: number;
  out: string | undefined;
  docsDir: string | undefined;
}

export class UsageError extends Error {}

function intArg(name: string, v: string | undefined, min: number, max: number): number {
  const n = Number(v);
  if (v === undefined || !Number.isInteger(n) || n < min || n > max) throw new UsageError(`${name} needs an integer from ${min} to ${max}, got ${JSON.stringify(v ?? '')}`);
  return n;
}

export function parseOptions(argv: readonly string[], defaultDocsDir: string): Options {
  const quick = argv.includes('--quick');
  const o: Options = {
    mode: quick ? 'quick' : 'full',
    rounds: 3,
    durationS: quick ? 1 : 10,
    bulkOmitS: quick ? 0 : 1,
    contenders: quick ? [...QUICK_CONTENDERS] : ALL_CONTENDERS.map((c) => c.info.id),
    workloads: [...WORKLOAD_ORDER],
    idleConns: quick ? 1000 : 5000,
    ttfbSamples: quick ? 200 : 2000,
    poolSize: 32,
    placement: 'pinned',
    seed: Date.now() % 1_000_000,
    out: undefined,
    docsDir: defaultDocsDir,
  };
  let custom = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string | undefined => argv[++i];
    switch (a) {
      case '--quick':
        break;
      case '--rounds':
        o.rounds = intArg(a, next(), 3, 50);
        custom = true;
        break;
      case '--duration':
        o.durationS = intArg(a, next(), 1, 600);
        custom = true;
        break;
      case '--contenders': {
        const ids = (next() ?? '').split(',').filter(Boolean);
        const known = new Set(ALL_CONTENDERS.map((c) => c.info.id));
        const bad = ids.filter((id) => !known.has(id));
        if (ids.length === 0 || bad.length > 0) throw new UsageError(`unknown contender(s): ${bad.join(',') || '(none given)'}`);
        o.contenders = ids;
        custom = true;
        break;
      }
      case '--workloads': {
        const ids = (next() ?? '').split(',').filter(Boolean);
        const bad = ids.filter((id) => !(WORKLOAD_ORDER as readonly string[]).includes(id));
        if (ids.length === 0 || bad.length > 0) throw new UsageError(`unknown workload(s): ${bad.join(',') || '(none given)'}`);
        o.workloads = WORKLOAD_ORDER.filter((w) => ids.includes(w));
        custom = true;
        break;
      }
      case '--idle-conns':
        o.idleConns = intArg(a, next(), 1, 20_000);
        custom = true;
        break;
      case '--ttfb-samples':
        o.ttfbSamples = intArg(a, next(), 1, 100_000);
        custom = true;
        break;
      case '--pool-size':
        o.poolSize = intArg(a, next(), 1, 10_000);
        custom = true;
        break;
      case '--placement': {
        // a placement is not a mode: a --quick run can be pinned or shared
        const v = next();
        if (v !== 'pinned' && v !== 'shared') throw new UsageError(`--placement needs pinned or shared, got ${JSON.stringify(v ?? '')}`);
        o.placement = v;
        break;
      }
      case '--seed':
        o.seed = intArg(a, next(), 0, 2 ** 31);
        break;
      case '--out':
        o.out = next();
        if (o.out === undefined) throw new UsageError('--out needs a file');
        break;
      case '--docs-dir':
        o.docsDir = next();
        if (o.docsDir === undefined) throw new UsageError('--docs-dir needs a directory');
        break;
      case '--no-docs':
        o.docsDir = undefined;
        break;
      default:
        throw new UsageError(`unknown option ${a}`);
    }
  }
  if (custom) o.mode = 'custom';
  if (!o.contenders.includes('direct')) o.contenders.unshift('direct'); // every ratio needs it
  return o;
}

