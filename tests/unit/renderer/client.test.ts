import { describe, expect, it } from 'vitest';
import { ApiError, ConsoleClient, NetworkError, parseErrorBody } from '../../../shared/client/consoleClient.js';
import { fakeFetch, sseResponse } from './fakes.js';

describe('parseErrorBody', () => {
  it('reads the engine envelope with every bad field', () => {
    const e = parseErrorBody(400, { error: { code: 'INVALID_REQUEST', message: 'bad', details: [{ type: 'validation', field: 'server.httpPort', description: 'expected integer' }, { type: 'v', field: 'a.b', description: 'x' }] } });
    expect(e.status).toBe(400);
    expect(e.code).toBe('INVALID_REQUEST');
    expect(e.fields).toEqual([
      { field: 'server.httpPort', message: 'expected integer' },
      { field: 'a.b', message: 'x' },
    ]);
  });
  it('reads the OpenAI/limiter, detail and ops envelopes', () => {
    expect(parseErrorBody(429, { error: { message: 'slow down', type: 'RateLimitedError' } })).toMatchObject({ message: 'slow down', code: 'RateLimitedError' });
    expect(parseErrorBody(409, { detail: 'Runtime is already running (PID: 1)' }).message).toBe('Runtime is already running (PID: 1)');
    expect(parseErrorBody(404, { error: 'no such thread' }).message).toBe('no such thread');
    expect(parseErrorBody(400, 'Invalid level\n').message).toBe('Invalid level');
  });
  it('knows a missing route from a missing thing', () => {
    expect(parseErrorBody(404, { error: { code: 'NOT_FOUND', message: 'No route: GET /api/limiter/status' } }).isMissing).toBe(true);
    expect(parseErrorBody(404, { error: { code: 'MODEL_NOT_FOUND', message: 'Unknown model x' } }).isMissing).toBe(false);
  });
});

describe('ConsoleClient', () => {
  it('sends the token as a bearer header and JSON bodies', async () => {
    const f = fakeFetch({ 'PATCH /api/console/config': (body) => [200, { config: body, file: {}, overridden: [], path: 'p' }] });
    const c = new ConsoleClient({ baseUrl: 'http://core:1/', token: 'tok', fetch: f });
    const r = await c.patchConfig({ ops: { logLevel: 'debug' } });
    expect(r.config).toEqual({ ops: { logLevel: 'debug' } });
    expect(f.calls[0]?.url).toBe('http://core:1/api/console/config');
    expect(f.calls[0]?.headers.authorization).toBe('Bearer tok');
    expect(f.calls[0]?.headers['content-type']).toBe('application/json');
  });
  it('throws ApiError on non-2xx and NetworkError when the core is down', async () => {
    const c = new ConsoleClient({ baseUrl: '', fetch: fakeFetch({}) });
    await expect(c.limiterStatus()).rejects.toBeInstanceOf(ApiError);
    const down = new ConsoleClient({ baseUrl: 'http://x', fetch: async () => Promise.reject(new TypeError('fetch failed')) });
    await expect(down.health()).rejects.toBeInstanceOf(NetworkError);
  });
  it('streams chat deltas from SSE split across chunks, with usage', async () => {
    const chunk = (content: string, finish: string | null = null) => JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content }, finish_reason: finish }] });
    const f = fakeFetch({ 'POST /v1/chat/completions': () => sseResponse([chunk('Hel'), chunk('lo'), chunk('!', 'stop'), JSON.stringify({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 3 } }), '[DONE]']) });
    const c = new ConsoleClient({ baseUrl: '', fetch: f });
    const deltas: string[] = [];
    let usage = 0;
    const r = await c.chatStream({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }] }, { onDelta: (d) => deltas.push(d), onUsage: (u) => (usage = u.completion_tokens) });
    expect(deltas.join('')).toBe('Hello!');
    expect(r.finishReason).toBe('stop');
    expect(usage).toBe(3);
    expect(f.calls[0]?.body).toMatchObject({ model: 'tiny', stream: true });
  });
  it('reports a chat error before the stream in the OpenAI envelope', async () => {
    const c = new ConsoleClient({ baseUrl: '', fetch: fakeFetch({ 'POST /v1/chat/completions': () => [404, { error: { message: 'Unknown model x', type: 'not_found_error', code: 'MODEL_NOT_FOUND' } }] }) });
    await expect(c.chatStream({ model: 'x', messages: [] }, { onDelta: () => undefined })).rejects.toMatchObject({ status: 404, message: 'Unknown model x' });
  });
  it('unwraps the model library lists', async () => {
    const c = new ConsoleClient({ baseUrl: '', fetch: fakeFetch({ 'GET /api/v1/library/downloads': () => [200, { downloads: [{ id: 'd1', status: 'downloading' }] }], 'GET /api/v1/library/catalog': () => [200, { models: [{ name: 'a', uri: 'hf:a/b' }] }] }) });
    expect(await c.downloads()).toEqual([{ id: 'd1', status: 'downloading' }]);
    expect(await c.catalog()).toEqual([{ name: 'a', uri: 'hf:a/b' }]);
  });
  it('reads a process log tail with the line count', async () => {
    const f = fakeFetch({ 'GET /api/runtime/processes/gateway/logs': () => [200, { name: 'gateway', file: 'f', lines: ['a', 'b'] }] });
    const c = new ConsoleClient({ baseUrl: '', fetch: f });
    expect(await c.processLogs('gateway', 50)).toEqual(['a', 'b']);
    expect(f.calls[0]?.url).toBe('/api/runtime/processes/gateway/logs?lines=50');
  });
});
