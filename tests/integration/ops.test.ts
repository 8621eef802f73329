import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libuvPoolSize } from '../../electron/core/services/ops/opsService.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';

describe('ops common API (contract §2)', () => {
  let c: TestConsole;
  beforeAll(async () => {
    c = await startConsole({
      env: { MY_API_KEY: 'sk-verysecretvalue', DB_PASSWORD: 'hunter2hunter2', SESSION_COOKIE: 'abcdefgh', PLAIN_VALUE: 'visible', SHORT_TOKEN: 'abc', EMPTY_SECRET: '' },
    });
  });
  afterAll(async () => {
    await c.close();
  });

  describe('GET /env', () => {
    it('requires the admin token: 401 without, 403 with a wrong one', async () => {
      expect((await fetch(`${c.url}/env`)).status).toBe(401);
      expect((await fetch(`${c.url}/env`, { headers: { authorization: 'Bearer wrong-token' } })).status).toBe(403);
    });

    it('returns sorted variables with every secret masked', async () => {
      const res = await fetch(`${c.url}/env`, { headers: c.admin });
      expect(res.status).toBe(200);
      const text = await res.text();
      const env = JSON.parse(text) as Record<string, string>;
      expect(Object.keys(env)).toEqual([...Object.keys(env)].sort());
      expect(env.PLAIN_VALUE).toBe('visible');
      expect(env.MY_API_KEY).toBe('sk-v****');
      expect(env.DB_PASSWORD).toBe('hunt****');
      expect(env.SESSION_COOKIE).toBe('abcd****');
      expect(env.SHORT_TOKEN).toBe('ab****');
      expect(env.EMPTY_SECRET).toBe('');
      for (const secret of ['sk-verysecretvalue', 'hunter2hunter2', 'abcdefgh']) expect(text).not.toContain(secret);
    });
  });

  describe('GET /loglevel', () => {
    it('lists loggers and levels as text', async () => {
      const res = await fetch(`${c.url}/loglevel`);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      const body = await res.text();
      expect(body.split('\n')[0]).toBe('=== Loggers and Levels ===');
      expect(body).toMatch(/^http: (DEBUG|INFO|WARNING|ERROR|CRITICAL)$/m);
    });

    it('gets one logger, and 404s an unknown one', async () => {
      expect(await (await fetch(`${c.url}/loglevel?logger_name=http`)).text()).toMatch(/^http: [A-Z]+$/);
      expect((await fetch(`${c.url}/loglevel?logger_name=nope`)).status).toBe(404);
    });

    it('sets a level at run time with the admin token only', async () => {
      expect((await fetch(`${c.url}/loglevel?logger_name=http&level=DEBUG`)).status).toBe(401);
      const res = await fetch(`${c.url}/loglevel?logger_name=http&level=DEBUG`, { headers: c.admin });
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('Set http level to DEBUG (including all handlers)');
      expect(await (await fetch(`${c.url}/loglevel?logger_name=http`)).text()).toBe('http: DEBUG');
      await fetch(`${c.url}/loglevel?logger_name=http&level=INFO`, { headers: c.admin });
    });

    it('rejects an invalid level and a level without logger_name', async () => {
      const bad = await fetch(`${c.url}/loglevel?logger_name=http&level=LOUD`, { headers: c.admin });
      expect(bad.status).toBe(400);
      expect(await bad.text()).toContain('Invalid log level: LOUD');
      const noName = await fetch(`${c.url}/loglevel?level=DEBUG`, { headers: c.admin });
      expect(noName.status).toBe(400);
      expect(await noName.text()).toBe('logger_name is required when level is given');
    });
  });

  describe('metrics', () => {
    it('GET /metrics exposes process and HTTP metrics in Prometheus text', async () => {
      await fetch(`${c.url}/health`);
      const res = await fetch(`${c.url}/metrics`);
      expect(res.headers.get('content-type')).toMatch(/text\/plain/);
      const text = await res.text();
      // Default metrics under their conventional names (stock dashboards and rules use them).
      expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
      expect(text).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
      expect(text).not.toContain('console_process_');
      expect(text).toMatch(/http_requests_total\{[^}]*route="\/health"[^}]*\} \d+/);
    });

    it('POST /metrics/reset needs the admin token and resets counters', async () => {
      expect((await fetch(`${c.url}/metrics/reset`, { method: 'POST' })).status).toBe(401);
      const res = await fetch(`${c.url}/metrics/reset`, { method: 'POST', headers: c.admin });
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('ok');
      const text = await (await fetch(`${c.url}/metrics`)).text();
      expect(text).not.toMatch(/http_requests_total\{[^}]*route="\/health"[^}]*\} [1-9]/);
    });
  });

  describe('GET /threads', () => {
    it('needs the admin token', async () => {
      expect((await fetch(`${c.url}/threads`)).status).toBe(401);
    });

    it("reports Node's equivalents of threads: event loop, handles, libuv pool", async () => {
      const res = await fetch(`${c.url}/threads`, { headers: c.admin });
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(text).toMatch(/main/i);
      expect(text).toMatch(/event.loop/i);
      expect(text).toMatch(/libuv/i);
      expect(text).toMatch(/summary/i);
    });

    it('reports only what exists: the main thread (id 0) and the libuv pool with its real size, no made-up ids', async () => {
      const text = await (await fetch(`${c.url}/threads`, { headers: c.admin })).text();
      expect(text).toContain('Thread 0: main [main]');
      expect(text).toContain(`Thread -: libuv-threadpool [libuv-pool]`);
      expect(text).toContain(`size: ${libuvPoolSize(process.env.UV_THREADPOOL_SIZE)} (`);
      expect(text).toMatch(/matching: 2 of 2/); // no child processes in this console
      const one = await (await fetch(`${c.url}/threads?thread_id=1`, { headers: c.admin })).text();
      expect(one).toMatch(/matching: 0 of 2/);
    });

    it('libuv pool size follows UV_THREADPOOL_SIZE as libuv reads it (default 4, at most 1024)', () => {
      expect(libuvPoolSize(undefined)).toBe(4);
      expect(libuvPoolSize('8')).toBe(8);
      expect(libuvPoolSize('0')).toBe(4);
      expect(libuvPoolSize('lots')).toBe(4);
      expect(libuvPoolSize('5000')).toBe(1024);
    });

    it('filters by name and validates thread_id', async () => {
      const res = await fetch(`${c.url}/threads?name=MAIN`, { headers: c.admin });
      expect(res.status).toBe(200);
      expect((await fetch(`${c.url}/threads?thread_id=abc`, { headers: c.admin })).status).toBe(400);
    });
  });

  describe('read-only ops follow the X-API-Key rule once API keys are configured (§1.2)', () => {
    it('GET /loglevel, /metrics, /periodic-threads* : 401 without a key, 403 with a wrong one, 200 with a key or the admin token', async () => {
      const reads = ['/loglevel', '/loglevel?logger_name=http', '/metrics', '/periodic-threads', '/periodic-threads/metrics-uptime', '/periodic-threads-health'];
      for (const path of reads) expect((await fetch(`${c.url}${path}`)).status, path).toBe(200);
      expect(c.console.config.update({ auth: { apiKeys: ['ops-test-key-1'] } }).ok).toBe(true);
      try {
        for (const path of reads) {
          expect((await fetch(`${c.url}${path}`)).status, path).toBe(401);
          expect((await fetch(`${c.url}${path}`, { headers: { 'x-api-key': 'wrong-key-123' } })).status, path).toBe(403);
          expect((await fetch(`${c.url}${path}`, { headers: { 'x-api-key': 'ops-test-key-1' } })).status, path).toBe(200);
          expect((await fetch(`${c.url}${path}`, { headers: c.admin })).status, path).toBe(200);
        }
        // a level write still needs the admin token, whatever the API key
        expect((await fetch(`${c.url}/loglevel?logger_name=http&level=INFO`, { headers: { 'x-api-key': 'ops-test-key-1' } })).status).toBe(401);
        expect((await fetch(`${c.url}/loglevel?logger_name=http&level=INFO`, { headers: c.admin })).status).toBe(200);
      } finally {
        expect(c.console.config.update({ auth: { apiKeys: [] } }).ok).toBe(true);
      }
    });
  });

  describe('periodic threads', () => {
    it('lists the core periodic tasks with a summary', async () => {
      const res = await fetch(`${c.url}/periodic-threads`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { summary: { total_count: number; by_level: Record<string, { total: number }> }; threads: Array<{ name: string; level: string; interval: number; is_running: boolean }> };
      const names = body.threads.map((t) => t.name);
      expect(names).toContain('metrics-uptime');
      expect(names).toContain('store-checkpoint');
      // Contract §2.6 names for the loops that exist: the monitor loop (GPU locks and heartbeat sweep).
      expect(body.threads.find((t) => t.name === 'gpu-monitor')).toMatchObject({ level: 'high', interval: 30, is_running: true });
      expect(body.summary.total_count).toBe(body.threads.length);
      const uptime = body.threads.find((t) => t.name === 'metrics-uptime');
      expect(uptime).toMatchObject({ level: 'low', interval: 15, is_running: true });
      expect(body.summary.by_level.low?.total).toBeGreaterThanOrEqual(2);
    });

    it('filters by level and rejects an unknown level', async () => {
      const low = (await (await fetch(`${c.url}/periodic-threads?level=low&running_only=true`)).json()) as { threads: Array<{ level: string }> };
      expect(low.threads.length).toBeGreaterThan(0);
      expect(low.threads.every((t) => t.level === 'low')).toBe(true);
      const bad = await fetch(`${c.url}/periodic-threads?level=unknown`);
      expect(bad.status).toBe(400);
      expect(await bad.json()).toEqual({ error: 'Invalid level: unknown. Valid values: critical, high, medium, low' });
    });

    it('gets one thread by name, 404 otherwise', async () => {
      const one = await fetch(`${c.url}/periodic-threads/metrics-uptime`);
      expect(((await one.json()) as { name: string }).name).toBe('metrics-uptime');
      const missing = await fetch(`${c.url}/periodic-threads/nope`);
      expect(missing.status).toBe(404);
      expect(await missing.json()).toEqual({ error: 'Thread not found: nope' });
    });

    it('reports periodic health', async () => {
      const body = (await (await fetch(`${c.url}/periodic-threads-health`)).json()) as { healthy: boolean; unhealthy_count: number };
      expect(body).toMatchObject({ healthy: true, unhealthy_count: 0 });
    });
  });

  describe('POST /run_script (disabled by default)', () => {
    it('answers 403 saying how to enable it', async () => {
      const form = new FormData();
      form.append('script', new Blob(['export const result = 1;']), 'a.mjs');
      const res = await fetch(`${c.url}/run_script`, { method: 'POST', body: form, headers: c.admin });
      expect(res.status).toBe(403);
      expect(await res.text()).toMatch(/CONSOLE_RUN_SCRIPT_ENABLED=true/);
    });

    it('needs the admin token', async () => {
      const form = new FormData();
      form.append('script', new Blob(['1']), 'a.mjs');
      expect((await fetch(`${c.url}/run_script`, { method: 'POST', body: form })).status).toBe(401);
    });
  });
});
