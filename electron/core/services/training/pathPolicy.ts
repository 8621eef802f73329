import { realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, relative, resolve, sep } from 'node:path';

/**
 * Which paths a training request may name (they are untrusted input). Every path must resolve,
 * symlinks followed, to a place inside one of the allowed roots: the data dir and
 * `training.allowedRoots`. Relative paths are taken relative to a fixed base, never to the
 * process's working directory.
 */

export type PathCheck = { ok: true; path: string } | { ok: false; description: string };

/** True when `child` is `dir` itself or below it (both resolved). */
export function isInside(dir: string, child: string): boolean {
  const rel = relative(dir, child);
  return rel === '' || (!isAbsolute(rel) && rel.split(sep)[0] !== '..');
}

/** The allowed roots with symlinks resolved (roots that do not exist are skipped). */
export async function resolveRoots(roots: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const root of roots) {
    if (!isAbsolute(root)) continue;
    try {
      out.push(await realpath(root));
    } catch {
      // a configured root that does not exist allows nothing
    }
  }
  return out;
}

function describeRoots(roots: readonly string[]): string {
  return roots.length === 1 ? `the data dir (${roots[0]})` : `the data dir or training.allowedRoots (${roots.join(', ')})`;
}

function badInput(input: string): string | undefined {
  if (input.includes('\u0000')) return 'must not contain NUL';
  return undefined;
}

/** An existing regular file (dataset, base model) inside the roots; relative to `base`. */
export async function checkExistingFile(input: string, base: string, roots: readonly string[]): Promise<PathCheck> {
  const problem = badInput(input);
  if (problem) return { ok: false, description: problem };
  const candidate = resolve(base, input);
  let real: string;
  try {
    real = await realpath(candidate);
  } catch {
    return { ok: false, description: `file not found: ${candidate}` };
  }
  if (!roots.some((r) => isInside(r, real))) return { ok: false, description: `must be inside ${describeRoots(roots)}` };
  const info = await stat(real);
  if (!info.isFile()) return { ok: false, description: 'must be a regular file' };
  return { ok: true, path: real };
}

/**
 * A directory to write into (created later when missing): relative = under `base`, absolute =
 * anywhere inside the roots. Its nearest existing ancestor is resolved through symlinks, so a
 * link cannot lead the output out of the roots.
 */
export async function checkOutputDir(input: string, base: string, roots: readonly string[]): Promise<PathCheck> {
  const problem = badInput(input);
  if (problem) return { ok: false, description: problem };
  const candidate = resolve(base, input);
  if (!isAbsolute(input) && !isInside(base, candidate)) return { ok: false, description: `a relative outputDir must stay under ${base} (no "..")` };
  const rest: string[] = [];
  let existing = candidate;
  let real: string | undefined;
  for (;;) {
    try {
      real = await realpath(existing);
      break;
    } catch {
      const parent = dirname(existing);
      if (parent === existing) break;
      rest.unshift(basename(existing));
      existing = parent;
    }
  }
  if (!real) return { ok: false, description: 'cannot resolve the path' };
  const full = resolve(real, ...rest);
  if (!roots.some((r) => isInside(r, full))) return { ok: false, description: `must be inside ${describeRoots(roots)}` };
  if (rest.length === 0 && !(await stat(full)).isDirectory()) return { ok: false, description: 'exists and is not a directory' };
  return { ok: true, path: full };
}

/** A model id made from a directory name: safe file-name characters only. */
export function modelIdFrom(name: string, fallback: string): string {
  const cleaned = name
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/^[.\-_ ]+|[.\-_ ]+$/g, '')
    .replace(/\.{2,}/g, '.')
    .slice(0, 100);
  return cleaned === '' ? fallback : cleaned;
}
