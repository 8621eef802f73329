import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';

describe('HTTP edge: security and error envelopes', () => {
  let c: TestConsole;
  beforeAll(async () => {
    c = await startConsole({ config: { server: { bodyLimitBytes: 4096 } } });
  });
  afterAll(async () => {
    await c.close();
  });

  it('refuses a foreign Host header (DNS rebinding)', async () => {
    const res = await request(`${c.url}/health`, { headers: { host: 'evil.example' } });
    expect(res.statusCode).toBe(403);
    expect(await res.body.text()).toContain('Host header not allowed');
  });

  it('accepts loopback host names', async () => {
    const port = c.addresses.httpPort;
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`]) {
      const res = await request(`${c.url}/health`, { headers: { host } });
      expect(res.statusCode).toBe(200);
      await res.body.dump();
    }
  });

  it('refuses a cross-origin browser POST and gives no CORS grant', async () => {
    const res = await request(`${c.url}/metrics/reset`, { method: 'POST', headers: { origin: 'https://evil.example', ...c.admin } });
    expect(res.statusCode).toBe(403);
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    await res.body.dump();
    const preflight = await request(`${c.url}/api/console/config`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'PUT' },
    });
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
    await preflight.body.dump();
  });

  it('refuses a form post that skips CORS preflight with 415', async () => {
    const res = await fetch(`${c.url}/api/console/config`, { method: 'PUT', headers: { 'content-type': 'text/plain', ...c.admin }, body: '{}' });
    expect(res.status).toBe(415);
    const urlencoded = await fetch(`${c.url}/api/console/config`, {
      method: 'PUT',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...c.admin },
      body: 'a=b',
    });
    expect(urlencoded.status).toBe(415);
  });

  it('answers 413 for a body over the limit', async () => {
    const res = await fetch(`${c.url}/api/console/config`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json', ...c.admin },
      body: JSON.stringify({ ops: { pad: 'x'.repeat(10_000) } }),
    });
    expect(res.status).toBe(413);
  });

  it('answers 404 and 405 in the envelope of the route family', async () => {
    const missing = await fetch(`${c.url}/api/v1/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { code: 'NOT_FOUND' } });
    const wrongMethod = await fetch(`${c.url}/periodic-threads-health`, { method: 'DELETE' });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('GET');
    expect(await wrongMethod.json()).toMatchObject({ error: expect.stringContaining('not allowed') });
  });

  it('sets a request id on every response', async () => {
    const res = await fetch(`${c.url}/health`);
    expect(res.headers.get('x-request-id')).toMatch(/.+/);
  });

  it('admin endpoints refuse missing and wrong tokens', async () => {
    for (const [method, path] of [
      ['GET', '/env'],
      ['GET', '/threads'],
      ['POST', '/metrics/reset'],
      ['GET', '/api/console/config'],
      ['GET', '/api/console/audit'],
    ] as const) {
      expect((await fetch(`${c.url}${path}`, { method })).status, `${method} ${path}`).toBe(401);
      expect((await fetch(`${c.url}${path}`, { method, headers: { authorization: 'Bearer nope' } })).status, `${method} ${path}`).toBe(403);
    }
  });
});
