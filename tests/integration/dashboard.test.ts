import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { FakeClock } from '../../electron/core/base/clock.js';
import type { ConsoleSnapshot, StreamServerMessage } from '../../shared/contracts/console.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { waitUntil } from '../helpers/wait.js';

/** A WebSocket viewer that records every message and lets a test wait for one. */
function viewer(url: string) {
  const ws = new WebSocket(url);
  const messages: StreamServerMessage[] = [];
  const waiters: Array<{ pred: (m: StreamServerMessage) => boolean; resolve: (m: StreamServerMessage) => void }> = [];
  ws.on('message', (raw: Buffer) => {
    const m = JSON.parse(raw.toString()) as StreamServerMessage;
    messages.push(m);
    for (const w of waiters.splice(0)) {
      if (w.pred(m)) w.resolve(m);
      else waiters.push(w);
    }
  });
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return {
    ws,
    messages,
    opened,
    next(pred: (m: StreamServerMessage) => boolean): Promise<StreamServerMessage> {
      const found = messages.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve) => waiters.push({ pred, resolve }));
    },
    snapshots: () => messages.filter((m): m is { type: 'snapshot'; data: ConsoleSnapshot } => m.type === 'snapshot').map((m) => m.data),
    close: () => ws.close(),
  };
}

describe('dashboard serving and the console live stream', () => {
  let c: TestConsole;
  let clock: FakeClock;
  let root: string;
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'dash-'));
    mkdirSync(join(root, 'assets'));
    writeFileSync(join(root, 'index.html'), '<!doctype html><title>dash</title><script type="module" src="./assets/app-1.js"></script>');
    writeFileSync(join(root, 'assets/app-1.js'), 'console.log(1)');
    clock = new FakeClock();
    c = await startConsole({ clock, dashboardRoot: root });
  });
  afterAll(async () => {
    await c.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('serves index.html with a strict CSP at / and every client route; assets are immutable', async () => {
    for (const path of ['/', '/limiter', '/gpu', '/config', '/logs/']) {
      const res = await fetch(`${c.url}${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/text\/html/);
      expect(await res.text()).toContain('<title>dash</title>');
      const csp = res.headers.get('content-security-policy') ?? '';
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
    }
    const asset = await fetch(`${c.url}/assets/app-1.js`);
    expect(asset.status).toBe(200);
    expect(asset.headers.get('cache-control')).toMatch(/immutable/);
  });

  it('leaves API 404s unchanged', async () => {
    const res = await fetch(`${c.url}/api/v1/nope`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 'NOT_FOUND' } });
    const missingAsset = await fetch(`${c.url}/assets/nope.js`);
    expect(missingAsset.status).toBe(404);
    const traversal = await fetch(`${c.url}/assets/..%2f..%2fpackage.json`);
    expect(traversal.status).toBe(404);
  });

  it('sends one shared snapshot per tick to every viewer, only while someone watches', async () => {
    const wsUrl = `${c.url.replace('http', 'ws')}/api/console/stream`;
    const a = viewer(wsUrl);
    const b = viewer(wsUrl);
    await Promise.all([a.opened, b.opened]);
    const first = (await a.next((m) => m.type === 'snapshot')) as { data: ConsoleSnapshot };
    await b.next((m) => m.type === 'snapshot');
    expect(first.data.core.version).toBe(c.console.version);
    expect(first.data.core.rssBytes).toBeGreaterThan(0);
    const seq0 = Math.max(...a.snapshots().map((s) => s.seq), ...b.snapshots().map((s) => s.seq));
    await clock.advanceAsync(1000);
    const ta = (await a.next((m) => m.type === 'snapshot' && m.data.seq > seq0)) as { data: ConsoleSnapshot };
    const tb = (await b.next((m) => m.type === 'snapshot' && m.data.seq > seq0)) as { data: ConsoleSnapshot };
    // one build for both viewers
    expect(ta.data.seq).toBe(seq0 + 1);
    expect(tb.data).toEqual(ta.data);
    expect(ta.data.core.viewers).toBe(2);
    // The stream's 1 s tick is a timer on the injected clock; it is cancelled once the server has
    // seen both sockets close (nothing else schedules clock timers while the clock stands still).
    const watching = clock.pendingTimers();
    a.close();
    b.close();
    await waitUntil(() => clock.pendingTimers() === watching - 1, 5000, 'the stream to stop ticking once both viewers closed');
    // nobody watches: ticks build nothing
    await clock.advanceAsync(5000);
    const late = viewer(wsUrl);
    await late.opened;
    const s = (await late.next((m) => m.type === 'snapshot')) as { data: ConsoleSnapshot };
    expect(s.data.seq).toBe(seq0 + 2);
    late.close();
  });

  it('includes what the registered providers report, and a failing provider under errors', async () => {
    const offA = c.console.snapshots.register('probe', () => ({ retreat: { state: 'normal' } }));
    const offB = c.console.snapshots.register('broken', () => {
      throw new Error('boom');
    });
    const v = viewer(`${c.url.replace('http', 'ws')}/api/console/stream`);
    await v.opened;
    await clock.advanceAsync(1000);
    const m = (await v.next((x) => x.type === 'snapshot' && 'probe' in x.data.services)) as { data: ConsoleSnapshot };
    expect(m.data.services.probe).toEqual({ retreat: { state: 'normal' } });
    expect(m.data.errors).toEqual({ broken: 'boom' });
    v.close();
    offA();
    offB();
  });

  it('the monitoring section shows lock holders and the monitoring issues, never a lock\'s fencing token', async () => {
    const acquired = await fetch(`${c.url}/api/v1/monitoring/gpu-lock/acquire`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ lock_key: 'gpu_lock:0', task_name: 'stream-holder', ttl_seconds: 600 }),
    });
    const { fencing_token: token } = (await acquired.json()) as { fencing_token: number };
    c.console.monitoring.stopMonitor();
    try {
      const v = viewer(`${c.url.replace('http', 'ws')}/api/console/stream`);
      await v.opened;
      const first = (await v.next((x) => x.type === 'snapshot')) as { data: ConsoleSnapshot };
      await clock.advanceAsync(1000);
      const m = (await v.next((x) => x.type === 'snapshot' && x.data.seq > first.data.seq)) as { data: ConsoleSnapshot };
      const mon = m.data.services.monitoring as { issues: string[]; locks: Array<{ lockKey: string; holder: string | null }> };
      expect(mon.locks.find((l) => l.lockKey === 'gpu_lock:0')).toMatchObject({ holder: 'stream-holder' });
      expect(mon.issues).toEqual(expect.arrayContaining([expect.stringContaining('monitor is stopped')]));
      expect(JSON.stringify(mon)).not.toMatch(/token/i);
      v.close();
    } finally {
      c.console.monitoring.startMonitor();
      await fetch(`${c.url}/api/v1/monitoring/gpu-lock/release`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ lock_key: 'gpu_lock:0', task_name: 'stream-holder', fencing_token: token }),
      });
    }
  });

  it('sends admin-only sections only to admin viewers, and wires the services that are in the build', async () => {
    const off = c.console.snapshots.register('secretive', () => ({ lines: ['password=hunter2'] }), { adminOnly: true });
    const base = c.url.replace('http', 'ws');
    const anon = viewer(`${base}/api/console/stream`);
    const admin = viewer(`${base}/api/console/stream?token=${encodeURIComponent(c.adminToken)}`);
    await Promise.all([anon.opened, admin.opened]);
    const first = (await anon.next((m) => m.type === 'snapshot')) as { data: ConsoleSnapshot };
    await admin.next((m) => m.type === 'snapshot');
    await clock.advanceAsync(1000);
    const a = (await anon.next((m) => m.type === 'snapshot' && m.data.seq > first.data.seq)) as { data: ConsoleSnapshot };
    const b = (await admin.next((m) => m.type === 'snapshot' && m.data.seq === a.data.seq)) as { data: ConsoleSnapshot };
    expect(a.data.services).not.toHaveProperty('secretive');
    expect(a.data.services).not.toHaveProperty('runtime');
    expect(b.data.services.secretive).toEqual({ lines: ['password=hunter2'] });
    expect(b.data.services).toHaveProperty('runtime');
    expect(Object.keys(a.data.services)).toEqual(expect.arrayContaining(['monitoring', 'library']));
    anon.close();
    admin.close();
    off();
  });

  it('streams log records (filtered) only to admin viewers', async () => {
    const anon = viewer(`${c.url.replace('http', 'ws')}/api/console/stream`);
    await anon.opened;
    anon.ws.send(JSON.stringify({ type: 'logs', filter: {} }));
    expect(await anon.next((m) => m.type === 'error')).toMatchObject({ message: expect.stringMatching(/admin token/) });
    anon.close();

    const admin = viewer(`${c.url.replace('http', 'ws')}/api/console/stream?token=${encodeURIComponent(c.adminToken)}`);
    await admin.opened;
    admin.ws.send(JSON.stringify({ type: 'logs', filter: { module: 'e2e-module', level: 'warn' } }));
    await admin.next((m) => m.type === 'logs');
    const log = c.console.logs.get('e2e-module');
    log.info('quiet');
    log.warn('loud');
    c.console.logs.get('other').error('elsewhere');
    await clock.advanceAsync(1000);
    const got = (await admin.next((m) => m.type === 'logs' && m.records.length > 0)) as { records: Array<{ msg: string; module: string }> };
    expect(got.records.map((r) => r.msg)).toEqual(['loud']);
    admin.ws.send('not json');
    expect(await admin.next((m) => m.type === 'error')).toBeTruthy();
    admin.close();
  });

  it('serves the same stream over SSE', async () => {
    const ac = new AbortController();
    const res = await fetch(`${c.url}/api/console/stream/sse`, { signal: ac.signal });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = res.body!.getReader();
    let text = '';
    while (!text.includes('"type":"snapshot"')) text += new TextDecoder().decode((await reader.read()).value);
    expect(text.startsWith('retry: 3000')).toBe(true);
    ac.abort();
    const denied = await fetch(`${c.url}/api/console/stream/sse?logs=true`);
    expect(denied.status).toBe(401);
  });

  it('serves recent logs to the admin and exchanges the one-time login code once', async () => {
    expect((await fetch(`${c.url}/api/console/logs`)).status).toBe(401);
    const res = await fetch(`${c.url}/api/console/logs?module=console&level=info&limit=5`, { headers: c.admin });
    const body = (await res.json()) as { records: Array<{ module: string }> };
    expect(body.records.length).toBeGreaterThan(0);
    expect(body.records.every((r) => r.module === 'console')).toBe(true);
    expect((await fetch(`${c.url}/api/console/logs?level=loud`, { headers: c.admin })).status).toBe(400);

    const link = c.console.loginUrl();
    const code = /#login=(.+)$/.exec(link ?? '')?.[1] ?? '';
    const post = (body: unknown) => fetch(`${c.url}/api/console/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await post({ code: 'wrong-code-123' })).status).toBe(403);
    const ok = await post({ code });
    expect(await ok.json()).toEqual({ token: c.adminToken });
    expect((await post({ code })).status).toBe(403);
    expect(c.console.loginUrl()).toBeNull();
  });
});
