import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isProcessAlive } from '../../electron/core/base/processUtil.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { waitUntil } from '../helpers/wait.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '../fixtures/runtime');
const node = process.execPath;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

const gatewayEnv = { MODEL_NAME: 'tiny', OPENAI_API_KEY: 'sk-test-123456', FINNHUB_API_KEY: 'fh-test-123456' };
const json = { 'content-type': 'application/json' };

describe('runtime supervisor over HTTP (§8)', () => {
  let c: TestConsole;
  let port: number;
  const post = (path: string, body?: unknown, headers: Record<string, string> = {}) =>
    fetch(`${c.url}${path}`, { method: 'POST', headers: { ...(body === undefined ? {} : json), ...headers }, body: body === undefined ? undefined : JSON.stringify(body) });
  const get = async <T = Record<string, unknown>>(path: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${c.url}${path}`, { headers });
    return { status: res.status, body: (await res.json()) as T };
  };

  beforeAll(async () => {
    port = await freePort();
    c = await startConsole({
      config: {
        runtime: {
          logMaxBytes: 4096,
          logMaxFiles: 2,
          processes: [
            {
              name: 'gateway',
              command: node,
              args: [join(fixtures, 'healthy.mjs')],
              env: { ...gatewayEnv, PORT: String(port), SPAWN_GRANDCHILD: '1' },
              port,
              healthUrl: `http://127.0.0.1:${port}/health`,
              stopGraceSeconds: 2,
            },
            { name: 'crashgw', command: node, args: [join(fixtures, 'crash.mjs')], env: gatewayEnv, startupWatchSeconds: 30 },
            { name: 'stubborn', command: node, args: [join(fixtures, 'stubborn.mjs')], startupWatchSeconds: 0.3, stopGraceSeconds: 0.5 },
            { name: 'broken', command: 'no-such-program-xyz', cwd: 'missing-dir', healthUrl: 'http://[::1', requiredEnv: ['BROKEN_TOKEN'] },
          ],
        },
      },
    });
  });
  afterAll(async () => {
    await c?.close();
  });

  it('start/stop/kill/logs need the admin token: 401 without, 403 with a wrong one, {"detail"} envelope', async () => {
    for (const path of ['/api/runtime/start', '/api/runtime/stop', '/api/runtime/processes/stubborn/start', '/api/runtime/processes/gateway/orphan/kill']) {
      const res = await post(path, { mode: 'live', tickers: ['AAPL'] });
      expect(res.status).toBe(401);
      const body = (await res.json()) as { detail: string };
      expect(body.detail).toMatch(/Admin token required/);
    }
    const wrong = await post('/api/runtime/start', { mode: 'live', tickers: ['AAPL'] }, { authorization: 'Bearer nope' });
    expect(wrong.status).toBe(403);
    expect(await wrong.json()).toEqual({ detail: 'Invalid admin token' });
    expect((await get('/api/runtime/processes/gateway/logs')).status).toBe(401);
    expect((await get('/api/runtime/gateway/status')).body.is_running).toBe(false);
  });

  it('bad input gets a 400 listing every problem; unknown names 404; nothing is started', async () => {
    const res = await post('/api/runtime/start', { mode: 'weekly', tickers: 'AAPL', initial_cash: -1, margin_requirement: 3, start_date: 'yesterday' }, c.admin);
    expect(res.status).toBe(400);
    const { detail } = (await res.json()) as { detail: string };
    expect(detail).toBe(
      "Gateway configuration validation failed: mode must be 'live' or 'backtest'; tickers must be a non-empty list of ticker symbols; initial_cash must be greater than 0; margin_requirement must be between 0 and 1; start_date must be in YYYY-MM-DD format",
    );
    const empty = await post('/api/runtime/start', undefined, c.admin);
    expect(empty.status).toBe(400);
    expect(((await empty.json()) as { detail: string }).detail).toMatch(/mode must be .*; tickers must be/);
    const malformed = await fetch(`${c.url}/api/runtime/start`, { method: 'POST', headers: { ...json, ...c.admin }, body: '{"mode":' });
    expect(malformed.status).toBe(400);
    expect(Object.keys((await malformed.json()) as object)).toContain('detail');
    const form = await fetch(`${c.url}/api/runtime/start`, { method: 'POST', headers: { 'content-type': 'text/plain', ...c.admin }, body: 'mode=live' });
    expect(form.status).toBe(415);
    const unknown = await get('/api/runtime/processes/nope');
    expect(unknown.status).toBe(404);
    expect(unknown.body.detail).toMatch(/No process named 'nope'/);
    expect((await post('/api/runtime/processes/nope/start', undefined, c.admin)).status).toBe(404);
    const badName = await get('/api/runtime/processes/bad..name');
    expect(badName.status).toBe(400);
    expect((await post('/api/runtime/processes/gateway/orphan/kill', undefined, c.admin)).status).toBe(404);
    expect((await get('/api/runtime/processes/gateway/logs?lines=0', c.admin)).status).toBe(400);
    expect((await get('/api/runtime/gateway/status')).body.process_status).toBe('not_running');
  });

  it('a broken process config: start lists every problem of body, config and environment in one 400', async () => {
    const own = await post('/api/runtime/processes/broken/start', undefined, c.admin);
    expect(own.status).toBe(400);
    const dataDir = c.dataDir;
    expect(await own.json()).toEqual({
      detail: `Process 'broken' configuration validation failed: working directory does not exist: ${join(dataDir, 'missing-dir')}; command not found or not executable: no-such-program-xyz; healthUrl is not a valid URL: http://[::1; BROKEN_TOKEN environment variable is required`,
    });
    const patch = (body: unknown) => fetch(`${c.url}/api/console/config`, { method: 'PATCH', headers: { ...json, ...c.admin }, body: JSON.stringify(body) });
    expect((await patch({ runtime: { gateway: 'broken' } })).status).toBe(200);
    try {
      const res = await post('/api/runtime/start', { mode: 'live', tickers: [] }, c.admin);
      expect(res.status).toBe(400);
      const { detail } = (await res.json()) as { detail: string };
      expect(detail.split(': ')[0]).toBe('Gateway configuration validation failed');
      expect(detail.slice(detail.indexOf(': ') + 2).split('; ')).toEqual([
        'tickers must be a non-empty list of ticker symbols',
        `working directory does not exist: ${join(dataDir, 'missing-dir')}`,
        'command not found or not executable: no-such-program-xyz',
        'healthUrl is not a valid URL: http://[::1',
        'BROKEN_TOKEN environment variable is required',
        'FINNHUB_API_KEY environment variable is required for live mode',
        'MODEL_NAME environment variable is required for live mode',
        'OPENAI_API_KEY environment variable is required for live mode',
      ]);
      const health = (await get<{ status: string; checks: { configuration: { status: string; details: { issues: string[] } } } }>('/health/gateway')).body;
      expect(health.checks.configuration.status).toBe('unhealthy');
      expect(health.checks.configuration.details.issues).toHaveLength(4);
    } finally {
      expect((await patch({ runtime: { gateway: 'gateway' } })).status).toBe(200);
    }
    // an invalid runtime config is refused as a whole, listing every bad field, and changes nothing
    const bad = await patch({ runtime: { orphanPolicy: 'ignore', gatewayPort: 0, modeEnv: { live: 'X' } } });
    expect(bad.status).toBe(400);
    const fields = ((await bad.json()) as { error: { details: Array<{ field: string }> } }).error.details.map((e) => e.field);
    expect(fields.sort()).toEqual(['runtime.gatewayPort', 'runtime.modeEnv.live', 'runtime.orphanPolicy']);
    expect((await get<{ processes: unknown[] }>('/api/runtime/processes')).body.processes).toHaveLength(4);
  });

  it('starts the gateway, reports it everywhere, streams and rotates its log, stops the whole group', async () => {
    const res = await post('/api/runtime/start', { mode: 'backtest', tickers: ['AAPL', 'MSFT'], start_date: '2025-01-01', end_date: '2025-03-01', schedule_mode: 'intraday' }, c.admin);
    const started = (await res.json()) as { status: string; run_id: string; pid: number; port: number };
    expect(res.status).toBe(200);
    expect(started).toMatchObject({ status: 'started', port });
    expect(isProcessAlive(started.pid)).toBe(true);
    expect((await post('/api/runtime/start', { mode: 'live', tickers: ['A'] }, c.admin)).status).toBe(409);

    expect((await get('/api/runtime/mode')).body).toEqual({ mode: 'backtest', is_backtest: true, run_id: started.run_id, schedule_mode: 'interval', is_running: true });
    expect((await get('/api/runtime/gateway/status')).body).toEqual({ is_running: true, port, run_id: started.run_id, process_status: 'running', pid: started.pid });
    const health = (await get<{ status: string; checks: Record<string, { status: string; details: Record<string, unknown> }>; timestamp: string }>('/health/gateway')).body;
    expect(health.status).toBe('healthy');
    expect(health.checks.process).toEqual({ status: 'healthy', details: { pid: started.pid, status: 'running', returncode: null } });
    expect(health.checks.port?.details).toMatchObject({ port, accessible: true, status_code: 200 });
    expect(health.checks.configuration).toEqual({ status: 'healthy', details: { has_runtime_manager: true } });
    expect(health.timestamp).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$/);
    expect((await get('/api/runtime/gateway/health')).body.status).toBe('healthy');
    expect((await get('/api/status')).body).toEqual({
      status: 'operational',
      service: 'runtime-service',
      runtime: { gateway_running: true, gateway_port: port, gateway_pid: started.pid, gateway_process_status: 'running', has_runtime_manager: true },
    });
    expect((await get('/health')).body.gateway).toEqual({ running: true, port, pid: started.pid, process_status: 'running', returncode: null });
    // /threads lists the supervised child by its pid
    const threads = await (await fetch(`${c.url}/threads?thread_id=${started.pid}`, { headers: c.admin })).text();
    expect(threads).toContain(`Process ${started.pid}: runtime gateway [child-process]`);
    expect(threads).toContain('state: running');
    const details = (await get<{ components: Record<string, unknown> }>('/api/v1/health/details')).body;
    expect(details.components.runtime).toEqual({ status: 'UP', details: { gateway_running: true, gateway_pid: started.pid } });
    expect((await get('/api/runtime/snapshot')).status).toBe(401);
    const snapshot = (await get<{ processes: Array<{ name: string; state: string }> }>('/api/runtime/snapshot', c.admin)).body;
    expect(snapshot.processes.map((p) => [p.name, p.state])).toEqual([['broken', 'not_running'], ['crashgw', 'not_running'], ['gateway', 'running'], ['stubborn', 'not_running']]);

    // the grandchild it spawned lives in the same process group
    await waitUntil(async () => ((await get<{ lines: string[] }>('/api/runtime/processes/gateway/logs', c.admin)).body.lines ?? []).some((l) => l.startsWith('grandchild ')), 20_000, 'the gateway to log its grandchild', 50);
    const tail = (await get<{ lines: string[]; file: string }>('/api/runtime/processes/gateway/logs?lines=500', c.admin)).body;
    const grandchild = Number(tail.lines.find((l) => l.startsWith('grandchild '))!.split(' ')[1]);
    expect(isProcessAlive(grandchild)).toBe(true);
    expect(tail.file).toBe(join(c.dataDir, 'logs', 'runtime', 'gateway.log'));
    expect(tail.lines.some((l) => l.includes(`mode=backtest run=${started.run_id}`))).toBe(true);

    // live stream (SSE): history first, then each new line
    const abort = new AbortController();
    const stream = await fetch(`${c.url}/api/runtime/processes/gateway/logs/stream?tail=5`, { headers: c.admin, signal: abort.signal });
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = stream.body!.getReader();
    const decoder = new TextDecoder();
    let received = '';
    const readUntil = async (needle: string) => {
      while (!received.includes(needle)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before ${needle}`);
        received += decoder.decode(value, { stream: true });
      }
    };
    await readUntil('event: history');
    expect((await fetch(`http://127.0.0.1:${port}/emit?n=1&size=40`)).status).toBe(200);
    await readUntil('line 000000');
    const event = received.split('\n\n').find((e) => e.includes('line 000000'))!;
    expect(event.startsWith('event: log\ndata: ')).toBe(true);
    expect(JSON.parse(event.slice('event: log\ndata: '.length))).toMatchObject({ name: 'gateway', stream: 'stdout', line: expect.stringMatching(/^line 000000 x+$/) });
    abort.abort();

    // rotation: ~12 KB of output with logMaxBytes 4096 and 2 rotated files kept
    expect((await fetch(`http://127.0.0.1:${port}/emit?n=120&size=100`)).status).toBe(200);
    const logPath = join(c.dataDir, 'logs', 'runtime', 'gateway.log');
    await waitUntil(async () => ((await get<{ lines: string[] }>('/api/runtime/processes/gateway/logs?lines=1', c.admin)).body.lines[0] ?? '').startsWith('line 000119'), 20_000, 'the last of 120 log lines', 50);
    expect(existsSync(`${logPath}.1`)).toBe(true);
    expect(existsSync(`${logPath}.2`)).toBe(true);
    expect(existsSync(`${logPath}.3`)).toBe(false);
    expect(readFileSync(logPath).length).toBeLessThanOrEqual(4096);
    const across = (await get<{ lines: string[] }>('/api/runtime/processes/gateway/logs?lines=80', c.admin)).body.lines;
    expect(across).toHaveLength(80);
    expect(across.at(-1)).toMatch(/^line 000119/);
    expect(across[0]).toMatch(/^line 000040/);

    const stop = await post('/api/runtime/stop', undefined, c.admin);
    expect(stop.status).toBe(200);
    expect(await stop.json()).toEqual({ status: 'stopped', message: `Runtime stopped successfully (PID: ${started.pid})` });
    expect(isProcessAlive(started.pid)).toBe(false);
    await waitUntil(() => !isProcessAlive(grandchild), 5000, `the grandchild ${grandchild} to exit`);
    const again = await post('/api/runtime/stop', undefined, c.admin);
    expect(again.status).toBe(400);
    expect(await again.json()).toEqual({ detail: 'No runtime is currently running.' });
    expect((await get('/api/runtime/mode')).body).toEqual({ mode: 'stopped', is_backtest: false, run_id: null, schedule_mode: null, is_running: false });
    const audit = (await get<{ entries: Array<{ action: string }> }>('/api/console/audit', c.admin)).body.entries.map((e) => e.action);
    expect(audit).toEqual(expect.arrayContaining(['runtime.start', 'runtime.stop']));
  });

  it('a gateway that crashes at start-up: 500 with exit code and log tail, then reported as exited', async () => {
    const patch = await fetch(`${c.url}/api/console/config`, { method: 'PATCH', headers: { ...json, ...c.admin }, body: JSON.stringify({ runtime: { gateway: 'crashgw' } }) });
    expect(patch.status).toBe(200);
    try {
      const res = await post('/api/runtime/start', { mode: 'live', tickers: ['AAPL'] }, c.admin);
      expect(res.status).toBe(500);
      const { detail } = (await res.json()) as { detail: string };
      expect(detail.startsWith('Gateway process exited unexpectedly\nExit code: 1\nRecent log output:\n')).toBe(true);
      const tail = detail.slice('Gateway process exited unexpectedly\nExit code: 1\nRecent log output:\n'.length);
      expect(tail.length).toBeLessThanOrEqual(4000);
      expect(tail.endsWith('[ERROR] FINNHUB_API_KEY not set (secret OPENAI_API_KEY=sk-a****)')).toBe(true);
      const stop = await post('/api/runtime/stop', undefined, c.admin);
      expect(stop.status).toBe(400);
      expect(((await stop.json()) as { detail: string }).detail).toMatch(/^No runtime is currently running\. Previous Gateway process exited with code 1\. PID: \d+$/);
      expect((await get('/api/status')).body.status).toBe('degraded');
      const health = (await get<{ status: string; checks: { process: { details: Record<string, unknown> } } }>('/health/gateway')).body;
      expect(health.status).toBe('unhealthy');
      expect(health.checks.process.details).toEqual({ pid: null, status: 'exited', returncode: 1 });
      expect((await get<{ components: Record<string, { status: string }> }>('/api/v1/health/details')).body.components.runtime?.status).toBe('DOWN');
    } finally {
      await fetch(`${c.url}/api/console/config`, { method: 'PATCH', headers: { ...json, ...c.admin }, body: JSON.stringify({ runtime: { gateway: 'gateway' } }) });
    }
  });

  it('stopping the console leaves no process behind (SIGTERM-ignoring ones are SIGKILLed after the grace period)', async () => {
    const res = await post('/api/runtime/start', { mode: 'live', tickers: ['AAPL'] }, c.admin);
    const started = (await res.json()) as { pid: number };
    expect(res.status, JSON.stringify(started)).toBe(200);
    expect(isProcessAlive(started.pid)).toBe(true);
    const stubborn = (await (await post('/api/runtime/processes/stubborn/start', undefined, c.admin)).json()) as { pid: number; state: string };
    expect(stubborn.state).toBe('running');
    let grandchild = 0;
    await waitUntil(
      async () => {
        const lines = (await get<{ lines: string[] }>('/api/runtime/processes/gateway/logs?lines=50', c.admin)).body.lines;
        const found = lines.filter((l) => l.startsWith('grandchild ')).at(-1);
        grandchild = found ? Number(found.split(' ')[1]) : 0;
        return grandchild > 0 && isProcessAlive(grandchild);
      },
      20_000,
      'the gateway to log a live grandchild',
      50,
    );
    await c.close();
    expect(isProcessAlive(started.pid)).toBe(false);
    expect(isProcessAlive(stubborn.pid)).toBe(false);
    expect(isProcessAlive(grandchild)).toBe(false);
  });
});
