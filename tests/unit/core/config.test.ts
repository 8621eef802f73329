import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, ConfigStore, loadSettings } from '../../../electron/core/base/config.js';
import { createConsole } from '../../../electron/core/console.js';

describe('settings: flags > env > config.json > defaults', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'console-config-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('uses the defaults with no file, env or flags', () => {
    const s = loadSettings({ env: {}, dataDir: dir });
    expect(s.config.server).toMatchObject({ host: '127.0.0.1', httpPort: 8080, grpcPort: 50051, allowedHosts: [], allowedOrigins: [] });
    expect(s.config.ops.runScript.enabled).toBe(false);
  });

  it('layers file < env < flags', () => {
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ server: { httpPort: 9001, grpcPort: 9002 }, ops: { logLevel: 'warn' } }));
    const s = loadSettings({ env: { CONSOLE_HTTP_PORT: '9101', CONSOLE_LOG_LEVEL: 'debug' }, argv: ['--port', '9201'], dataDir: dir });
    expect(s.config.server.httpPort).toBe(9201);
    expect(s.config.server.grpcPort).toBe(9002);
    expect(s.config.ops.logLevel).toBe('debug');
  });

  it('takes the data dir from --data-dir, then CONSOLE_DATA_DIR', () => {
    expect(loadSettings({ env: { CONSOLE_DATA_DIR: dir }, argv: [] }).dataDir).toBe(dir);
    const other = join(dir, 'sub');
    expect(loadSettings({ env: { CONSOLE_DATA_DIR: dir }, argv: ['--data-dir', other] }).dataDir).toBe(other);
  });

  it('lists every bad field of config.json with path, expected and got', () => {
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({ server: { httpPort: 'eighty', grpcPort: 70000, hots: [] }, limter: {}, ops: { runScript: { timeoutSeconds: -1 } } }),
    );
    let error: ConfigError | undefined;
    try {
      loadSettings({ env: {}, dataDir: dir });
    } catch (err) {
      error = err as ConfigError;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(error?.exitCode).toBe(2);
    const paths = error?.issues.map((i) => i.path) ?? [];
    expect(paths).toEqual(expect.arrayContaining(['server.httpPort', 'server.grpcPort', 'server.hots', 'limter', 'ops.runScript.timeoutSeconds']));
    const port = error?.issues.find((i) => i.path === 'server.httpPort');
    expect(port?.expected).toMatch(/integer/);
    expect(port?.got).toContain('eighty');
  });

  it('rejects bad env values and unknown flags, naming the source', () => {
    expect(() => loadSettings({ env: { CONSOLE_HTTP_PORT: 'abc' }, dataDir: dir })).toThrow(/CONSOLE_HTTP_PORT/);
    expect(() => loadSettings({ env: {}, argv: ['--prot', '1'], dataDir: dir })).toThrow(ConfigError);
  });

  it('a corrupt config.json is a clear error and the file is left untouched', () => {
    const path = join(dir, 'config.json');
    writeFileSync(path, '{ "server": { "httpPort": 80, ');
    const before = statSync(path).mtimeMs;
    expect(() => createConsole({ env: {}, dataDir: dir })).toThrow(/config\.json.*(JSON|parse)/is);
    expect(readFileSync(path, 'utf8')).toBe('{ "server": { "httpPort": 80, ');
    expect(statSync(path).mtimeMs).toBe(before);
  });

  it('refuses a non-loopback host without API keys', () => {
    expect(() => createConsole({ env: {}, dataDir: dir, argv: ['--host', '0.0.0.0'] })).toThrow(/non-loopback.*API keys/);
  });

  it('a hot update is validated first: a bad patch changes nothing, a good one is written atomically', () => {
    const settings = loadSettings({ env: {}, dataDir: dir });
    const store = new ConfigStore(settings);
    const seen: number[] = [];
    store.onChange((next) => seen.push(next.server.httpPort));
    const bad = store.update({ server: { httpPort: -1, nope: true } });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.issues.map((i) => i.path).sort()).toEqual(['server.httpPort', 'server.nope']);
    expect(store.get().server.httpPort).toBe(8080);
    expect(seen).toEqual([]);
    const good = store.update({ server: { httpPort: 8181 } });
    expect(good.ok).toBe(true);
    expect(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'))).toEqual({ server: { httpPort: 8181 } });
    expect(seen).toEqual([8181]);
  });
});
