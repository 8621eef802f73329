import { readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The trainer build cache shared by test files and runs (`.tmp/trainer` in the repo, git-ignored). */
export const TEST_TRAINER_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '.tmp', 'trainer');

/** Writes a small text dataset ("the cat sat on the mat. " × n) into `<dataDir>/<rel>`. */
export function writeCatDataset(dataDir: string, rel = 'datasets/cat.txt', repeats = 130): string {
  const path = join(dataDir, rel);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, 'the cat sat on the mat. '.repeat(repeats));
  return path;
}

/** Pids of live processes whose command line mentions `needle` (Linux /proc). */
export function processesMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (/\) Z /.test(stat)) continue; // zombie: already exited
      if (cmd.includes(needle)) out.push(Number(entry));
    } catch {
      // the process went away meanwhile
    }
  }
  return out;
}

/** The bounded polling helpers live in wait.ts; re-exported for the files that import them from here. */
export { waitFor, waitUntil } from './wait.js';
