import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { writeTinyGguf } from '../helpers/gguf.js';

/** Sends a request with the path exactly as given (no client-side normalisation of `..`). */
function rawRequest(base: string, method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('model library over HTTP', () => {
  let tc: TestConsole;
  let outside: string;
  let modelsDir: string;

  beforeAll(async () => {
    outside = mkdtempSync(join(tmpdir(), 'models-outside-'));
    tc = await startConsole();
    modelsDir = tc.console.models.dir;
  });
  afterAll(async () => {
    await tc.close();
    rmSync(outside, { recursive: true, force: true });
  });

  const post = (path: string, body: unknown, headers: Record<string, string> = tc.admin) =>
    fetch(`${tc.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

  it('lists a GGUF placed in DATA_DIR/models, and a corrupt one with its reason', async () => {
    writeTinyGguf(join(modelsDir, 'placed.gguf'), { contextLength: 4096 });
    writeFileSync(join(modelsDir, 'broken.gguf'), 'definitely not gguf '.repeat(10));
    const res = await fetch(`${tc.url}/api/v1/library/files`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { dir: string; files: Array<Record<string, unknown>> };
    expect(body.dir).toBe(modelsDir);
    const placed = body.files.find((f) => f.id === 'placed');
    expect(placed).toMatchObject({ architecture: 'llama', contextLength: 4096, path: join(modelsDir, 'placed.gguf') });
    expect(placed?.modifiedAt).toMatch(/Z$/);
    expect(body.files.find((f) => f.id === 'broken')?.error).toMatch(/invalid GGUF/);
    const one = await fetch(`${tc.url}/api/v1/library/files/placed`);
    expect(((await one.json()) as { id: string }).id).toBe('placed');
    const missing = await fetch(`${tc.url}/api/v1/library/files/nope`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string; details: Array<{ description: string }> } }).error).toMatchObject({ code: 'MODEL_NOT_FOUND' });
  });

  it('serves the catalog', async () => {
    const res = await fetch(`${tc.url}/api/v1/library/catalog`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { models: Array<{ uri: string; license: string; sizeBytes: number }> };
    expect(body.models.length).toBeGreaterThanOrEqual(3);
    for (const m of body.models) {
      expect(m.uri).toMatch(/^hf:/);
      expect(m.license).not.toBe('');
    }
  });

  it('imports a local file with the admin token only', async () => {
    const src = join(outside, 'imported-model.gguf');
    const bytes = writeTinyGguf(src, { seed: 11 });
    expect((await post('/api/v1/library/import', { path: src }, {})).status).toBe(401);
    expect((await post('/api/v1/library/import', { path: src }, { authorization: 'Bearer wrong' })).status).toBe(403);
    const res = await post('/api/v1/library/import', { path: src });
    expect(res.status).toBe(201);
    const view = (await res.json()) as { id: string; path: string };
    expect(view.id).toBe('imported-model');
    expect(readFileSync(view.path).equals(bytes)).toBe(true);
    const again = await post('/api/v1/library/import', { path: src });
    expect(again.status).toBe(409);
    const audit = await fetch(`${tc.url}/api/console/audit`, { headers: tc.admin });
    expect(JSON.stringify(await audit.json())).toContain('models.import');
  });

  it('rejects a corrupt import with the reason and leaves nothing visible', async () => {
    const src = join(outside, 'corrupt.gguf');
    writeFileSync(src, Buffer.alloc(4096, 7));
    const res = await post('/api/v1/library/import', { path: src });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; details: Array<{ field: string; type: string; description: string }> } };
    expect(body.error.code).toBe('INVALID_REQUEST');
    expect(body.error.details[0]).toMatchObject({ field: 'path', type: 'invalid_gguf' });
    expect(existsSync(join(modelsDir, 'corrupt.gguf'))).toBe(false);
  });

  it('lists every bad field of an import body', async () => {
    const res = await post('/api/v1/library/import', { name: { nested: 1 }, extra: true });
    expect(res.status).toBe(400);
    const fields = ((await res.json()) as { error: { details: Array<{ field: string }> } }).error.details.map((d) => d.field).sort();
    expect(fields).toEqual(['extra', 'name', 'path']);
  });

  it.each([
    ['../escape', 'name'],
    ['%2e%2e', 'name'],
    ['/etc/evil', 'name'],
    ['a\\b', 'name'],
  ])('refuses import name %j', async (name, field) => {
    const src = join(outside, 'ok.gguf');
    writeTinyGguf(src);
    const res = await post('/api/v1/library/import', { path: src, name });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { details: Array<{ field: string }> } }).error.details[0]?.field).toBe(field);
    expect(existsSync(join(modelsDir, '..', 'escape.gguf'))).toBe(false);
  });

  it.each([
    '/api/v1/library/files/..',
    '/api/v1/library/files/%2e%2e',
    '/api/v1/library/files/%252e%252e',
    '/api/v1/library/files/..%2F..%2Fconsole.db',
    '/api/v1/library/files/%2Fetc%2Fpasswd',
    '/api/v1/library/files/a%5Cb',
    '/api/v1/library/files/x%00y',
  ])('refuses the traversal DELETE %s without touching anything', async (path) => {
    const db = join(tc.dataDir, 'console.db');
    const res = await rawRequest(tc.url, 'DELETE', path, tc.admin);
    expect(res.status).toBe(400);
    expect((res.body as { error: { code: string; details: Array<{ field: string }> } }).error).toMatchObject({ code: 'INVALID_REQUEST', details: [{ field: 'id' }] });
    expect(existsSync(db)).toBe(true);
    expect((await rawRequest(tc.url, 'GET', path)).status).toBe(400);
  });

  it('refuses a symlink that leads out of the models dir', async () => {
    writeTinyGguf(join(outside, 'secret.gguf'));
    symlinkSync(join(outside, 'secret.gguf'), join(modelsDir, 'sneaky.gguf'));
    const list = (await (await fetch(`${tc.url}/api/v1/library/files`)).json()) as { files: Array<{ id: string }> };
    expect(list.files.map((f) => f.id)).not.toContain('sneaky');
    const get = await fetch(`${tc.url}/api/v1/library/files/sneaky`);
    expect(get.status).toBe(400);
    const del = await fetch(`${tc.url}/api/v1/library/files/sneaky`, { method: 'DELETE', headers: tc.admin });
    expect(del.status).toBe(400);
    expect(existsSync(join(outside, 'secret.gguf'))).toBe(true);
  });

  it('deletes a file with the admin token and notifies the engine port', async () => {
    writeTinyGguf(join(modelsDir, 'doomed.gguf'));
    expect((await fetch(`${tc.url}/api/v1/library/files/doomed`, { method: 'DELETE' })).status).toBe(401);
    let changed = false;
    const off = tc.console.models.onChange(() => {
      changed = true;
    });
    const res = await fetch(`${tc.url}/api/v1/library/files/doomed`, { method: 'DELETE', headers: tc.admin });
    off();
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ deleted: 'doomed' });
    expect(existsSync(join(modelsDir, 'doomed.gguf'))).toBe(false);
    expect(changed).toBe(true);
  });
});

describe('model library reads follow the /api/v1 API-key rule', () => {
  it('needs X-API-Key when keys are configured', async () => {
    const tc = await startConsole({ config: { auth: { apiKeys: ['k-12345678'] } } });
    try {
      expect((await fetch(`${tc.url}/api/v1/library/files`)).status).toBe(401);
      expect((await fetch(`${tc.url}/api/v1/library/files`, { headers: { 'x-api-key': 'nope' } })).status).toBe(403);
      expect((await fetch(`${tc.url}/api/v1/library/files`, { headers: { 'x-api-key': 'k-12345678' } })).status).toBe(200);
      expect((await fetch(`${tc.url}/api/v1/library/downloads`, { headers: { 'x-api-key': 'k-12345678' } })).status).toBe(200);
      // An API key is not an admin token: writes stay closed.
      const res = await fetch(`${tc.url}/api/v1/library/downloads`, { method: 'POST', headers: { 'x-api-key': 'k-12345678', 'content-type': 'application/json' }, body: '{"uri":"hf:a/b"}' });
      expect(res.status).toBe(401);
    } finally {
      await tc.close();
    }
  });
});
