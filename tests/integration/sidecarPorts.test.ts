import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { startConsole } from '../helpers/startConsole.js';

/**
 * S2's separate ports (contract §1.1, §6.2): `limiter.listen_port` (SIDECAR_PORT) is refused at
 * start-up (the limiter lives on the main port); `limiter.metrics_port` (SIDECAR_METRICS_PORT),
 * when set, opens a metrics-only listener with the main port's Host/Origin/auth rules. Defaults
 * alone open nothing.
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

  it('SIDECAR_PORT (or limiter.listen_port) is a start-up error naming the field and where it came from', async () => {
    await expect(startConsole({ env: { SIDECAR_PORT: '9190' } })).rejects.toThrow(/limiter\.listen_port.*main port.*SIDECAR_PORT/s);
    await expect(startConsole({ env: { SIDECAR_PORT: '9190' } })).rejects.toThrow(/env SIDECAR_PORT/);
    await expect(startConsole({ config: { limiter: { listen_port: 9190 } } })).rejects.toThrow(/limiter\.listen_port/);
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
