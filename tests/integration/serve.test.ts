import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { repoRoot, spawnServe } from '../helpers/spawnServe.js';
import { waitUntil } from '../helpers/wait.js';

describe('headless entry (npm run serve)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'console-serve-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('prints one ready line, serves, and exits 0 on SIGTERM', async () => {
    const p = spawnServe(['--port', '0', '--grpc-port', '0'], { CONSOLE_DATA_DIR: dir });
    const { url, grpc } = await p.ready;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(grpc).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(p.stdout().split('\n').filter((l) => l.startsWith('console ready'))).toHaveLength(1);
    expect((await fetch(`${url}/health`)).status).toBe(200);
    // the admin token was generated with mode 0600
    expect(statSync(join(dir, 'admin-token')).mode & 0o777).toBe(0o600);
    p.child.kill('SIGTERM');
    const code = await p.exited;
    expect({ code, stderr: p.stderr().slice(-2000) }).toMatchObject({ code: 0 });
    // Not a terminal: every log line is one JSON object (the ready/dashboard lines are plain text by design).
    const logLines = p.stdout().split('\n').filter((l) => l !== '' && !/^(console ready|dashboard|limiter|metrics) /.test(l));
    expect(logLines.length).toBeGreaterThan(0);
    for (const line of logLines) expect(JSON.parse(line)).toMatchObject({ level: expect.any(Number), msg: expect.any(String) });
    expect(logLines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toContain('shutting down');
  }, 30_000);

  it('prints readable log lines with CONSOLE_LOG_FORMAT=pretty (what a terminal gets by default)', async () => {
    const p = spawnServe(['--port', '0', '--grpc-port', '0'], { CONSOLE_DATA_DIR: dir, CONSOLE_LOG_FORMAT: 'pretty' });
    await p.ready;
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    expect(p.stdout()).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: \[console\] shutting down \{"signal":"SIGTERM"\}$/m);
    expect(p.stdout().split('\n').filter((l) => l.startsWith('{'))).toEqual([]);
  }, 30_000);

  it('SIGHUP re-reads config.json (audited as the signal); a broken file keeps the old config', async () => {
    const p = spawnServe(['--port', '0', '--grpc-port', '0'], { CONSOLE_DATA_DIR: dir });
    const { url } = await p.ready;
    const admin = { authorization: `Bearer ${readFileSync(join(dir, 'admin-token'), 'utf8').trim()}` };
    const configView = async () => ((await (await fetch(`${url}/api/console/config`, { headers: admin })).json()) as { config: { engine: { parallel: number } } }).config;
    const until = (what: string, check: () => Promise<boolean>) => waitUntil(check, 10_000, what, 100);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ engine: { parallel: 3 } }));
    p.child.kill('SIGHUP');
    await until('engine.parallel 3 after SIGHUP', async () => (await configView()).engine.parallel === 3);
    const audit = (await (await fetch(`${url}/api/console/audit`, { headers: admin })).json()) as { entries: Array<{ action: string; actor: string }> };
    expect(audit.entries).toContainEqual(expect.objectContaining({ action: 'config.reload', actor: 'signal:SIGHUP' }));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ engine: { parallel: 'many' } }));
    p.child.kill('SIGHUP');
    await until('the reload failure is logged', async () => p.stdout().includes('config reload failed'));
    expect((await configView()).engine.parallel).toBe(3);
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  }, 30_000);

  it('exits 0 on SIGINT too', async () => {
    const p = spawnServe(['--port', '0', '--grpc-port', '0', '--data-dir', dir]);
    await p.ready;
    p.child.kill('SIGINT');
    const code = await p.exited;
    expect({ code, stderr: p.stderr().slice(-2000) }).toMatchObject({ code: 0 });
  }, 30_000);

  it('exits 2 listing every bad field of an invalid config.json, without touching the data dir', async () => {
    const cfg = join(dir, 'config.json');
    const text = JSON.stringify({ server: { httpPort: 'x', grpcPort: -5 }, engin: {} });
    writeFileSync(cfg, text);
    const p = spawnServe([], { CONSOLE_DATA_DIR: dir });
    expect(await p.exited).toBe(2);
    expect(p.stderr()).toMatch(/server\.httpPort/);
    expect(p.stderr()).toMatch(/server\.grpcPort/);
    expect(p.stderr()).toMatch(/engin/);
    expect(readFileSync(cfg, 'utf8')).toBe(text);
    expect(() => statSync(join(dir, 'console.db'))).toThrow();
    expect(() => statSync(join(dir, 'admin-token'))).toThrow();
  }, 30_000);

  it('exits 2 on an invalid flag', async () => {
    const p = spawnServe(['--port', 'abc'], { CONSOLE_DATA_DIR: dir });
    expect(await p.exited).toBe(2);
    expect(p.stderr()).toMatch(/server\.httpPort.*flag --port/);
  }, 30_000);

  it('stop() leaves no handle open: the process exits by itself', async () => {
    const script = `
      import { createConsole } from './electron/core/console.ts';
      import { Writable } from 'node:stream';
      const c = createConsole({ env: {}, dataDir: ${JSON.stringify(dir)}, overrides: { server: { httpPort: 0, grpcPort: 0 } }, logDestination: new Writable({ write(_c, _e, cb) { cb(); } }) });
      const a = await c.start();
      await fetch(a.httpUrl + '/health');
      await c.stop();
      console.log('stopped');
      const timer = setTimeout(() => { console.log('HANDLES', process.getActiveResourcesInfo().join(',')); process.exit(3); }, 5000);
      timer.unref();
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(out).toContain('stopped');
    expect(out).not.toContain('HANDLES');
    expect(code).toBe(0);
  }, 30_000);
});
