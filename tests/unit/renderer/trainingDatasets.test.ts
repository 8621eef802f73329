import { describe, expect, it } from 'vitest';
import { ConsoleClient } from '../../../shared/client/consoleClient.js';
import type { DatasetDetails } from '../../../shared/contracts/datasets.js';
import { createTrainingStore, describeDataset } from '../../../renderer/src/features/training/store.js';
import { fakeFetch } from './fakes.js';

const details: DatasetDetails = {
  name: 'chat.jsonl',
  path: '/data/datasets/chat.jsonl',
  format: 'jsonl',
  size: 120,
  rows: 3,
  shapes: { text: 1, promptCompletion: 0, chat: 2 },
  sha256: 'ab'.repeat(32),
  modifiedAt: '2026-01-01T00:00:00Z',
  issueCount: 0,
  preview: [{ at: 1, shape: 'chat', text: 'user: Hi\nassistant: Hello' }],
  issues: [],
};
const { preview: _p, issues: _i, ...summary } = details;

describe('training store: datasets', () => {
  it('describes rows and shapes', () => {
    expect(describeDataset(details)).toBe('3 rows · 2 chat, 1 text');
    expect(describeDataset({ rows: 1, shapes: { text: 1, promptCompletion: 0, chat: 0 } })).toBe('1 row · 1 text');
  });

  it('lists, chooses (path + preview) and uploads as multipart', async () => {
    const f = fakeFetch({
      'GET /api/v1/training/datasets': () => [200, { datasets: [summary] }],
      'GET /api/v1/training/datasets/chat.jsonl': () => [200, details],
      'POST /api/v1/training/datasets': () => [200, details],
    });
    const t = createTrainingStore(new ConsoleClient({ baseUrl: '', fetch: f }));
    await t.getState().loadDatasets();
    expect(t.getState().datasets).toEqual([summary]);
    await t.getState().chooseDataset('chat.jsonl');
    expect(t.getState().form.datasetPath).toBe('datasets/chat.jsonl');
    expect(t.getState().datasetPreview).toEqual(details);

    t.getState().setField('datasetPath', '');
    expect(await t.getState().upload(new Blob(['{"text":"a"}\n']), 'chat.jsonl')).toBe(true);
    const post = f.calls.find((c) => c.method === 'POST')!;
    expect(post.headers['content-type']).toBeUndefined(); // fetch sets the multipart boundary
    expect(t.getState().form.datasetPath).toBe('datasets/chat.jsonl');
  });

  it('shows the bad rows of a refused upload', async () => {
    const f = fakeFetch({
      'POST /api/v1/training/datasets': () => [
        400,
        { error: { code: 'INVALID_REQUEST', message: 'Invalid dataset x.jsonl: 2 bad rows', details: [{ type: 'invalid_dataset', field: 'file', description: 'line 2: malformed JSON' }, { type: 'invalid_dataset', field: 'file', description: 'line 5: "text" is empty' }] } },
      ],
    });
    const t = createTrainingStore(new ConsoleClient({ baseUrl: '', fetch: f }));
    expect(await t.getState().upload(new Blob(['x']), 'x.jsonl')).toBe(false);
    expect(t.getState().uploadError).toBe('Invalid dataset x.jsonl: 2 bad rows\nline 2: malformed JSON\nline 5: "text" is empty');
  });

  it('joins several server errors of one field', async () => {
    const f = fakeFetch({
      'POST /api/v1/training/start': () => [400, { error: { code: 'INVALID_REQUEST', message: 'bad', details: [{ type: 'invalid_dataset', field: 'datasetPath', description: 'line 1: a' }, { type: 'invalid_dataset', field: 'datasetPath', description: 'line 2: b' }] } }],
    });
    const t = createTrainingStore(new ConsoleClient({ baseUrl: '', fetch: f }));
    for (const [k, v] of [['baseModel', 'tiny'], ['datasetPath', 'd.jsonl'], ['outputDir', 'o']] as const) t.getState().setField(k, v);
    await t.getState().start();
    expect(t.getState().fieldErrors.datasetPath).toBe('line 1: a; line 2: b');
  });
});
