import { afterEach, describe, expect, it } from 'vitest';
import type { TimeoutEvent } from '../../../electron/core/services/monitoring/timeoutManager.js';
import { createHarness, rejection, type Harness } from './harness.js';

describe('heartbeats and the timeout manager', () => {
  let h: Harness;
  afterEach(async () => {
    await h.dispose();
  });

  it('lists active tasks with progress and the average beat interval', async () => {
    h = await createHarness();
    await h.service.heartbeats.register({ taskId: 'extract-001', owner: 'ffmpeg.extract_audio' });
    for (let i = 1; i <= 4; i++) {
      h.clock.advance(15_000);
      await h.service.heartbeats.beatTask('extract-001', { progress: i / 4 });
    }
    const o = h.service.heartbeats.overview();
    expect(o.active.map((t) => [t.taskId, t.progress])).toEqual([['extract-001', 1]]);
    expect(o.averageInterval).toBeCloseTo(15, 5);
    expect(o.dead).toEqual([]);
    expect(o.orphaned).toEqual([]);
  });

  it('a beat for an unknown task is 404 unless auto-register is on', async () => {
    h = await createHarness();
    expect((await rejection(h.service.heartbeats.beat('nobody'))).status).toBe(404);
    await h.dispose();
    h = await createHarness({ heartbeat: { autoRegister: true } });
    await h.service.heartbeats.beat('newcomer', { progress: 0.1 });
    expect(h.service.heartbeats.get('newcomer')).toMatchObject({ status: 'running', progress: 0.1, beats: 1 });
  });

  it('refuses registrations that name a lock the task does not hold, and bad fields', async () => {
    h = await createHarness();
    const conflict = await rejection(h.service.heartbeats.register({ taskId: 't', owner: 'x', gpuId: 0, fencingToken: 3 }));
    expect(conflict.status).toBe(409);
    const bad = await rejection(h.service.heartbeats.register({ taskId: 'has space', owner: '', timeoutSeconds: -1 }));
    expect(bad.status).toBe(400);
    expect(bad.details?.map((d) => d.field).sort()).toEqual(['task_id', 'task_name', 'timeout_seconds']);
    expect((await rejection(h.service.heartbeats.register({ taskId: 't', owner: 'x', gpuId: 9 }))).status).toBe(404);
  });

  it('cancel recovery: a missed heartbeat marks the task timed out, releases its lock and calls the owner', async () => {
    h = await createHarness({ heartbeat: { timeoutSeconds: 120 }, monitor: { checkIntervalSeconds: 30 } });
    const { locks, heartbeats, timeouts } = h.service;
    const lease = await locks.acquire({ gpuId: 0, holder: 'training', purpose: 'job-1' }, { taskId: 'job-1' });
    await heartbeats.register({ taskId: 'job-1', owner: 'training', gpuId: 0, fencingToken: lease.fencingToken });
    let cancelled = 0;
    heartbeats.onTimeout('job-1', () => cancelled++);
    const events: TimeoutEvent[] = [];
    timeouts.onTimeout((e) => events.push(e));
    await h.advance(90_000, 30_000);
    expect(heartbeats.get('job-1')?.status).toBe('running');
    await h.advance(60_000, 30_000); // 150 s without a beat; the monitor loop checks every 30 s
    expect(heartbeats.get('job-1')).toMatchObject({ status: 'timed_out' });
    expect(locks.current(0)).toBeNull();
    expect(cancelled).toBe(1);
    expect(events).toEqual([expect.objectContaining({ kind: 'task', taskId: 'job-1', recovery: 'cancel' })]);
    expect(timeouts.actionHistory().map((a) => a.action).reverse()).toEqual(['force_release_gpu_lock', 'update_task_status', 'log_timeout_event', 'cancel_task', 'timeout_recovery']);
    expect(timeouts.getStats()).toMatchObject({ totalTimeoutsDetected: 1, tasksRecovered: 1, resourcesReleased: 1 });
    expect(locks.history(0)[0]).toMatchObject({ action: 'timeout', holder: 'training' });
    const metrics = await h.metrics.text();
    expect(metrics).toMatch(/console_monitoring_timeout_actions_total\{action="force_release_gpu_lock"\} 1/);
    expect(h.logs.some((l) => l.includes('task heartbeat timed out'))).toBe(true);
    expect(h.periodic.get('gpu-monitor')?.run_count).toBeGreaterThanOrEqual(5);
    // the task's late beat is refused: it must not keep using the GPU
    expect((await rejection(heartbeats.beat('job-1'))).status).toBe(409);
  });

  it('concurrent checks (loop, HTTP, cleanup) handle one timeout once', async () => {
    h = await createHarness({ heartbeat: { timeoutSeconds: 10 }, monitor: { enabled: false } });
    await h.service.heartbeats.register({ taskId: 'once', owner: 'app' });
    let cancelled = 0;
    h.service.heartbeats.onTimeout('once', () => cancelled++);
    h.clock.advance(11_000);
    const results = await Promise.all([h.service.check(), h.service.check(), h.service.cleanup('admin')]);
    expect(cancelled).toBe(1);
    expect(results[0].timeoutsDetected + results[1].timeoutsDetected).toBe(1);
    expect(h.service.timeouts.getStats()).toMatchObject({ totalTimeoutsDetected: 1, tasksRecovered: 1 });
  });

  it('retry recovery re-arms a task up to max_retry_attempts, then cancels', async () => {
    h = await createHarness({ timeout: { recovery: 'retry', maxRetryAttempts: 2 }, heartbeat: { timeoutSeconds: 10 }, monitor: { enabled: false } });
    const { heartbeats, timeouts } = h.service;
    await heartbeats.register({ taskId: 'flaky', owner: 'app' });
    let cancelled = 0;
    heartbeats.onTimeout('flaky', () => cancelled++);
    const recoveries: string[] = [];
    timeouts.onTimeout((e) => recoveries.push(`${e.recovery}${e.attempt ?? ''}`));
    for (let i = 0; i < 3; i++) {
      h.clock.advance(11_000);
      await h.service.check();
    }
    expect(recoveries).toEqual(['retry1', 'retry2', 'cancel']);
    expect(heartbeats.get('flaky')).toMatchObject({ status: 'timed_out', retries: 2 });
    expect(cancelled).toBe(1);
  });

  it('notify recovery only reports; with auto-recovery off nothing is touched', async () => {
    h = await createHarness({ timeout: { recovery: 'notify' }, heartbeat: { timeoutSeconds: 10 }, monitor: { enabled: false } });
    const events: TimeoutEvent[] = [];
    h.service.timeouts.onTimeout((e) => events.push(e));
    await h.service.heartbeats.register({ taskId: 'n', owner: 'app' });
    h.clock.advance(11_000);
    await h.service.check();
    expect(events.map((e) => e.recovery)).toEqual(['notify']);
    expect(h.service.timeouts.actionHistory()[1]?.action).toBe('notify');
    await h.dispose();

    h = await createHarness({ timeout: { autoRecovery: false }, heartbeat: { timeoutSeconds: 10 }, monitor: { enabled: false } });
    const lease = await h.service.locks.acquire({ gpuId: 0, holder: 'app', purpose: '' });
    await h.service.heartbeats.register({ taskId: 'n', owner: 'app', gpuId: 0, fencingToken: lease.fencingToken });
    h.clock.advance(11_000);
    const r = await h.service.check();
    expect(r).toMatchObject({ timeoutsDetected: 1, actionsTaken: [] });
    expect(h.service.timeouts.getStats().currentTimeouts).toBe(1);
    expect(h.service.locks.current(0)?.token).toBe(lease.fencingToken);
    expect(h.service.heartbeats.overview().orphaned).toEqual([expect.objectContaining({ taskId: 'n', reason: 'heartbeat_timeout', timeout: true })]);
  });

  it('finds orphans both ways and cleanup releases the lock of a dead task and forgets ended tasks', async () => {
    h = await createHarness({ monitor: { enabled: false } });
    const { locks, heartbeats } = h.service;
    // lock without a live task: taken for task "ghost" that never beats
    await locks.acquire({ gpuId: 0, holder: 'ghost-app', purpose: '' }, { taskId: 'ghost' });
    // task alive without its lock
    await h.config.update({ monitoring: { locks: { gpuIds: [0, 1] } } });
    const l1 = await locks.acquire({ gpuId: 1, holder: 'worker', purpose: '' });
    await heartbeats.register({ taskId: 'worker-1', owner: 'worker', gpuId: 1, fencingToken: l1.fencingToken });
    await locks.forceRelease(1, { actor: 'admin', reason: 'test' });
    await heartbeats.register({ taskId: 'done', owner: 'x' });
    await heartbeats.complete('done', 'completed');
    const o = heartbeats.overview();
    expect(o.orphaned.map((x) => `${x.taskId}:${x.reason}`).sort()).toEqual(['ghost:lock_without_task', 'worker-1:lock_lost']);
    expect(o.dead.map((t) => t.taskId)).toEqual(['done']);
    const r = await h.service.cleanup('admin');
    expect(r).toEqual({ cleanedDeadTasks: 1, releasedLocks: 1 });
    expect(locks.current(0)).toBeNull();
    expect(heartbeats.get('done')).toBeUndefined();
  });

  it('the monitor loop frees a lock whose TTL ran out, counts it and tells listeners', async () => {
    h = await createHarness({ monitor: { checkIntervalSeconds: 30 } });
    const ended: string[] = [];
    h.service.locks.onReleased((e) => ended.push(`${e.reason}:${e.lock.holder}`));
    await h.service.locks.acquire({ gpuId: 0, holder: 'forgetful', purpose: '', ttlSeconds: 10 });
    await h.advance(60_000, 30_000);
    expect(ended).toEqual(['expired:forgetful']);
    expect(h.service.timeouts.getStats()).toMatchObject({ totalTimeoutsDetected: 1, resourcesReleased: 1 });
    expect(h.service.timeouts.actionHistory()[0]).toMatchObject({ action: 'force_release_gpu_lock', lockKey: 'gpu_lock:0', result: 'success', detail: expect.stringContaining('TTL') });
    expect(h.service.locks.stats(0).timeoutCount).toBe(1);
  });

  it('releases a task lock older than gpu_timeout whose task never beats', async () => {
    h = await createHarness({ locks: { gpuTimeoutSeconds: 300 }, monitor: { enabled: false } });
    await h.service.locks.acquire({ gpuId: 0, holder: 'whisper', purpose: '', ttlSeconds: 3000 }, { taskId: 'tx-9' });
    h.clock.advance(299_000);
    expect((await h.service.check()).timeoutsDetected).toBe(0);
    h.clock.advance(2_000);
    expect(h.service.lockHealth(0).status).toBe('critical');
    const r = await h.service.check();
    expect(r.timeoutsDetected).toBe(1);
    expect(h.service.locks.current(0)).toBeNull();
  });

  it('heartbeats survive a restart; an overdue task is timed out by the first check after it', async () => {
    h = await createHarness({ heartbeat: { timeoutSeconds: 60 } });
    const lease = await h.service.locks.acquire({ gpuId: 0, holder: 'train', purpose: '', ttlSeconds: 3000 });
    await h.service.heartbeats.register({ taskId: 'job', owner: 'train', gpuId: 0, fencingToken: lease.fencingToken });
    await h.service.heartbeats.beatTask('job', { progress: 0.3 });
    h = await h.restart();
    expect(h.service.heartbeats.get('job')).toMatchObject({ status: 'running', progress: 0.3, fencingToken: lease.fencingToken });
    await h.service.heartbeats.beatTask('job', { progress: 0.4, fencingToken: lease.fencingToken });
    h = await h.restart();
    await h.advance(61_000 + 30_000, 30_000);
    expect(h.service.heartbeats.get('job')?.status).toBe('timed_out');
    expect(h.service.locks.current(0)).toBeNull();
    expect(h.service.timeouts.actionHistory().length).toBeGreaterThan(0);
  });
});
