// Regenerate docs/benchmarks.md and docs/benchmarks.svg from a results file.
// Usage: npm run report -- [results/FILE.json] [--docs-dir DIR]
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Results } from './defs.js';
import { writeDocs } from './report.js';

const here = dirname(fileURLToPath(import.meta.url));
const benchDir = resolve(here, '../..');
const args = process.argv.slice(2);
let file = join(benchDir, 'results/latest.json');
let docsDir = resolve(benchDir, '../docs');
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (a === '--docs-dir') docsDir = resolve(args[++i] ?? docsDir);
  else file = resolve(a);
}
let results: Results;
try {
  results = JSON.parse(readFileSync(file, 'utf8')) as Results;
  if (results.schema !== 1) throw new Error(`unknown schema ${String(results.schema)}`);
} catch (err) {
  process.stderr.write(`native-bench report: cannot read ${file}: ${(err as Error).message}\n`);
  process.exit(1);
}
for (const p of writeDocs(results, docsDir, file)) process.stdout.write(`${p}\n`);
