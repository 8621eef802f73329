import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { waitUntil } from '../helpers/wait.js';

const json = { 'content-type': 'application/json' };

/**
 * A misbehaving upstream on 127.0.0.1: the model name picks the failure (after the alias prefix is
 * removed, `faulty/org/<what>` arrives as `org/<what>`).
 */
function startFaultyUpstream(): Promise<{ server: Server; port: number; probes: () => number }> {
  let probes = 0;
  const server = createServer((req, res) => {
    if (req.url?.endsWith('/models')) {
      probes++;
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
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as AddressInfo).port, probes: () => probes })));
}

describe('limiter transport failures (contract §6.9)', () => {
  let up: Awaited<ReturnType<typeof startFaultyUpstream>>;
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
    await waitUntil(async () => (await status('faulty')).errors.upstream_errors !== before, 5000, 'the reset stream to count as an upstream error');
    expect((await status('faulty')).errors.upstream_errors).toBe(before + 1);
    expect(await metric(/sidecar_upstream_errors_total\{provider="faulty",status_code="transport"\} (\d+)/)).toBe(before + 1);
  });
});

describe('limiter readiness (contract §6.7, §9)', () => {
  let up: Awaited<ReturnType<typeof startFaultyUpstream>>;
  const consoles: TestConsole[] = [];
  const start = async (limiter: Record<string, unknown>) => {
    const c = await startConsole({ config: { limiter: { upstream_url: `http://127.0.0.1:${up.port}/v1`, rate_rpm: 6000, bucket_capacity: 100, ...limiter } } });
    consoles.push(c);
    return c;
  };
  const ready = async (c: TestConsole) => {
    const res = await fetch(`${c.url}/health/ready`);
    return { status: res.status, body: (await res.json()) as Record<string, boolean> };
  };
  const post = (c: TestConsole, model: string) =>
    fetch(`${c.url}/v1/chat/completions`, { method: 'POST', headers: json, body: JSON.stringify({ model, messages: [] }) }).then(async (r) => {
      await r.arrayBuffer().catch(() => undefined);
      return r.status;
    });

  beforeAll(async () => {
    up = await startFaultyUpstream();
  });
  afterAll(async () => {
    for (const c of consoles) await c.close();
    await new Promise((r) => up?.server.close(r));
  });

  it('an empty token bucket makes the console not ready (token_bucket_healthy counts)', async () => {
    const c = await start({ bucket_capacity: 2, rate_rpm: 1 });
    expect((await ready(c)).status).toBe(200);
    expect(await post(c, 'nvidia/org/ok')).toBe(200);
    expect(await post(c, 'nvidia/org/ok')).toBe(200);
    const r = await ready(c);
    expect(r.body).toMatchObject({ ready: false, token_bucket_healthy: false, queue_healthy: true });
    expect(r.status).toBe(503);
  });

  it('every probed provider must be reachable, not just one', async () => {
    const c = await start({ probe_upstream: true, providers: [{ name: 'down', aliases: ['down'], upstream_url: 'http://127.0.0.1:9/v1', probe: true, connect_timeout: 2 }] });
    const r = await ready(c);
    expect(r.body).toMatchObject({ ready: false, upstream_reachable: false, upstream_probed: true });
    expect(r.status).toBe(503);
  });

  it('without a probe, upstream_reachable is true until traffic shows otherwise, and does not block readiness', async () => {
    const c = await start({ providers: [{ name: 'down', aliases: ['down'], upstream_url: 'http://127.0.0.1:9/v1', connect_timeout: 2 }] });
    const before = await ready(c);
    expect(before.body).toMatchObject({ ready: true, upstream_reachable: true, upstream_probed: false });
    expect(await post(c, 'down/org/ok')).toBe(502);
    const after = await ready(c);
    expect(after.body).toMatchObject({ ready: true, upstream_reachable: false });
    expect(after.status).toBe(200);
  });

  it('a transport error on a probed provider makes readiness probe again at once', async () => {
    const c = await start({ probe_upstream: true });
    expect((await ready(c)).body).toMatchObject({ ready: true, upstream_reachable: true });
    const probes = up.probes();
    expect((await ready(c)).body.ready).toBe(true);
    expect(up.probes()).toBe(probes); // cached for 10 s
    expect(await post(c, 'nvidia/org/reset-body')).toBe(502);
    expect((await ready(c)).body).toMatchObject({ ready: true, upstream_reachable: true });
    expect(up.probes()).toBe(probes + 1);
  });
});
