#!/usr/bin/env node
// `npm start`: launches the Electron app where the Electron binary is installed and a display is
// available; otherwise says so in one line and falls back to the headless core (`npm run serve`),
// which prints the dashboard URL. Flags after `--` go to the core.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ensureBuilt, root } from './lib/buildIfStale.mjs';

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
const noDisplay = process.platform === 'linux' && !process.env.DISPLAY && !process.env.WAYLAND_DISPLAY;
if (!binary || noDisplay) {
  const why = !binary ? 'the Electron binary is not installed here (node_modules/electron has no dist)' : 'there is no display (DISPLAY/WAYLAND_DISPLAY unset)';
  process.stderr.write(`console: ${why}; starting the headless core instead\n`);
  await import(pathToFileURL(join(root, 'scripts/serve.mjs')).href);
} else {
  ensureBuilt();
  const child = spawn(binary, [root, '--', ...process.argv.slice(2)], { cwd: root, stdio: 'inherit' });
  const forward = (signal) => child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  child.on('exit', (code) => process.exit(code ?? 0));
}
