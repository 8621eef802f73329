import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { startConsole } from '../helpers/startConsole.js';

/**
 * S2's separate ports (contract §1.1, §6.2), off unless set: `limiter.listen_port`
 * (SIDECAR_PORT) opens the limiter's own surface, `limiter.metrics_port` (SIDECAR_METRICS_PORT) a
 * metrics-only listener, both with the main port's Host/Origin/auth rules.
 */
describe('sidecar ports', () => {
  it('open no extra listener by default', async () => {
    const c = await startConsole();
    try {
      expect(c.addresses.metricsUrl).toBeUndefined();
    } finally {
      await c.close();
    }
  });

  it('SIDECAR_PORT opens the limiter\'s own surface: remote /v1/*, status, admin config, health; nothing local', async () => {
    const c = await startConsole({ env: { SIDECAR_PORT: '0' }, config: { limiter: { upstream_url: 'http://127.0.0.1:9/v1' } } });
    try {
      const url = c.addresses.limiterUrl!;
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(url).not.toBe(c.url);
      expect(c.addresses.metricsUrl).toBeUndefined();
      const status = (await (await fetch(`${url}/status`)).json()) as { queue: { max_size: number } };
      expect(status.queue.max_size).toBe(500);
      expect((await fetch(`${url}/api/limiter/status`)).status).toBe(200);
      expect((await fetch(`${url}/health`)).status).toBe(200);
      // Admin config needs the admin token there too.
      expect((await fetch(`${url}/api/admin/config`)).status).toBe(401);
      expect((await fetch(`${url}/api/admin/config`, { headers: c.admin })).status).toBe(200);
      // A provider model goes through the limiter (this upstream is down: 502); a local one is not served here.
      const post = (model: string) => fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, messages: [] }) });
      expect((await post('nvidia/meta/x')).status).toBe(502);
      expect((await post('tiny-local')).status).toBe(404);
      // The console's other routes stay on the main port only.
      expect((await fetch(`${url}/api/v1/training/list`)).status).toBe(404);
      expect((await request(`${url}/status`, { headers: { host: 'evil.example' } })).statusCode).toBe(403);
    } finally {
      await c.close();
    }
  });

  it('limiter.listen_port with the limiter disabled is a start-up error naming the field and its source', async () => {
    await expect(startConsole({ env: { SIDECAR_PORT: '9190' }, config: { limiter: { enabled: false } } })).rejects.toThrow(/limiter\.listen_port.*limiter\.enabled is false.*env SIDECAR_PORT/s);
  });

  it('SIDECAR_METRICS_PORT opens a metrics-only listener under the same rules', async () => {
    const c = await startConsole({ env: { SIDECAR_METRICS_PORT: '0' }, config: { auth: { apiKeys: ['metrics-key-1234'] } } });
    try {
      const url = c.addresses.metricsUrl!;
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(url).not.toBe(c.url);
      // The API-key rule of /metrics on the main port.
      expect((await fetch(`${url}/metrics`)).status).toBe(401);
      expect((await fetch(`${url}/metrics`, { headers: { 'x-api-key': 'wrong-key-1234' } })).status).toBe(403);
      const ok = await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer metrics-key-1234' } });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toMatch(/^process_resident_memory_bytes \d+/m);
      // Only /metrics there.
      expect((await fetch(`${url}/health`)).status).toBe(404);
      expect((await fetch(`${url}/api/alerts`, { headers: { 'x-api-key': 'metrics-key-1234' } })).status).toBe(404);
      // DNS-rebinding and cross-site checks apply too.
      // (undici's request, because fetch does not let a caller set Host)
      expect((await request(`${url}/metrics`, { headers: { host: 'evil.example:9191', 'x-api-key': 'metrics-key-1234' } })).statusCode).toBe(403);
      expect((await fetch(`${url}/metrics`, { headers: { origin: 'https://evil.example', 'x-api-key': 'metrics-key-1234' } })).status).toBe(403);
    } finally {
      await c.close();
    }
  });

  it('limiter.metrics_port in the config file works the same way (0 = ephemeral)', async () => {
    const c = await startConsole({ config: { limiter: { metrics_port: 0 } } });
    try {
      const res = await fetch(`${c.addresses.metricsUrl!}/metrics`);
      expect(res.status).toBe(200);
    } finally {
      await c.close();
    }
  });
});
