#!/usr/bin/env node
// `npm start`: launches the Electron app where the Electron binary is installed; otherwise says so
// in one line and falls back to the headless core (`npm run serve`), which prints the dashboard URL.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

function electronBinary() {
  try {
    const path = require('electron');
    return typeof path === 'string' && existsSync(path) ? path : null;
  } catch {
    return null;
  }
}

const binary = electronBinary();
if (!binary) {
  process.stderr.write('console: the Electron binary is not installed here (node_modules/electron has no dist); starting the headless core instead\n');
  await import(pathToFileURL(join(root, 'scripts/serve.mjs')).href);
} else {
  const { spawnSync } = await import('node:child_process');
  const build = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.node.json'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) process.exit(1);
  const child = spawn(binary, [root, ...process.argv.slice(2)], { cwd: root, stdio: 'inherit' });
  child.on('exit', (code) => process.exit(code ?? 0));
}
