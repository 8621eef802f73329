import { readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { waitUntil } from '../helpers/wait.js';

/**
 * Multipart uploads whose body ends before the closing boundary. The request itself is well formed
 * (Content-Length matches what is sent), only the multipart body inside it is cut short; or the
 * client sends part of the body and goes away. Sent over a raw socket so nothing fixes the body up.
 */

interface RawAnswer {
  status: number;
  headers: string;
  body: string;
}

/**
 * Writes the request head and the body in `chunks` (a pause between them, so the server may be
 * streaming the file part when the body ends), then reads the answer. `contentLength` defaults to
 * the bytes actually sent; `hangUp` closes the socket after the last chunk instead of waiting.
 */
function rawPost(
  base: string,
  path: string,
  headers: Record<string, string>,
  chunks: Buffer[],
  options: { contentLength?: number; pauseMs?: number; hangUp?: boolean; timeoutMs?: number } = {},
): Promise<RawAnswer | 'closed'> {
  const u = new URL(base);
  const length = options.contentLength ?? chunks.reduce((n, c) => n + c.length, 0);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(u.port), u.hostname);
    const received: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${options.timeoutMs ?? 5000} ms`));
    }, options.timeoutMs ?? 5000);
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(received).toString('utf8');
      const m = /^HTTP\/1\.1 (\d{3})[^\r]*\r\n([\s\S]*?)\r\n\r\n([\s\S]*)$/.exec(text);
      if (!m) return resolve('closed');
      resolve({ status: Number(m[1]), headers: m[2]!.toLowerCase(), body: m[3]! });
    });
    socket.on('connect', async () => {
      const head = [`POST ${path} HTTP/1.1`, `host: ${u.host}`, 'connection: close', `content-length: ${length}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
      socket.write(`${head.join('\r\n')}\r\n\r\n`);
      // Fixed pauses on purpose: this is a slow client, whose pieces arrive as separate reads.
      for (const [i, chunk] of chunks.entries()) {
        if (i > 0) await sleep(options.pauseMs ?? 100);
        if (socket.destroyed) return;
        socket.write(chunk);
      }
      if (options.hangUp) {
        await sleep(options.pauseMs ?? 100);
        socket.destroy();
      }
    });
  });
}

const BOUNDARY = 'trunc-b';
const CT = `multipart/form-data; boundary=${BOUNDARY}`;
function partHead(field: string, filename: string): Buffer {
  return Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="${field}"; filename="${filename}"\r\ncontent-type: application/octet-stream\r\n\r\n`);
}
const rows = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => JSON.stringify({ text: `row ${i}` })).join('\n') + '\n');

function envelope(answer: RawAnswer | 'closed'): { status: number; code?: string; message?: string } {
  if (answer === 'closed') return { status: 0 };
  const body = JSON.parse(answer.body.replace(/^[0-9a-f]+\r\n|\r\n0\r\n\r\n$/g, '')) as { error?: { code?: string; message?: string } };
  return { status: answer.status, code: body.error?.code, message: body.error?.message };
}

describe('truncated multipart uploads on a real console', () => {
  let c: TestConsole;
  const leftovers = () => readdirSync(join(c.dataDir, 'datasets')).filter((n) => /^\.upload|^cut/.test(n));

  beforeAll(async () => {
    c = await startConsole({ config: { engine: { gpu: 'false' } } });
  });
  afterAll(async () => {
    await c?.close();
  });

  it('a dataset body without its closing boundary is a 400 in the error envelope, at once, and nothing is kept', async () => {
    // all in one write (busboy sees the end before the route reads the part), then in pieces
    // (the route is already writing the file when the body ends), then a large part
    const cases: Array<[string, Buffer[]]> = [
      ['one write', [Buffer.concat([partHead('file', 'cut.jsonl'), rows(3)])]],
      ['in pieces', [partHead('file', 'cut.jsonl'), rows(3), rows(2)]],
      ['a large part', [partHead('file', 'cut.jsonl'), rows(20_000), rows(20_000)]],
      ['inside the part headers', [Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="cut.jsonl"\r\n`)]],
      ['half way through the closing boundary', [Buffer.concat([partHead('file', 'cut.jsonl'), rows(3), Buffer.from(`\r\n--${BOUNDARY.slice(0, 3)}`)])]],
    ];
    for (const [label, chunks] of cases) {
      const started = Date.now();
      const answer = await rawPost(c.url, '/api/v1/training/datasets', { 'content-type': CT }, chunks);
      const e = envelope(answer);
      expect({ label, status: e.status, code: e.code }).toEqual({ label, status: 400, code: 'INVALID_REQUEST' });
      expect(e.message).toMatch(/multipart/i);
      expect(Date.now() - started).toBeLessThan(3000);
      expect({ label, leftovers: leftovers() }).toEqual({ label, leftovers: [] });
    }
    // the same route still takes a whole upload
    const whole = Buffer.concat([partHead('file', 'whole.jsonl'), rows(3), Buffer.from(`\r\n--${BOUNDARY}--\r\n`)]);
    const ok = await rawPost(c.url, '/api/v1/training/datasets', { 'content-type': CT }, [whole]);
    expect(ok !== 'closed' && ok.status).toBe(200);
  });

  it('a client that sends part of the body and hangs up leaves no partial file and no stuck upload', async () => {
    for (const pieces of [[partHead('file', 'cut.jsonl'), rows(50)], [partHead('file', 'cut.jsonl'), rows(20_000), rows(20_000)]]) {
      const sent = pieces.reduce((n, b) => n + b.length, 0);
      await rawPost(c.url, '/api/v1/training/datasets', { 'content-type': CT }, pieces, { contentLength: sent + 10_000, hangUp: true });
      // the server notices the close; the temp file goes with the request
      await waitUntil(() => leftovers().length === 0, 3000, `the temp file of the cut upload (${sent} bytes sent) to be removed`, 50);
    }
    const list = await fetch(`${c.url}/api/v1/training/datasets`);
    expect(list.status).toBe(200);
  });

  it('/run_script answers a body without its closing boundary with a 400 (ops text family)', async () => {
    const cases: Buffer[][] = [[Buffer.concat([partHead('script', 's.py'), Buffer.from('result = 1\n')])], [partHead('script', 's.py'), Buffer.from('result = 1\n'), Buffer.from('x = 2\n')]];
    for (const chunks of cases) {
      const answer = await rawPost(c.url, '/run_script', { 'content-type': CT, ...c.admin }, chunks);
      expect(answer !== 'closed' && { status: answer.status, text: /^content-type: text\/plain/m.test(answer.headers) }).toEqual({ status: 400, text: true });
    }
  });
});
