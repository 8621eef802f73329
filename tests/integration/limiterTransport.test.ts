import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';

const json = { 'content-type': 'application/json' };

/**
 * A misbehaving upstream on 127.0.0.1: the model name picks the failure (after the alias prefix is
 * removed, `faulty/org/<what>` arrives as `org/<what>`).
 */
function startFaultyUpstream(): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    if (req.url?.endsWith('/models')) {
      res.writeHead(200, json).end('{"data":[]}');
      return;
    }
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      const what = String((JSON.parse(body || '{}') as { model?: string }).model ?? '').split('/').pop();
      if (what === 'reset-body') {
        res.writeHead(200, { ...json, 'content-length': '1000' });
        res.write('{"partial":');
        setTimeout(() => res.socket?.destroy(), 20);
      } else if (what === 'stall-body') {
        res.writeHead(200, { ...json, 'content-length': '1000' });
        res.write('{"partial":'); // and nothing more
      } else if (what === 'reset-stream') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"choices":[{"delta":{"content":"tok0"}}]}\n\n');
        setTimeout(() => res.socket?.destroy(), 50);
      } else {
        res.writeHead(200, json).end('{"choices":[{"message":{"content":"ok"}}]}');
      }
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as AddressInfo).port })));
}

describe('limiter transport failures (contract §6.9)', () => {
  let up: { server: Server; port: number };
  let c: TestConsole;
  const post = (model: string) =>
    fetch(`${c.url}/v1/chat/completions`, { method: 'POST', headers: json, body: JSON.stringify({ model, messages: [] }) });
  const status = async (provider: string) => {
    const s = (await (await fetch(`${c.url}/api/limiter/status`)).json()) as { providers: Record<string, { healthy: boolean; errors: { upstream_errors: number } }> };
    return s.providers[provider]!;
  };
  const metric = async (re: RegExp) => {
    const m = re.exec(await (await fetch(`${c.url}/metrics`)).text());
    return m ? Number(m[1]) : 0;
  };

  beforeAll(async () => {
    up = await startFaultyUpstream();
    c = await startConsole({
      config: {
        limiter: {
          upstream_url: `http://127.0.0.1:${up.port}/v1`,
          rate_rpm: 6000,
          bucket_capacity: 100,
          providers: [
            { name: 'faulty', aliases: ['faulty'], upstream_url: `http://127.0.0.1:${up.port}/v1`, request_timeout: 0.5 },
            // TLS to a plain-HTTP port: the handshake fails.
            { name: 'tls', aliases: ['tls'], upstream_url: `https://127.0.0.1:${up.port}/v1` },
          ],
        },
      },
    });
  });
  afterAll(async () => {
    await c?.close();
    await new Promise((r) => up?.server.close(r));
  });

  it('a TLS failure is 502 ConnectError and counts as an upstream error', async () => {
    const res = await post('tls/org/ok');
    expect(res.status).toBe(502);
    const body = (await res.json()) as { error: { type: string; message: string } };
    expect(body.error.type).toBe('ConnectError');
    expect(body.error.message).toContain('上游连接失败');
    expect((await status('tls')).errors.upstream_errors).toBe(1);
    expect(await metric(/sidecar_upstream_errors_total\{provider="tls",status_code="transport"\} (\d+)/)).toBe(1);
    expect(await metric(/sidecar_health_status\{provider="tls"\} (\d+)/)).toBe(0);
  });

  it('a reset in the middle of a JSON body is 502 and is counted', async () => {
    const before = (await status('faulty')).errors.upstream_errors;
    const res = await post('faulty/org/reset-body');
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe('ConnectError');
    const s = await status('faulty');
    expect(s.errors.upstream_errors).toBe(before + 1);
    expect(s.healthy).toBe(false);
    // The next good response makes it healthy again.
    expect((await post('faulty/org/ok')).status).toBe(200);
    expect((await status('faulty')).healthy).toBe(true);
  });

  it('a body that stalls past request_timeout is 504 TimeoutException and is counted', async () => {
    const before = (await status('faulty')).errors.upstream_errors;
    const res = await post('faulty/org/stall-body');
    expect(res.status).toBe(504);
    const body = (await res.json()) as { error: { type: string; message: string } };
    expect(body.error.type).toBe('TimeoutException');
    expect(body.error.message).toContain('上游超时');
    expect((await status('faulty')).errors.upstream_errors).toBe(before + 1);
  });

  it('a stream reset after the headers is counted (the client sees the stream end early)', async () => {
    const before = (await status('faulty')).errors.upstream_errors;
    const res = await post('faulty/org/reset-stream');
    expect(res.status).toBe(200);
    await res.text().catch(() => '');
    const deadline = Date.now() + 5000;
    while ((await status('faulty')).errors.upstream_errors === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect((await status('faulty')).errors.upstream_errors).toBe(before + 1);
    expect(await metric(/sidecar_upstream_errors_total\{provider="faulty",status_code="transport"\} (\d+)/)).toBe(before + 1);
  });
});
