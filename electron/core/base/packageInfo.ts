import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project root (the folder with package.json), found from this file in src/ or dist/ (also inside app.asar). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    // `shared/` in a checkout; only `dist/` inside a packaged app (app.asar).
    if (existsSync(join(dir, 'package.json')) && (existsSync(join(dir, 'shared')) || existsSync(join(dir, 'dist', 'shared')))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('package root not found');
    dir = parent;
  }
}

export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version?: string };
  return pkg.version ?? '0.0.0';
}
