// `npm run bench -- <name...>` runs scripts/bench/<name>.bench.ts (all of them when no name is
// given), each in its own process so one benchmark's memory and threads never skew another.
// Every benchmark prints exactly one JSON line on stdout; this runner passes them through.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = dirname(fileURLToPath(import.meta.url));
const available = readdirSync(dir)
  .filter((f) => f.endsWith('.bench.ts'))
  .map((f) => f.slice(0, -'.bench.ts'.length))
  .sort();
const args = process.argv.slice(2);
// `npm run bench -- [names...] [--option value ...]`: names first, everything from the first option on goes to each bench.
const firstOption = args.findIndex((a) => a.startsWith('-'));
const names = firstOption < 0 ? args : args.slice(0, firstOption);
const passThrough = firstOption < 0 ? [] : args.slice(firstOption);
const unknown = names.filter((n) => !available.includes(n));
if (unknown.length > 0) {
  process.stderr.write(`unknown benchmark(s): ${unknown.join(', ')}; available: ${available.join(', ')}\n`);
  process.exit(2);
}
let failed = false;
for (const name of names.length > 0 ? names : available) {
  process.stderr.write(`bench: ${name}...\n`);
  const tsx = join(dir, '../../node_modules/tsx/dist/cli.mjs');
  const r = spawnSync(process.execPath, [tsx, join(dir, `${name}.bench.ts`), ...passThrough], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0) {
    process.stderr.write(`bench: ${name} failed (exit ${r.status ?? r.signal})\n`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
