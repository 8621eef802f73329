import { afterEach, describe, expect, it } from 'vitest';
import { loadSettings } from '../../../electron/core/base/config.js';
import { alertsFor } from '../../../renderer/src/features/overview/alerts.js';
import { snapshot as consoleSnapshot } from '../renderer/fakes.js';
import { createHarness, rejection, type Harness } from './harness.js';

/** Monitoring semantics (seed 004) that the hardening issue found wrong. */
describe('monitoring semantics', () => {
  let h: Harness;
  afterEach(async () => {
    await h.dispose();
  });

  it('ended tasks are listed as dead for heartbeat.endedRetentionSeconds, then the monitor loop forgets them (also in the store)', async () => {
    h = await createHarness({ heartbeat: { endedRetentionSeconds: 600 }, monitor: { checkIntervalSeconds: 30 } });
    const { heartbeats } = h.service;
    await heartbeats.register({ taskId: 'done', owner: 'app' });
    await heartbeats.complete('done', 'completed');
    await heartbeats.register({ taskId: 'alive', owner: 'app', timeoutSeconds: 7200 });
    await h.advance(570_000, 30_000);
    expect(heartbeats.overview().dead.map((t) => t.taskId)).toEqual(['done']);
    await h.advance(60_000, 30_000);
    expect(heartbeats.get('done')).toBeUndefined();
    expect(heartbeats.overview().dead).toEqual([]);
    expect(heartbeats.get('alive')?.status).toBe('running');
    h = await h.restart();
    expect(h.service.heartbeats.get('done')).toBeUndefined();
    // the field has a default and is validated by the config schema
    expect(loadSettings({ env: {}, dataDir: h.dir }).config.monitoring.heartbeat.endedRetentionSeconds).toBe(3600);
    expect(() => loadSettings({ env: {}, dataDir: h.dir, overrides: { monitoring: { heartbeat: { endedRetentionSeconds: 0 } } } })).toThrow(/endedRetentionSeconds/);
  });

  it('failure_rate stays within [0, 1]: a lock whose task is unknown counts in the total too', async () => {
    h = await createHarness({ locks: { gpuIds: [0, 1, 2] }, monitor: { enabled: false } });
    const { locks, heartbeats } = h.service;
    await heartbeats.register({ taskId: 'healthy', owner: 'app' });
    await locks.acquire({ gpuId: 0, holder: 'ghost-app', purpose: '' }, { taskId: 'ghost-1' });
    await locks.acquire({ gpuId: 1, holder: 'ghost-app', purpose: '' }, { taskId: 'ghost-2' });
    // a task that ended while holding its lock is one dead task and one orphan, counted once in the total
    const l2 = await locks.acquire({ gpuId: 2, holder: 'quitter', purpose: '' }, { taskId: 'quitter' });
    await heartbeats.register({ taskId: 'quitter', owner: 'quitter', gpuId: 2, fencingToken: l2.fencingToken });
    await heartbeats.complete('quitter', 'completed');
    const o = heartbeats.overview();
    expect(o.orphaned).toHaveLength(3);
    expect(o.total).toBe(4); // healthy, quitter, ghost-1, ghost-2
    const hb = h.service.heartbeatHealth();
    expect(hb.failureRate).toBeCloseTo(3 / 4, 5);
    expect(hb.failureRate).toBeLessThanOrEqual(1);
  });

  it('retry recovery keeps a GPU task\'s lock, so its next beat is accepted; the lock goes when the retries run out', async () => {
    h = await createHarness({ timeout: { recovery: 'retry', maxRetryAttempts: 2 }, heartbeat: { timeoutSeconds: 10 }, monitor: { enabled: false } });
    const { locks, heartbeats } = h.service;
    const lease = await locks.acquire({ gpuId: 0, holder: 'gpu-app', purpose: '', ttlSeconds: 3000 });
    await heartbeats.register({ taskId: 'gpu-task', owner: 'gpu-app', gpuId: 0, fencingToken: lease.fencingToken });
    h.clock.advance(11_000);
    await h.service.check();
    expect(heartbeats.get('gpu-task')).toMatchObject({ status: 'running', retries: 1 });
    expect(locks.current(0)?.token).toBe(lease.fencingToken);
    // the task came back: its beat is accepted and it is active again
    expect(await heartbeats.beatTask('gpu-task', { progress: 0.5, fencingToken: lease.fencingToken })).toMatchObject({ status: 'running', progress: 0.5 });
    expect(heartbeats.overview().active.map((t) => t.taskId)).toEqual(['gpu-task']);
    // silent again: second retry, then the retries are spent → timed out and the lock released
    h.clock.advance(11_000);
    await h.service.check();
    expect(locks.current(0)?.token).toBe(lease.fencingToken);
    h.clock.advance(11_000);
    await h.service.check();
    expect(heartbeats.get('gpu-task')).toMatchObject({ status: 'timed_out', retries: 2 });
    expect(locks.current(0)).toBeNull();
    expect((await rejection(heartbeats.beatTask('gpu-task', { fencingToken: lease.fencingToken }))).status).toBe(409);
  });

  it('the lock-age rule covers locks taken without a task id: linked by fencing token (training), or with no heartbeat at all', async () => {
    h = await createHarness({ locks: { gpuIds: [0, 1], gpuTimeoutSeconds: 300 }, heartbeat: { timeoutSeconds: 120 }, monitor: { enabled: false } });
    const { locks, heartbeats } = h.service;
    // training's way: a lock without task id, then a heartbeat registered with its token
    const train = await locks.acquire({ gpuId: 0, holder: 'job-1', purpose: 'training', ttlSeconds: 3000 });
    await heartbeats.register({ taskId: 'job-1', owner: 'training', gpuId: 0, fencingToken: train.fencingToken });
    // a local app's lock without task id and without any heartbeat
    await locks.acquire({ gpuId: 1, holder: 'silent-app', purpose: '', ttlSeconds: 3000 });
    for (let i = 0; i < 6; i++) {
      h.clock.advance(60_000);
      await heartbeats.beat('job-1', { progress: i / 6 });
    }
    expect(h.service.lockHealth(1).status).toBe('critical');
    expect(h.service.lockHealth(0).status).not.toBe('critical');
    const r = await h.service.check();
    expect(r.timeoutsDetected).toBe(1);
    expect(r.actionsTaken).toEqual([expect.objectContaining({ action: 'force_release_gpu_lock', lockKey: 'gpu_lock:1', result: 'success' })]);
    expect(locks.current(1)).toBeNull();
    expect(locks.current(0)?.token).toBe(train.fencingToken);
    // training stops beating: its task times out (cancel) and the lock goes with it
    h.clock.advance(121_000);
    await h.service.check();
    expect(heartbeats.get('job-1')?.status).toBe('timed_out');
    expect(locks.current(0)).toBeNull();
  });

  it('after a restart longer than the heartbeat timeout, running tasks get one beat interval before they can time out', async () => {
    const cfg = { heartbeat: { timeoutSeconds: 60, intervalSeconds: 15 }, monitor: { checkIntervalSeconds: 30 } };
    h = await createHarness(cfg);
    const lease = await h.service.locks.acquire({ gpuId: 0, holder: 'train', purpose: '', ttlSeconds: 3000 });
    await h.service.heartbeats.register({ taskId: 'job', owner: 'train', gpuId: 0, fencingToken: lease.fencingToken });
    await h.service.heartbeats.register({ taskId: 'gone', owner: 'app' });
    await h.stop();
    h.clock.advance(10 * 60_000); // the console was down for 10 minutes
    h = await createHarness(cfg, h.clock, h.dir);
    await h.advance(1); // the check that runs at start
    expect(h.service.monitorState().checksPerformed).toBe(1);
    expect(h.service.heartbeats.get('job')?.status).toBe('running');
    expect(h.service.locks.current(0)?.token).toBe(lease.fencingToken);
    await h.advance(10_000);
    await h.service.heartbeats.beatTask('job', { progress: 0.5, fencingToken: lease.fencingToken });
    // the next check: the task that beat is fine, the one that did not is timed out
    await h.advance(20_000);
    expect(h.service.monitorState().checksPerformed).toBe(2);
    expect(h.service.heartbeats.get('job')?.status).toBe('running');
    expect(h.service.heartbeats.get('gone')?.status).toBe('timed_out');
  });

  it('the snapshot carries the monitoring issues the Overview\'s alerts show', async () => {
    h = await createHarness({ monitor: { enabled: false } });
    const s = h.service.snapshot();
    expect(s).toMatchObject({ status: 'critical', issues: [expect.stringContaining('monitor is stopped')] });
    const alerts = alertsFor(consoleSnapshot(1, { services: { monitoring: s } }), null);
    expect(alerts).toContain(s.issues[0]);
    h.service.startMonitor();
    await h.advance(1);
    expect(h.service.snapshot()).toMatchObject({ status: 'healthy', issues: [] });
  });
});
