import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../electron/core/base/clock.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { waitUntil } from '../helpers/wait.js';

const json = { 'content-type': 'application/json' };
type Body = Record<string, unknown> & { error?: { code: string; message: string; details?: Array<{ field?: string; description: string; type: string }> } };

describe('monitoring API (§7) on a real console', () => {
  let c: TestConsole;
  let P: string;
  const post = async (path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${P}${path}`, { method: 'POST', headers: body === undefined ? headers : { ...json, ...headers }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as Body };
  };
  const get = async (path: string) => {
    const res = await fetch(`${P}${path}`);
    return { status: res.status, body: (await res.json()) as Body };
  };

  beforeAll(async () => {
    c = await startConsole({ config: { monitoring: { locks: { gpuIds: [0, 1, 2], maxTtlSeconds: 7200 } } } });
    P = `${c.url}/api/v1/monitoring`;
  });
  afterAll(async () => {
    await c.close();
  });

  it('acquire → 409 with the holder → renew → release; stale tokens refused; the token only grows', async () => {
    const a = await post('/gpu-lock/acquire', { lock_key: 'gpu_lock:1', task_name: 'faster_whisper.transcribe_audio', ttl_seconds: 3000 });
    expect(a.status).toBe(200);
    expect(a.body).toMatchObject({ acquired: true, lock_key: 'gpu_lock:1', expires_in: 3000 });
    const token = a.body.fencing_token as number;
    const b = await post('/gpu-lock/acquire', { lock_key: 'gpu_lock:1', task_name: 'other' });
    expect(b.status).toBe(409);
    expect(b.body.error?.code).toBe('CONFLICT');
    expect(b.body.error?.message).toContain('faster_whisper.transcribe_audio');

    const status = await get('/gpu-lock/status?lock_key=gpu_lock:1');
    expect(status.body).toMatchObject({ lock_key: 'gpu_lock:1', is_locked: true, lock_holder: 'faster_whisper.transcribe_audio', lock_type: 'GPU_LOCK', lock_ttl: 3000 });
    // readers see holder, age and TTL, never the token (it is the holder's proof)
    expect(status.body).not.toHaveProperty('fencing_token');
    expect(JSON.stringify(status.body)).not.toMatch(/token/);
    expect(b.body.error?.message).not.toMatch(/token/);
    expect(status.body.ttl_seconds).toBeGreaterThan(2990);
    expect((status.body.recent_history as Array<{ action: string; success: boolean }>).slice(0, 2)).toEqual([
      expect.objectContaining({ action: 'acquire', success: false }),
      expect.objectContaining({ action: 'acquire', success: true }),
    ]);

    // a non-holder naming itself is refused and told who holds it
    const notHolder = await post('/gpu-lock/release', { lock_key: 'gpu_lock:1', fencing_token: token, task_name: 'intruder' });
    expect(notHolder.status).toBe(409);
    expect(notHolder.body.error?.details).toContainEqual(expect.objectContaining({ field: 'lock_holder', description: 'faster_whisper.transcribe_audio' }));
    const stale = await post('/gpu-lock/renew', { lock_key: 'gpu_lock:1', fencing_token: token + 100, task_name: 'faster_whisper.transcribe_audio' });
    expect(stale.status).toBe(409);
    expect(stale.body.error?.message).toContain('Stale fencing token');
    // the token alone is not enough: renew and release need the holder's name too
    for (const path of ['/gpu-lock/renew', '/gpu-lock/release']) {
      const tokenOnly = await post(path, { lock_key: 'gpu_lock:1', fencing_token: token });
      expect(tokenOnly.status).toBe(400);
      expect(tokenOnly.body.error?.details?.map((d) => d.field)).toEqual(['task_name']);
    }
    expect((await get('/gpu-lock/status?lock_key=gpu_lock:1')).body.is_locked).toBe(true);

    const holder = 'faster_whisper.transcribe_audio';
    expect((await post('/gpu-lock/renew', { lock_key: 'gpu_lock:1', fencing_token: token, task_name: holder, ttl_seconds: 60 })).body).toMatchObject({ fencing_token: token, expires_in: 60 });
    expect((await post('/gpu-lock/release', { lock_key: 'gpu_lock:1', fencing_token: token, task_name: holder })).body).toEqual({ released: true, lock_key: 'gpu_lock:1', fencing_token: token });
    expect((await post('/gpu-lock/release', { lock_key: 'gpu_lock:1', fencing_token: token, task_name: holder })).status).toBe(409);
    const again = await post('/gpu-lock/acquire', { lock_key: 'gpu_lock:1', task_name: 'next' });
    expect(again.body.fencing_token).toBe(token + 1);
    await post('/gpu-lock/release', { lock_key: 'gpu_lock:1', fencing_token: token + 1, task_name: 'next' });
  });

  it('bad input: every bad field listed (400), unknown GPU and task (404)', async () => {
    const bad = await post('/gpu-lock/acquire', { lock_key: 'gpu:0', task_name: '', ttl_seconds: -5, extra: 1 });
    expect(bad.status).toBe(400);
    expect(bad.body.error?.details?.map((d) => d.field).sort()).toEqual(['extra', 'lock_key', 'task_name', 'ttl_seconds']);
    const huge = await post('/gpu-lock/acquire', { lock_key: 'gpu_lock:0', task_name: 'x', ttl_seconds: 1e12 });
    expect(huge.status).toBe(400);
    expect(huge.body.error?.details?.[0]?.field).toBe('ttl_seconds');
    const overConfig = await post('/gpu-lock/acquire', { lock_key: 'gpu_lock:0', task_name: 'x', ttl_seconds: 7201 });
    expect(overConfig.status).toBe(400);
    expect(overConfig.body.error?.details?.[0]).toMatchObject({ field: 'ttl_seconds', description: expect.stringContaining('7200') });
    expect((await post('/gpu-lock/acquire', { lock_key: 'gpu_lock:9', task_name: 'x' })).status).toBe(404);
    expect((await get('/gpu-lock/status?lock_key=gpu_lock:9')).status).toBe(404);
    expect((await get('/gpu-lock/status?lock_key=gpu_lock:abc')).status).toBe(400);
    expect((await post('/heartbeat/task/never-seen', { progress: 0.5 })).status).toBe(404);
    expect((await get('/heartbeat/task/never-seen')).status).toBe(404);
    const badBeat = await post('/heartbeat/task/x', { progress: 2, status: 'dancing' });
    expect(badBeat.body.error?.details?.map((d) => d.field).sort()).toEqual(['progress', 'status']);
    expect((await post('/gpu-lock/release', { lock_key: 'gpu_lock:0', fencing_token: -1, task_name: 'x' })).status).toBe(400);
    await post('/heartbeat/task/big/start');
    const big = await post('/heartbeat/task/big', { detail: { log: 'x'.repeat(20_000) } });
    expect(big.status).toBe(400);
    expect(big.body.error?.details?.[0]?.field).toBe('detail');
    await fetch(`${P}/heartbeat/task/big`, { method: 'DELETE' });
    expect((await post('/heartbeat/cleanup', undefined, c.admin)).body.cleaned_dead_tasks).toBe(1);
    const notJson = await fetch(`${P}/gpu-lock/acquire`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'lock please' });
    expect(notJson.status).toBe(415);
  });

  it('heartbeats: start (no body) → beat → get → all → stop → cleanup (admin)', async () => {
    expect((await post('/heartbeat/task/extract-001/start')).body).toMatchObject({ message: '任务 extract-001 心跳已启动', success: true });
    const lease = await post('/gpu-lock/acquire', { lock_key: 'gpu_lock:2', task_name: 'ffmpeg.extract_audio', task_id: 'job-7' });
    const token = lease.body.fencing_token as number;
    expect((await post('/heartbeat/task/job-7/start', { task_name: 'ffmpeg.extract_audio', gpu_lock: 'gpu_lock:2', fencing_token: token })).status).toBe(200);
    // console_heartbeat_beats_total{result}: the alert rules' heartbeat failure rate.
    const beats = async () => {
      const text = await (await fetch(`${c.url}/metrics`)).text();
      const of = (result: string) => Number(new RegExp(`^console_heartbeat_beats_total\\{result="${result}"\\} (\\d+)`, 'm').exec(text)?.[1]);
      return { ok: of('ok'), refused: of('refused') };
    };
    const before = await beats();
    expect((await post('/heartbeat/task/job-7', { progress: 0.65, fencing_token: token })).body).toMatchObject({ success: true, status: 'running' });
    expect((await post('/heartbeat/task/job-7', { progress: 0.7, fencing_token: token + 1 })).status).toBe(409);
    expect(await beats()).toEqual({ ok: before.ok + 1, refused: before.refused + 1 });
    const one = await get('/heartbeat/task/job-7');
    expect(one.body).toMatchObject({ task_id: 'job-7', heartbeat_exists: true, is_registered: true, status: 'running', is_running: true, heartbeat_data: { task_name: 'ffmpeg.extract_audio', gpu_lock: 'gpu_lock:2', progress: 0.65 } });
    const all = await get('/heartbeat/all');
    expect(Object.keys(all.body.active_tasks as object).sort()).toEqual(['extract-001', 'job-7']);
    expect(all.body.statistics).toMatchObject({ active_count: 2, dead_count: 0, orphaned_count: 0 });

    const del = await fetch(`${P}/heartbeat/task/extract-001`, { method: 'DELETE' });
    expect(await del.json()).toEqual({ message: '任务 extract-001 心跳已停止', success: true });
    expect((await get('/heartbeat/task/extract-001')).body).toMatchObject({ heartbeat_exists: false, is_registered: false, status: 'completed', heartbeat_data: null, last_update: null, is_running: false });
    // the task ends while still holding its lock → lock without a live task
    expect((await post('/heartbeat/task/job-7', { status: 'completed' })).body).toMatchObject({ status: 'completed' });
    const orphans = (await get('/heartbeat/all')).body.orphaned_tasks as Array<{ task_id: string; reason: string }>;
    expect(orphans).toEqual([expect.objectContaining({ task_id: 'job-7', reason: 'lock_without_task' })]);

    expect((await post('/heartbeat/cleanup')).status).toBe(401);
    expect((await post('/heartbeat/cleanup', undefined, { authorization: 'Bearer nope' })).status).toBe(403);
    const cleaned = await post('/heartbeat/cleanup', undefined, c.admin);
    expect(cleaned.body).toEqual({ message: '心跳清理完成', success: true, cleaned_dead_tasks: 2, released_locks: 1 });
    expect((await get('/gpu-lock/status?lock_key=gpu_lock:2')).body.is_locked).toBe(false);
  });

  it('forced release needs the admin token, is audited with its reason, and reports a free lock as failure', async () => {
    const a = await post('/gpu-lock/acquire', { lock_key: 'gpu_lock:0', task_name: 'stuck-job' });
    expect((await post('/lock/release', { lock_key: 'gpu_lock:0' })).status).toBe(401);
    expect((await post('/lock/release', { task_name: 'ops' }, c.admin)).body.error?.details?.[0]?.field).toBe('lock_key');
    const r = await post('/lock/release', { lock_key: 'gpu_lock:0', task_name: 'ops', reason: 'job hung' }, c.admin);
    expect(r.body).toMatchObject({ success: true, message: '锁 gpu_lock:0 已成功释放', lock_key: 'gpu_lock:0', task_name: 'ops', released_holder: 'stuck-job' });
    const again = await post('/lock/release', { lock_key: 'gpu_lock:0' }, c.admin);
    expect(again).toMatchObject({ status: 200, body: { success: false, message: '释放锁 gpu_lock:0 失败' } });
    // the old holder's token is now stale
    expect((await post('/gpu-lock/renew', { lock_key: 'gpu_lock:0', fencing_token: a.body.fencing_token, task_name: 'stuck-job' })).status).toBe(409);
    const audit = (await (await fetch(`${c.url}/api/console/audit`, { headers: c.admin })).json()) as { entries: Array<{ action: string; target: string; detail: { reason: string } }> };
    expect(audit.entries.find((e) => e.action === 'monitoring.lock.force_release' && e.detail.reason === 'job hung')).toMatchObject({ target: 'gpu_lock:0' });
  });

  it('monitor start/stop/status/health; a registered periodic task; timeout endpoints; statistics; metrics', async () => {
    const threads = (await (await fetch(`${c.url}/periodic-threads`)).json()) as { threads: Array<{ name: string; is_running: boolean }> };
    expect(threads.threads.find((t) => t.name === 'gpu-monitor')).toMatchObject({ is_running: true });
    expect(threads.threads.map((t) => t.name)).toContain('monitoring-telemetry');
    const st = await get('/monitor/status');
    expect(st.body).toMatchObject({ monitor_status: { running: true }, config: { check_interval: 30, gpu_timeout: 300, heartbeat_timeout: 120, enabled: true }, is_running: true });
    // start/stop are admin writes: an API-key reader (or nobody) cannot stop timeout handling
    expect((await post('/monitor/stop')).status).toBe(401);
    expect((await post('/monitor/stop', undefined, { authorization: 'Bearer nope' })).status).toBe(403);
    expect((await post('/monitor/start')).status).toBe(401);
    expect((await get('/monitor/status')).body.is_running).toBe(true);
    expect((await post('/monitor/stop', undefined, c.admin)).body).toEqual({ message: '监控器已停止', success: true });
    expect((await post('/monitor/stop', undefined, c.admin)).body).toEqual({ message: '监控器已停止', success: true });
    expect((await get('/health')).body).toMatchObject({ status: 'critical' });
    expect((await get('/monitor/status')).body.is_running).toBe(false);
    const ready = (await (await fetch(`${c.url}/health/ready`)).json()) as Record<string, unknown>;
    expect(ready.monitor_running).toBe(false);
    expect((await post('/monitor/start', undefined, c.admin)).body).toEqual({ message: '监控器已启动', success: true });
    expect((await get('/health')).body).toMatchObject({ status: 'healthy', components: { monitor: { metrics: { check_frequency: '30s' } }, heartbeat: { failure_rate: 0 } } });
    const mh = await get('/monitor/health');
    expect(mh.body).toMatchObject({ status: 'healthy', metrics: { check_frequency: '30s', gpu_lock_coverage: '100%' } });

    expect((await get('/timeout/config')).body).toMatchObject({ gpu_lock_timeout: 300, task_heartbeat_timeout: 120, monitor_check_interval: 30, auto_recovery_enabled: true, max_retry_attempts: 3 });
    expect((await post('/timeout/check?lock_key=gpu_lock:0')).body).toMatchObject({ checked_locks: ['gpu_lock:0'], timeouts_detected: 0, actions_taken: [] });
    expect((await get('/timeout/status')).body).toMatchObject({ configured_actions: ['force_release_gpu_lock', 'update_task_status', 'log_timeout_event'] });
    const stats = await get('/statistics');
    expect(stats.body).toMatchObject({ gpu_lock: { overall_status: 'healthy' }, monitor: { running: true }, heartbeat: { active_tasks: 0 } });
    expect((stats.body.gpu_lock as { total_attempts: number }).total_attempts).toBeGreaterThan(0);
    expect((await get('/gpu-lock/health?lock_key=gpu_lock:0')).body).toMatchObject({ overall_status: 'healthy', lock_holder: null });

    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    expect(metrics).toContain('console_gpu_lock_held{lock_key="gpu_lock:0"} 0');
    expect(metrics).toMatch(/console_heartbeat_tasks\{state="active"\} \d/);
    expect(metrics).toContain('console_gpu_lock_held_seconds_total{lock_key="gpu_lock:0"}');
    expect(metrics).toMatch(/^console_heartbeat_max_age_seconds \d/m);
    expect(metrics).toMatch(/^console_heartbeat_beats_total\{result="refused"\} \d/m);
    const components = (await (await fetch(`${c.url}/api/v1/health/details`)).json()) as { components: Record<string, { status: string }> };
    expect(components.components.monitor?.status).toBe('UP');
  });

  it('telemetry says plainly that there is no GPU; the snapshot shows locks', async () => {
    const t = await get('/telemetry');
    expect(t.status).toBe(200);
    expect(t.body).toMatchObject({ gpu_available: false, nvidia: { available: false } });
    expect(t.body.message).toMatch(/No NVIDIA GPU telemetry/);
    const a = await post('/gpu-lock/acquire', { lock_key: 'gpu_lock:0', task_name: 'snap', ttl_seconds: 100 });
    await post('/heartbeat/task/snap-task/start', { task_name: 'snap', gpu_lock: 'gpu_lock:0', fencing_token: a.body.fencing_token });
    const snap = await get('/snapshot');
    expect((snap.body.locks as Array<{ lock_key: string; is_locked: boolean; lock_holder: string | null }>).find((l) => l.lock_key === 'gpu_lock:0')).toMatchObject({ is_locked: true, lock_holder: 'snap' });
    expect(c.console.monitoring.snapshot().locks[0]).toMatchObject({ holder: 'snap', isLocked: true, ttlSeconds: 100 });
    expect(snap.body).toMatchObject({ status: 'healthy', issues: [] });
    // neither the HTTP snapshot, the dashboard stream's provider nor the heartbeat detail carries the token
    expect(JSON.stringify(snap.body)).not.toMatch(/token/i);
    expect(JSON.stringify(c.console.monitoring.snapshot())).not.toMatch(/token/i);
    expect(JSON.stringify((await get('/heartbeat/task/snap-task')).body)).not.toMatch(/token/i);
    await post('/heartbeat/task/snap-task', { status: 'completed' });
    await post('/gpu-lock/release', { lock_key: 'gpu_lock:0', fencing_token: a.body.fencing_token, task_name: 'snap' });
  });

  it('concurrency truth: of many concurrent acquires of one GPU exactly one wins, every round', async () => {
    for (let round = 0; round < 5; round++) {
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => post('/gpu-lock/acquire', { lock_key: 'gpu_lock:1', task_name: `racer-${round}-${i}`, ttl_seconds: 30 })),
      );
      const winners = results.filter((r) => r.status === 200);
      expect(winners).toHaveLength(1);
      expect(results.filter((r) => r.status === 409)).toHaveLength(39);
      const w = winners[0]!.body;
      expect((await get('/gpu-lock/status?lock_key=gpu_lock:1')).body).toMatchObject({ lock_holder: w.lock_holder });
      expect((await post('/gpu-lock/release', { lock_key: 'gpu_lock:1', fencing_token: w.fencing_token, task_name: w.lock_holder })).status).toBe(200);
    }
  });
});

describe('GPU telemetry through a fake nvidia-smi on a real console', () => {
  it('samples the recorded output, adds the GPUs it finds to the lockable set, exports metrics', async () => {
    const fake = join(dirname(fileURLToPath(import.meta.url)), '../fixtures/nvidia-smi/fake-nvidia-smi.mjs');
    const c = await startConsole({ config: { monitoring: { telemetry: { nvidiaSmiPath: fake, intervalSeconds: 1 } } } });
    try {
      const P = `${c.url}/api/v1/monitoring`;
      let body: { gpu_available: boolean; latest: { gpus: Array<{ name: string }> } | null } = { gpu_available: false, latest: null };
      const ready = () => body.gpu_available && (body.latest?.gpus.length ?? 0) > 0;
      await waitUntil(
        async () => {
          body = (await (await fetch(`${P}/telemetry`)).json()) as typeof body;
          return ready();
        },
        20_000,
        'the telemetry to report the fake GPUs',
        100,
      );
      expect(body.latest?.gpus.map((g) => g.name)).toEqual(['NVIDIA GeForce RTX 4090', 'NVIDIA GeForce RTX 3060']);
      const acquire = await fetch(`${P}/gpu-lock/acquire`, { method: 'POST', headers: json, body: JSON.stringify({ lock_key: 'gpu_lock:1', task_name: 'uses-3060' }) });
      expect(acquire.status).toBe(200);
      const metrics = await (await fetch(`${c.url}/metrics`)).text();
      expect(metrics).toContain('console_gpu_utilization_percent{gpu="0"} 97');
    } finally {
      await c.close();
    }
  });
});

describe('GPU-lock occupancy metric', () => {
  it('console_gpu_lock_held_seconds_total adds the time each lock was held, across holders', async () => {
    const clock = new FakeClock();
    const c = await startConsole({ clock, config: { monitoring: { locks: { gpuIds: [0] }, monitor: { enabled: false } } } });
    try {
      const P = `${c.url}/api/v1/monitoring`;
      const post = async (path: string, body: unknown) => (await fetch(`${P}${path}`, { method: 'POST', headers: json, body: JSON.stringify(body) })).json() as Promise<Body>;
      const held = async () => Number(/^console_gpu_lock_held_seconds_total\{lock_key="gpu_lock:0"\} ([\d.]+)$/m.exec(await (await fetch(`${c.url}/metrics`)).text())?.[1]);
      expect(await held()).toBe(0);
      const a = await post('/gpu-lock/acquire', { lock_key: 'gpu_lock:0', task_name: 'one', ttl_seconds: 3000 });
      clock.advance(30_000);
      expect(await held()).toBe(30);
      clock.advance(30_000);
      expect(await held()).toBe(60);
      await post('/gpu-lock/release', { lock_key: 'gpu_lock:0', fencing_token: a.fencing_token, task_name: 'one' });
      clock.advance(100_000); // free: nothing added
      expect(await held()).toBe(60);
      await post('/gpu-lock/acquire', { lock_key: 'gpu_lock:0', task_name: 'two', ttl_seconds: 3000 });
      clock.advance(10_000);
      expect(await held()).toBe(70);
    } finally {
      await c.close();
    }
  });
});
