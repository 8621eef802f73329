import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ConfigStore, loadSettings } from '../../../electron/core/base/config.js';
import { AppError, ErrorCode } from '../../../electron/core/base/errors.js';
import { MetricsRegistry } from '../../../electron/core/base/metrics.js';
import { HttpServer } from '../../../electron/core/server/http/httpServer.js';

/** Every 5xx is logged once with its cause and the request id; 4xx are not logged as errors. */
describe('HTTP error logging', () => {
  it('logs the cause of a 500 (an unknown error) and of a 503 AppError once, with the request id; a bare 503 refusal is a warning', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    const settings = loadSettings({ dataDir: mkdtempSync(join(tmpdir(), 'errlog-')), env: {}, argv: [] });
    const http = new HttpServer({ config: new ConfigStore(settings), logger: pino({ level: 'info' }, sink), metrics: new MetricsRegistry() });
    await http.init();
    await http.register(async (app) => {
      app.get('/api/v1/boom', async () => {
        throw new TypeError('sequence id 3 is gone');
      });
      app.get('/api/v1/busy', async () => {
        throw new AppError(ErrorCode.UNAVAILABLE, 'engine stopping', { cause: new Error('underlying reason') });
      });
      app.get('/api/v1/stopping', async () => {
        throw new AppError(ErrorCode.UNAVAILABLE, 'The engine is stopping');
      });
      app.get('/api/v1/bad', async () => {
        throw new AppError(ErrorCode.INVALID_REQUEST, 'bad field');
      });
    }, {});
    const boom = await http.app.inject({ method: 'GET', url: '/api/v1/boom', headers: { 'x-request-id': 'req-500' } });
    expect(boom.statusCode).toBe(500);
    expect(boom.json()).toEqual({ error: { code: 'INTERNAL_ERROR', message: 'Internal error' } });
    const busy = await http.app.inject({ method: 'GET', url: '/api/v1/busy', headers: { 'x-request-id': 'req-503' } });
    expect(busy.statusCode).toBe(503);
    const stopping = await http.app.inject({ method: 'GET', url: '/api/v1/stopping', headers: { 'x-request-id': 'req-refused' } });
    expect(stopping.statusCode).toBe(503);
    const bad = await http.app.inject({ method: 'GET', url: '/api/v1/bad', headers: { 'x-request-id': 'req-400' } });
    expect(bad.statusCode).toBe(400);
    const errors = lines.filter((l) => l.level === 50);
    expect(errors.map((l) => l.reqId)).toEqual(['req-500', 'req-503']);
    expect((errors[0]!.err as { message: string }).message).toBe('sequence id 3 is gone');
    expect((errors[1]!.err as { message: string }).message).toBe('underlying reason');
    // A 503 of our own without a cause (stopping, queue full) is a refusal: one warning, no stack.
    const warnings = lines.filter((l) => l.level === 40);
    expect(warnings.map((l) => [l.reqId, l.msg, 'err' in l])).toEqual([['req-refused', 'request refused: The engine is stopping', false]]);
    await http.app.close();
  });
});
