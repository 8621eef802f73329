import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';

describe('/api/console/config', () => {
  let c: TestConsole;
  beforeAll(async () => {
    c = await startConsole();
  });
  afterAll(async () => {
    await c.close();
  });
  const json = { 'content-type': 'application/json' };

  it('serves the schema openly and the config to the admin', async () => {
    const schema = (await (await fetch(`${c.url}/api/console/config/schema`)).json()) as { properties: Record<string, unknown> };
    expect(Object.keys(schema.properties)).toEqual(expect.arrayContaining(['server', 'auth', 'engine', 'limiter', 'monitoring', 'training', 'runtime', 'ops']));
    // Descriptions, defaults and the env var / flag that pins each field travel with the schema.
    const server = schema.properties.server as { properties: Record<string, Record<string, unknown>> };
    expect(server.properties.httpPort).toMatchObject({ default: 8080, 'x-env': ['CONSOLE_HTTP_PORT'], 'x-flag': '--port', description: expect.stringContaining('HTTP port') });
    const res = await fetch(`${c.url}/api/console/config`, { headers: c.admin });
    expect(res.status).toBe(200);
  });

  it('an invalid PATCH lists every bad field and saves nothing', async () => {
    const res = await fetch(`${c.url}/api/console/config`, {
      method: 'PATCH',
      headers: { ...json, ...c.admin },
      body: JSON.stringify({ ops: { runScript: { timeoutSeconds: 'soon', memoryMb: 1 } }, server: { allowedHosts: 'x' }, bogus: 1 }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; details: Array<{ field: string }> } };
    expect(body.error.code).toBe('INVALID_REQUEST');
    expect(body.error.details.map((d) => d.field).sort()).toEqual(['bogus', 'ops.runScript.memoryMb', 'ops.runScript.timeoutSeconds', 'server.allowedHosts']);
    expect(existsSync(join(c.dataDir, 'config.json'))).toBe(false);
  });

  it('a valid PATCH applies at once, is written to config.json and audited', async () => {
    const res = await fetch(`${c.url}/api/console/config`, {
      method: 'PATCH',
      headers: { ...json, ...c.admin },
      body: JSON.stringify({ ops: { runScript: { timeoutSeconds: 5 } } }),
    });
    expect(res.status).toBe(200);
    expect(c.console.config.get().ops.runScript.timeoutSeconds).toBe(5);
    expect(JSON.parse(readFileSync(join(c.dataDir, 'config.json'), 'utf8'))).toEqual({ ops: { runScript: { timeoutSeconds: 5 } } });
    const audit = (await (await fetch(`${c.url}/api/console/audit`, { headers: c.admin })).json()) as { entries: Array<{ action: string }> };
    expect(audit.entries.map((e) => e.action)).toContain('config.patch');
  });

  it('masks secrets in the config it returns', async () => {
    await fetch(`${c.url}/api/console/config`, { method: 'PATCH', headers: { ...json, ...c.admin }, body: JSON.stringify({ auth: { openaiToken: 'tok-supersecret' } }) });
    const text = await (await fetch(`${c.url}/api/console/config`, { headers: c.admin })).text();
    expect(text).not.toContain('tok-supersecret');
    expect(text).toContain('tok-****');
  });
});
