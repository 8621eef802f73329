import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';

describe('health endpoints', () => {
  let c: TestConsole;
  beforeAll(async () => {
    c = await startConsole();
  });
  afterAll(async () => {
    await c.close();
  });

  it('GET /health answers without auth', async () => {
    const res = await fetch(`${c.url}/health`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { status: string; version: string };
    expect(body.status).toBe('ok');
    expect(body.version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('GET /api/v1/health lists the gateway component', async () => {
    const res = await fetch(`${c.url}/api/v1/health`);
    const body = (await res.json()) as { status: string; components: Record<string, { status: string }> };
    expect(body.status).toBe('UP');
    expect(body.components.gateway?.status).toBe('UP');
  });
});
