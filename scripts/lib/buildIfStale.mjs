// Builds what is missing or stale before `npm run serve` / `npm start`: the TypeScript core
// (tsc → dist/electron) and the dashboard (vite → dist/renderer). A fresh clone needs no other step.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function newest(dir) {
  let latest = 0;
  if (!existsSync(dir)) return latest;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
    const p = join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return latest;
}

function stamp(file) {
  return existsSync(file) ? statSync(file).mtimeMs : 0;
}

function run(cmd, args, what) {
  process.stderr.write(`console: building ${what}...\n`);
  // Always a production build (a NODE_ENV=test/development from the caller would bundle React's dev build).
  const env = { ...process.env, NODE_ENV: 'production' };
  const r = spawnSync(cmd, args, { cwd: root, env, stdio: ['ignore', 'inherit', 'inherit'], shell: process.platform === 'win32' });
  if (r.status !== 0) {
    process.stderr.write(`console: build of ${what} failed (exit ${r.status}); see the errors above\n`);
    process.exit(1);
  }
}

/** True when the dashboard sources are newer than dist/renderer (or it was never built). */
export function dashboardStale() {
  if (!existsSync(join(root, 'renderer/index.html'))) return false;
  const sources = Math.max(newest(join(root, 'renderer')), newest(join(root, 'shared')), stamp(join(root, 'vite.config.ts')));
  return stamp(join(root, 'dist/renderer/index.html')) < sources;
}

export function ensureBuilt() {
  const entry = join(root, 'dist/electron/core/serve.js');
  const coreSources = Math.max(newest(join(root, 'electron')), newest(join(root, 'shared')), stamp(join(root, 'tsconfig.node.json')));
  if (!existsSync(entry) || stamp(join(root, 'dist/.tsbuildinfo.node')) < coreSources) {
    run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.node.json'], 'the core');
  }
  if (dashboardStale()) run(process.execPath, [join(root, 'node_modules/vite/bin/vite.js'), 'build', '--logLevel', 'warn'], 'the dashboard');
  return entry;
}
