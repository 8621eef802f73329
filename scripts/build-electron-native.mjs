#!/usr/bin/env node
// Builds better-sqlite3 for Electron's ABI into build/electron-native/better-sqlite3 (a COPY of the
// package), so node_modules keeps the Node build that `npm run serve` and the tests use. Electron's
// main process passes the result to createConsole({ sqliteNativeBinding }); electron-builder ships
// it as resources/native/better_sqlite3.node. Needs network (Electron headers or a prebuilt binary).
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const electronVersion = JSON.parse(readFileSync(require.resolve('electron/package.json'), 'utf8')).version;
const src = dirname(require.resolve('better-sqlite3/package.json'));
const out = join(root, 'build/electron-native/better-sqlite3');

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const part of ['package.json', 'binding.gyp', 'lib', 'src', 'deps']) cpSync(join(src, part), join(out, part), { recursive: true });

const bin = (name) => join(root, 'node_modules/.bin', process.platform === 'win32' ? `${name}.cmd` : name);
const run = (cmd, args) => spawnSync(cmd, args, { cwd: out, stdio: 'inherit', shell: process.platform === 'win32' }).status === 0;

process.stderr.write(`building better-sqlite3 for Electron ${electronVersion} in ${out}\n`);
const ok =
  run(bin('prebuild-install'), ['--runtime', 'electron', '--target', electronVersion, '--arch', process.arch]) ||
  run(bin('node-gyp'), ['rebuild', '--release', `--target=${electronVersion}`, `--arch=${process.arch}`, '--dist-url=https://electronjs.org/headers']);
const binary = join(out, 'build/Release/better_sqlite3.node');
if (!ok || !existsSync(binary)) {
  process.stderr.write('failed: no Electron build of better-sqlite3 (see the errors above)\n');
  process.exit(1);
}
process.stderr.write(`ok: ${binary}\n`);
