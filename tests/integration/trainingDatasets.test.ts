import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatasetDetails, DatasetListResponse } from '../../shared/contracts/datasets.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { installTinyModel } from '../helpers/tinyModel.js';

interface EngineError {
  error: { code: string; message: string; details?: Array<{ type: string; field?: string; description: string }> };
}

const chatRows = [
  { messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }] },
  { prompt: 'Q: ', completion: 'A' },
  { text: 'plain' },
];
const jsonl = (rows: unknown[]) => rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n';

/** A real multipart/form-data upload (fetch builds the body and boundary). */
async function upload(c: TestConsole, filename: string, content: string | Buffer, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown }> {
  const form = new FormData();
  form.append('file', new Blob([content]), filename);
  const res = await fetch(`${c.url}/api/v1/training/datasets`, { method: 'POST', body: form, headers });
  return { status: res.status, body: await res.json() };
}
async function get<T>(c: TestConsole, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: T }> {
  const res = await fetch(`${c.url}${path}`, { headers });
  return { status: res.status, body: (await res.json()) as T };
}

describe('training datasets API on a real console', () => {
  let c: TestConsole;
  beforeAll(async () => {
    c = await startConsole({ config: { engine: { gpu: 'false' }, training: { maxDatasetUploadBytes: 4096 } } });
    installTinyModel(c.dataDir, 'tiny');
  });
  afterAll(async () => {
    await c?.close();
  });

  it('uploads, validates, lists and previews a dataset', async () => {
    const content = jsonl(chatRows);
    const res = await upload(c, 'my chat set.jsonl', content);
    expect(res.status).toBe(200);
    const d = res.body as DatasetDetails;
    expect(d).toMatchObject({
      name: 'my-chat-set.jsonl',
      path: join(c.dataDir, 'datasets', 'my-chat-set.jsonl'),
      format: 'jsonl',
      size: Buffer.byteLength(content),
      rows: 3,
      shapes: { text: 1, promptCompletion: 1, chat: 1 },
      sha256: createHash('sha256').update(content).digest('hex'),
      issueCount: 0,
      issues: [],
    });
    expect(d.modifiedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(d.preview[0]).toEqual({ at: 1, shape: 'chat', text: 'user: Hi\nassistant: Hello' });
    expect(readFileSync(d.path, 'utf8')).toBe(content);

    const list = await get<DatasetListResponse>(c, '/api/v1/training/datasets');
    expect(list.status).toBe(200);
    expect(list.body.datasets.map((x) => x.name)).toContain('my-chat-set.jsonl');
    const item = list.body.datasets.find((x) => x.name === 'my-chat-set.jsonl')!;
    expect(item).not.toHaveProperty('preview');
    expect(item).toMatchObject({ rows: 3, sha256: d.sha256, size: d.size });

    const one = await get<DatasetDetails>(c, '/api/v1/training/datasets/my-chat-set.jsonl');
    expect(one.body).toEqual(d);
    const missing = await get<EngineError>(c, '/api/v1/training/datasets/nope.jsonl');
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('NOT_FOUND');
  });

  it('a name clash gets a numeric suffix; the same content again reuses the existing file', async () => {
    const first = await upload(c, 'clash.txt', 'one document');
    const again = await upload(c, 'clash.txt', 'one document');
    const other = await upload(c, 'clash.txt', 'another document');
    expect([first.status, again.status, other.status]).toEqual([200, 200, 200]);
    expect((first.body as DatasetDetails).name).toBe('clash.txt');
    expect((again.body as DatasetDetails).name).toBe('clash.txt');
    expect((other.body as DatasetDetails).name).toBe('clash-1.txt');
  });

  it('refuses an invalid upload with every bad line and keeps nothing', async () => {
    const res = await upload(c, 'broken.jsonl', jsonl([{ text: 'fine' }, '{"text": ', { foo: 1 }, { messages: [{ role: 'user', content: '' }] }]));
    expect(res.status).toBe(400);
    const err = res.body as EngineError;
    expect(err.error.code).toBe('INVALID_REQUEST');
    expect(err.error.details!.map((x) => x.description)).toEqual([
      expect.stringMatching(/^line 2: malformed JSON/),
      expect.stringMatching(/^line 3: no known row shape/),
      expect.stringMatching(/^line 4: messages\[0\]\.content is empty/),
    ]);
    expect(err.error.details!.every((x) => x.field === 'file' && x.type === 'invalid_dataset')).toBe(true);
    const empty = await upload(c, 'empty.jsonl', '');
    expect(empty.status).toBe(400);
    expect((empty.body as EngineError).error.details![0]!.description).toMatch(/empty/);
    expect(readdirSync(join(c.dataDir, 'datasets')).filter((n) => /broken|empty|^\.upload/.test(n))).toEqual([]);
  });

  it('sanitises file names, refuses unknown extensions and files over training.maxDatasetUploadBytes', async () => {
    const sneaky = await upload(c, '../../etc/.evil name!.txt', 'text');
    expect(sneaky.status).toBe(200);
    expect((sneaky.body as DatasetDetails).name).toBe('evil-name.txt');
    expect(existsSync(join(c.dataDir, 'datasets', 'evil-name.txt'))).toBe(true);

    const exe = await upload(c, 'tool.exe', 'MZ');
    expect(exe.status).toBe(400);
    expect((exe.body as EngineError).error.details![0]!.description).toMatch(/\.jsonl/);

    const big = await upload(c, 'big.txt', 'x'.repeat(5000));
    expect(big.status).toBe(413);
    expect((big.body as EngineError).error.code).toBe('PAYLOAD_TOO_LARGE');
    expect(readdirSync(join(c.dataDir, 'datasets')).filter((n) => /big|^\.upload/.test(n))).toEqual([]);

    const notMultipart = await fetch(`${c.url}/api/v1/training/datasets`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(notMultipart.status).toBe(400);
  });

  it('training/start refuses a malformed or empty dataset with a 400 listing the bad lines', async () => {
    writeFileSync(join(c.dataDir, 'datasets', 'hand-copied.jsonl'), jsonl([{ text: 'ok' }, '{nope', { text: 7 }]));
    const res = await fetch(`${c.url}/api/v1/training/start`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ baseModel: 'tiny', datasetPath: 'datasets/hand-copied.jsonl', outputDir: 'never' }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as EngineError;
    expect(body.error.details).toEqual([
      { type: 'invalid_dataset', field: 'datasetPath', description: expect.stringMatching(/^line 2: malformed JSON/) },
      { type: 'invalid_dataset', field: 'datasetPath', description: 'line 3: "text" must be a string, got number' },
    ]);
    // a hand-copied file is listed with its issue count
    const list = await get<DatasetListResponse>(c, '/api/v1/training/datasets');
    expect(list.body.datasets.find((x) => x.name === 'hand-copied.jsonl')).toMatchObject({ rows: 1, issueCount: 2 });
  });
});

describe('training datasets API with API keys', () => {
  let c: TestConsole;
  beforeAll(async () => {
    c = await startConsole({ config: { engine: { gpu: 'false' }, auth: { apiKeys: ['k-datasets-1'] } } });
  });
  afterAll(async () => {
    await c?.close();
  });

  it('reads and writes need the API key (401 missing, 403 wrong)', async () => {
    expect((await get(c, '/api/v1/training/datasets')).status).toBe(401);
    expect((await get(c, '/api/v1/training/datasets', { 'x-api-key': 'wrong' })).status).toBe(403);
    expect((await get(c, '/api/v1/training/datasets', { 'x-api-key': 'k-datasets-1' })).status).toBe(200);
    expect((await upload(c, 'a.txt', 'text')).status).toBe(401);
    expect((await upload(c, 'a.txt', 'text', { 'x-api-key': 'wrong' })).status).toBe(403);
    expect((await upload(c, 'a.txt', 'text', { 'x-api-key': 'k-datasets-1' })).status).toBe(200);
    expect(existsSync(join(c.dataDir, 'datasets', 'a.txt'))).toBe(true);
  });
});
