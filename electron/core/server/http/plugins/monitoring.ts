import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import {
  AcquireBody,
  AcquireResponse,
  ForceReleaseBody,
  HeartbeatBeatBody,
  HeartbeatBeatResponse,
  HeartbeatStartBody,
  LockKeyQuery,
  ReleaseBody,
  ReleaseResponse,
  RenewBody,
  TaskIdParams,
  TelemetryQuery,
  LockStatusResponse,
  MonitoringSnapshotResponse,
  type HeartbeatAllResponse,
} from '../../../../../shared/contracts/monitoring.js';
import type { Clock } from '../../../base/clock.js';
import type { ConfigStore } from '../../../base/config.js';
import { AppError, ErrorCode } from '../../../base/errors.js';
import type { MonitoringService } from '../../../services/monitoring/monitoringService.js';
import type { GpuLockService } from '../../../services/monitoring/gpuLocks.js';
import { clusterLockKeyOf, lockKeyOf, parseClusterLockKey } from '../../../services/monitoring/lockStore.js';
import { CONFIGURED_ACTIONS } from '../../../services/monitoring/timeoutManager.js';
import type { Auth } from '../../auth.js';

export interface MonitoringPluginOptions extends Record<string, unknown> {
  monitoring: MonitoringService;
  config: ConfigStore;
  clock: Clock;
  auth: Auth;
}

const P = '/api/v1/monitoring';
const sec = (ms: number | null): number | null => (ms === null ? null : ms / 1000);
const round3 = (n: number) => Math.round(n * 1000) / 1000;

/** Monitoring API (contract §7) plus the extension endpoints local apps use to coordinate GPU use. */
export const monitoringPlugin: FastifyPluginAsync<MonitoringPluginOptions> = async (fastify, { monitoring: m, config, clock, auth }) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const read = { preHandler: auth.apiKey };
  const now = () => clock.now() / 1000;
  const cfg = () => config.get().monitoring;
  // Body-less POSTs (curl -X POST .../start) are an empty JSON object, so the body schema applies.
  app.addHook('preValidation', (request, _reply, done) => {
    if (request.method === 'POST' && request.body === undefined) request.body = {};
    done();
  });

  /** lock_key → lock service and gpu id (schema already checked the shape); unknown GPU or node → 404. */
  const lockOf = async (key: string | undefined): Promise<{ locks: GpuLockService; gpuId: number }> => {
    const lockKey = key ?? 'gpu_lock:0';
    const parsed = parseClusterLockKey(lockKey);
    if (parsed === undefined) throw new AppError(ErrorCode.INVALID_REQUEST, `Malformed lock_key: ${lockKey}`, { details: [{ type: 'validation', field: 'lock_key', description: 'must be gpu_lock:<int> or gpu_lock:<node>:<int>' }] });
    const locks = await m.locksFor(parsed.node);
    // In a cluster other consoles change the locks: read them from Redis, not from this console's cache.
    await locks.refresh();
    if (!locks.isKnown(parsed.gpuId)) throw new AppError(ErrorCode.NOT_FOUND, `Unknown GPU lock: ${lockKey} (known: ${locks.gpuIds().map((id) => locks.key(id)).join(', ') || 'none'})`);
    return { locks, gpuId: parsed.gpuId };
  };
  /** Like lockOf, for this console's own GPUs only (heartbeats and timeout checks are per console). */
  const gpuOf = async (key: string | undefined): Promise<number> => {
    const { locks, gpuId } = await lockOf(key);
    if (locks !== m.locks) throw new AppError(ErrorCode.INVALID_REQUEST, `${key} is another console's GPU: heartbeats and timeout checks name this console's GPUs (gpu_lock:<id>)`, { details: [{ type: 'validation', field: 'lock_key', description: 'must name a GPU of this console' }] });
    return gpuId;
  };

  const monitorHealth = () => {
    const s = m.monitorState();
    const health = m.overallHealth();
    const hb = m.heartbeats.overview();
    const watched = hb.active.length + hb.orphaned.filter((o) => o.timeout).length;
    return {
      status: health.status,
      issues: health.issues,
      metrics: {
        check_frequency: `${cfg().monitor.checkIntervalSeconds}s`,
        gpu_lock_coverage: s.running ? '100%' : '0%',
        task_monitoring_coverage: `${watched === 0 ? 100 : Math.round((hb.active.length / watched) * 100)}%`,
        avg_response_time: `${Math.round(s.avgCheckMs)}ms`,
      },
      timestamp: now(),
    };
  };

  // --- §7.1 / 7.2 locks ---
  // Readers see holder, age and TTL, never the fencing token (the holder's proof for renew/release).
  app.get(`${P}/gpu-lock/status`, { ...read, schema: { querystring: LockKeyQuery, response: { 200: LockStatusResponse } } }, async (request): Promise<LockStatusResponse> => {
    const { locks, gpuId } = await lockOf(request.query.lock_key);
    const v = m.lockSummary(gpuId, locks);
    const h = m.lockHealth(gpuId, locks);
    return {
      lock_key: v.lockKey,
      is_locked: v.isLocked,
      lock_holder: v.holder,
      ttl_seconds: v.ttlRemainingSeconds === null ? null : round3(v.ttlRemainingSeconds),
      timestamp: now(),
      health: { status: h.status, last_check: sec(m.monitorState().lastCheckWall), issues: h.issues },
      statistics: {
        total_attempts: h.stats.totalAttempts,
        success_count: h.stats.successCount,
        timeout_count: h.stats.timeoutCount,
        failure_count: h.stats.failureCount,
        average_execution_time: round3(h.stats.averageExecutionTime),
      },
      recent_history: locks.history(gpuId).map((e) => ({ action: e.action, task_name: e.holder, timestamp: e.atWall / 1000, success: e.success })),
      lock_type: 'GPU_LOCK',
      lock_age: v.lockAgeSeconds === null ? null : round3(v.lockAgeSeconds),
      purpose: v.purpose,
      task_id: v.taskId,
      acquired_at: sec(v.acquiredWall),
      lock_ttl: v.ttlSeconds,
    };
  });

  app.get(`${P}/gpu-lock/health`, { ...read, schema: { querystring: LockKeyQuery } }, async (request) => {
    const { locks, gpuId } = await lockOf(request.query.lock_key);
    const h = m.lockHealth(gpuId, locks);
    const v = m.lockView(gpuId, locks);
    const s = h.stats;
    return {
      overall_status: h.status,
      issues_count: h.issues.length,
      issues: h.issues,
      total_attempts: s.totalAttempts,
      success_rate: s.totalAttempts === 0 ? 1 : round3(s.successCount / s.totalAttempts),
      timeout_rate: s.totalAttempts === 0 ? 0 : round3(s.timeoutCount / s.totalAttempts),
      average_execution_time: round3(s.averageExecutionTime),
      recent_success_rate: round3(s.recentSuccessRate),
      lock_holder: v.lock?.holder ?? null,
      lock_age: v.lockAgeSeconds === null ? null : round3(v.lockAgeSeconds),
      occupancy: round3(h.occupancy),
      timestamp: now(),
    };
  });

  // --- extension: acquire / renew / release with fencing tokens ---
  app.post(`${P}/gpu-lock/acquire`, { ...read, schema: { body: AcquireBody, response: { 200: AcquireResponse } } }, async (request) => {
    const b = request.body;
    const { locks, gpuId } = await lockOf(b.lock_key);
    const lease = await locks.acquire({ gpuId, holder: b.task_name, purpose: b.purpose ?? '', ttlSeconds: b.ttl_seconds }, { taskId: b.task_id, waitSeconds: b.wait_seconds });
    return { acquired: true, lock_key: b.lock_key, fencing_token: lease.fencingToken, expires_in: lease.ttlSeconds, lock_holder: lease.holder, ttl_seconds: lease.ttlSeconds };
  });

  app.post(`${P}/gpu-lock/renew`, { ...read, schema: { body: RenewBody, response: { 200: AcquireResponse } } }, async (request) => {
    const b = request.body;
    const { locks, gpuId } = await lockOf(b.lock_key);
    const lease = await locks.renew(gpuId, b.task_name, b.fencing_token, b.ttl_seconds);
    return { acquired: true, lock_key: b.lock_key, fencing_token: lease.fencingToken, expires_in: lease.ttlSeconds, lock_holder: lease.holder, ttl_seconds: lease.ttlSeconds };
  });

  app.post(`${P}/gpu-lock/release`, { ...read, schema: { body: ReleaseBody, response: { 200: ReleaseResponse } } }, async (request) => {
    const b = request.body;
    const { locks, gpuId } = await lockOf(b.lock_key);
    await locks.release(gpuId, b.task_name, b.fencing_token);
    return { released: true, lock_key: b.lock_key, fencing_token: b.fencing_token };
  });

  // --- §7.6 forced release (admin, audited) ---
  app.post(`${P}/lock/release`, { preHandler: auth.admin, schema: { body: ForceReleaseBody } }, async (request) => {
    const b = request.body;
    const taskName = b.task_name ?? 'manual';
    const { locks, gpuId } = await lockOf(b.lock_key);
    const freed = await locks.forceRelease(gpuId, { actor: `admin:${taskName}`, reason: b.reason ?? 'manual release' });
    return freed
      ? { success: true, message: `锁 ${b.lock_key} 已成功释放`, lock_key: b.lock_key, task_name: taskName, released_holder: freed.holder, fencing_token: freed.token }
      : { success: false, message: `释放锁 ${b.lock_key} 失败`, lock_key: b.lock_key, task_name: taskName, reason: 'lock is not held' };
  });

  // --- §7.3 monitor ---
  app.get(`${P}/monitor/status`, read, async () => {
    const s = m.monitorState();
    const hb = m.heartbeats.overview();
    const t = m.timeouts.getStats();
    return {
      monitor_status: { running: s.running, start_time: sec(s.startWall), last_check: sec(s.lastCheckWall), checks_performed: s.checksPerformed },
      monitor_stats: { gpu_locks_monitored: m.locks.gpuIds().length, tasks_monitored: hb.active.length + hb.orphaned.filter((o) => o.timeout).length, timeouts_detected: t.totalTimeoutsDetected, tasks_recovered: t.tasksRecovered },
      config: { check_interval: cfg().monitor.checkIntervalSeconds, gpu_timeout: cfg().locks.gpuTimeoutSeconds, heartbeat_timeout: cfg().heartbeat.timeoutSeconds, enabled: cfg().monitor.enabled },
      is_running: s.running,
      uptime: round3(s.uptimeSeconds),
    };
  });
  app.get(`${P}/monitor/health`, read, async () => monitorHealth());
  // Starting/stopping the monitor changes whether timeouts are handled: an admin write (§1.2).
  app.post(`${P}/monitor/start`, { preHandler: auth.admin }, async () => {
    m.startMonitor();
    return { message: '监控器已启动', success: true };
  });
  app.post(`${P}/monitor/stop`, { preHandler: auth.admin }, async () => {
    m.stopMonitor();
    return { message: '监控器已停止', success: true };
  });

  // --- §7.4 heartbeats ---
  app.get(`${P}/heartbeat/task/:task_id`, { ...read, schema: { params: TaskIdParams } }, async (request) => {
    const t = m.heartbeats.get(request.params.task_id);
    if (!t) throw new AppError(ErrorCode.NOT_FOUND, `Unknown task: ${request.params.task_id}`);
    const running = t.status === 'running';
    return {
      task_id: t.taskId,
      heartbeat_exists: running,
      is_registered: running,
      status: t.status,
      heartbeat_data: running
        ? { task_name: t.owner, start_time: t.startWall / 1000, last_update: t.lastUpdateWall / 1000, gpu_lock: t.gpuId === null ? null : lockKeyOf(t.gpuId), progress: t.progress, beats: t.beats, detail: t.progressDetail }
        : null,
      last_update: running ? t.lastUpdateWall / 1000 : null,
      is_running: running,
      ...(running ? {} : { end_reason: t.endReason, ended_at: sec(t.endedWall) }),
    };
  });

  app.get(`${P}/heartbeat/all`, read, async (): Promise<HeartbeatAllResponse> => {
    const o = m.heartbeats.overview();
    // Cluster: every node's tasks, each with its node id; other nodes' tasks are keyed
    // `<node>/<task id>` in active_tasks (this node's keep their plain id, as on a single box).
    const others = await m.otherNodesTasks();
    const self = m.nodeId;
    const node = self === null ? {} : { node: self };
    const active: HeartbeatAllResponse['active_tasks'] = {};
    for (const t of o.active) active[t.taskId] = { task_name: t.owner, last_update: t.lastUpdateWall / 1000, status: t.status, progress: t.progress, gpu_lock: t.gpuId === null ? null : lockKeyOf(t.gpuId), ...node };
    const dead: HeartbeatAllResponse['dead_tasks'] = o.dead.map((t) => ({ task_id: t.taskId, task_name: t.owner, status: t.status, last_update: t.lastUpdateWall / 1000, reason: t.endReason, ...node }));
    const orphaned: HeartbeatAllResponse['orphaned_tasks'] = o.orphaned.map((x) => ({ task_id: x.taskId, last_update: sec(x.lastUpdateWall), timeout: x.timeout, reason: x.reason, lock_key: x.lockKey, ...node }));
    let total = o.total;
    let intervalSum = o.averageInterval * o.active.filter((t) => t.beats >= 2).length;
    let intervalCount = o.active.filter((t) => t.beats >= 2).length;
    if (others) {
      const lockKey = (t: { node: string; gpuId: number | null }) => (t.gpuId === null ? null : clusterLockKeyOf(t.node, t.gpuId));
      for (const t of others.active) {
        active[`${t.node}/${t.taskId}`] = { task_name: t.owner, last_update: t.lastUpdateWall / 1000, status: t.status, progress: t.progress, gpu_lock: lockKey(t), node: t.node, task_id: t.taskId };
        if (t.beats >= 2) {
          intervalSum += (t.lastUpdateWall - t.startWall) / t.beats / 1000;
          intervalCount++;
        }
      }
      for (const t of others.dead) dead.push({ task_id: t.taskId, task_name: t.owner, status: t.status, last_update: t.lastUpdateWall / 1000, reason: t.endReason, node: t.node });
      for (const t of others.orphaned) orphaned.push({ task_id: t.taskId, last_update: t.lastUpdateWall / 1000, timeout: true, reason: 'heartbeat_timeout', lock_key: lockKey(t), node: t.node });
      total += others.active.length + others.dead.length + others.orphaned.length;
    }
    return {
      active_tasks: active,
      dead_tasks: dead,
      orphaned_tasks: orphaned,
      statistics: {
        total_tasks: total,
        active_count: Object.keys(active).length,
        dead_count: dead.length,
        orphaned_count: orphaned.length,
        average_heartbeat_interval: round3(intervalCount === 0 ? 0 : intervalSum / intervalCount),
      },
      timestamp: now(),
    };
  });

  app.post(`${P}/heartbeat/task/:task_id/start`, { ...read, schema: { params: TaskIdParams, body: HeartbeatStartBody } }, async (request) => {
    const id = request.params.task_id;
    const b = request.body ?? {};
    await m.heartbeats.register({
      taskId: id,
      owner: b.task_name ?? id,
      gpuId: b.gpu_lock === undefined ? undefined : await gpuOf(b.gpu_lock),
      fencingToken: b.fencing_token,
      timeoutSeconds: b.timeout_seconds,
      metadata: b.metadata,
    });
    return { message: `任务 ${id} 心跳已启动`, success: true, task_id: id, timeout_seconds: (m.heartbeats.get(id)?.timeoutMs ?? 0) / 1000, interval_seconds: cfg().heartbeat.intervalSeconds };
  });

  app.post(`${P}/heartbeat/task/:task_id`, { ...read, schema: { params: TaskIdParams, body: HeartbeatBeatBody, response: { 200: HeartbeatBeatResponse } } }, async (request) => {
    const b = request.body ?? {};
    const t = await m.heartbeats.beatTask(request.params.task_id, { progress: b.progress, status: b.status, fencingToken: b.fencing_token, detail: b.detail });
    return { success: true, task_id: t.taskId, status: t.status, last_update: t.lastUpdateWall / 1000 };
  });

  app.delete(`${P}/heartbeat/task/:task_id`, { ...read, schema: { params: TaskIdParams } }, async (request) => {
    const id = request.params.task_id;
    const t = m.heartbeats.get(id);
    if (!t) throw new AppError(ErrorCode.NOT_FOUND, `Unknown task: ${id}`);
    if (t.status === 'running') await m.heartbeats.complete(id, 'completed');
    return { message: `任务 ${id} 心跳已停止`, success: true };
  });

  app.post(`${P}/heartbeat/cleanup`, { preHandler: auth.admin }, async () => {
    const r = await m.cleanup('admin');
    return { message: '心跳清理完成', success: true, cleaned_dead_tasks: r.cleanedDeadTasks, released_locks: r.releasedLocks };
  });

  // --- §7.5 timeouts ---
  app.get(`${P}/timeout/status`, read, async () => {
    const s = m.timeouts.getStats();
    return {
      timeout_stats: { total_timeouts_detected: s.totalTimeoutsDetected, tasks_recovered: s.tasksRecovered, resources_released: s.resourcesReleased, current_timeouts: s.currentTimeouts },
      action_history: m.timeouts.actionHistory().map((a) => ({ timestamp: a.atWall / 1000, action: a.action, task_id: a.taskId, lock_key: a.lockKey, result: a.result, detail: a.detail ?? null })),
      configured_actions: [...CONFIGURED_ACTIONS],
      recovery: cfg().timeout.recovery,
      timestamp: now(),
    };
  });
  app.get(`${P}/timeout/config`, read, async () => ({
    gpu_lock_timeout: cfg().locks.gpuTimeoutSeconds,
    task_heartbeat_timeout: cfg().heartbeat.timeoutSeconds,
    monitor_check_interval: cfg().monitor.checkIntervalSeconds,
    auto_recovery_enabled: cfg().timeout.autoRecovery,
    max_retry_attempts: cfg().timeout.maxRetryAttempts,
    recovery: cfg().timeout.recovery,
    timestamp: now(),
  }));
  app.post(`${P}/timeout/check`, { ...read, schema: { querystring: LockKeyQuery } }, async (request) => {
    const r = await m.check([await gpuOf(request.query.lock_key)]);
    return {
      checked_locks: r.checkedLocks,
      timeouts_detected: r.timeoutsDetected,
      actions_taken: r.actionsTaken.map((a) => ({ action: a.action, task_id: a.taskId, lock_key: a.lockKey, result: a.result, detail: a.detail ?? null })),
      timestamp: now(),
    };
  });

  // --- §7.7 statistics and health ---
  app.get(`${P}/statistics`, read, async () => {
    const ids = m.locks.gpuIds();
    const stats = ids.map((id) => m.locks.stats(id));
    const total = stats.reduce((a, s) => a + s.totalAttempts, 0);
    const ok = stats.reduce((a, s) => a + s.successCount, 0);
    const to = stats.reduce((a, s) => a + s.timeoutCount, 0);
    const s = m.monitorState();
    const hb = m.heartbeats.overview();
    const t = m.timeouts.getStats();
    const worst = ids.map((id) => m.lockHealth(id).status).reduce<'healthy' | 'warning' | 'critical'>((a, b) => (a === 'critical' || b === 'critical' ? 'critical' : a === 'warning' || b === 'warning' ? 'warning' : 'healthy'), 'healthy');
    return {
      timestamp: now(),
      gpu_lock: { overall_status: worst, total_attempts: total, success_rate: total === 0 ? 1 : round3(ok / total), timeout_rate: total === 0 ? 0 : round3(to / total) },
      monitor: { running: s.running, uptime: round3(s.uptimeSeconds), checks_performed: s.checksPerformed, issues_detected: s.issuesDetected },
      heartbeat: { active_tasks: hb.active.length, dead_tasks: hb.dead.length, orphaned_tasks: hb.orphaned.length, average_interval: round3(hb.averageInterval) },
      timeout: { total_timeouts: t.totalTimeoutsDetected, tasks_recovered: t.tasksRecovered, resources_released: t.resourcesReleased },
    };
  });
  app.get(`${P}/health`, read, async () => {
    const h = m.overallHealth();
    const hb = m.heartbeatHealth();
    return {
      status: h.status,
      issues: h.issues,
      components: { monitor: monitorHealth(), heartbeat: { total_tasks: hb.total, active_count: hb.active, failure_rate: round3(hb.failureRate), timestamp: now() } },
      timestamp: now(),
    };
  });

  // --- extension: telemetry and the dashboard snapshot ---
  app.get(`${P}/telemetry`, { ...read, schema: { querystring: TelemetryQuery } }, async (request) => {
    const t = m.telemetry.status();
    return {
      enabled: t.enabled,
      interval_seconds: t.intervalSeconds,
      nvidia: t.nvidia,
      gpu_available: t.nvidia.available,
      message: t.nvidia.available ? null : `No NVIDIA GPU telemetry on this machine (${t.nvidia.reason ?? 'unknown'}); CPU and memory are still sampled.`,
      controllers: t.controllers,
      latest: t.latest,
      history: m.telemetry.history(request.query.limit ?? 60),
      timestamp: now(),
    };
  });
  app.get(`${P}/snapshot`, { ...read, schema: { response: { 200: MonitoringSnapshotResponse } } }, async (): Promise<MonitoringSnapshotResponse> => {
    const s = m.snapshot();
    return {
      timestamp: s.at / 1000,
      status: s.status,
      issues: s.issues,
      monitor: { running: s.monitor.running, last_check: sec(s.monitor.lastCheckWall), checks_performed: s.monitor.checksPerformed, uptime: round3(s.monitor.uptimeSeconds) },
      locks: s.locks.map((v) => ({
        lock_key: v.lockKey,
        is_locked: v.isLocked,
        lock_holder: v.holder,
        purpose: v.purpose,
        task_id: v.taskId,
        ttl_seconds: v.ttlRemainingSeconds === null ? null : round3(v.ttlRemainingSeconds),
        lock_age: v.lockAgeSeconds === null ? null : round3(v.lockAgeSeconds),
      })),
      heartbeats: { active: s.heartbeats.active.length, dead: s.heartbeats.dead.length, orphaned: s.heartbeats.orphaned.length },
      telemetry: { nvidia_available: s.telemetry.nvidiaAvailable, reason: s.telemetry.reason, latest: s.telemetry.latest },
      cluster: s.cluster && {
        node_id: s.cluster.nodeId,
        redis_connected: s.cluster.redis.connected,
        lease_holder: s.cluster.lease.holder,
        lease_held_here: s.cluster.lease.heldHere,
        error: s.cluster.error,
        refreshed_at: sec(s.cluster.refreshedWall),
        nodes: s.cluster.nodes.map((n) => ({ node_id: n.node, online: n.online, lockable: n.lockable, nvidia_available: n.nvidiaAvailable, gpus: n.gpus })),
        locks: s.cluster.locks.map((v) => ({
          node_id: v.node,
          lock_key: v.lockKey,
          is_locked: v.isLocked,
          lock_holder: v.holder,
          task_id: v.taskId,
          ttl_seconds: v.ttlRemainingSeconds === null ? null : round3(v.ttlRemainingSeconds),
          lock_age: v.lockAgeSeconds === null ? null : round3(v.lockAgeSeconds),
        })),
        tasks: s.cluster.tasks.map((t) => ({
          node_id: t.node,
          task_id: t.taskId,
          task_name: t.owner,
          status: t.status,
          gpu_lock: t.lockKey,
          last_beat_age: round3(t.lastBeatAgeMs / 1000),
          timeout_seconds: t.timeoutMs / 1000,
          progress: t.progress,
          end_reason: t.endReason,
        })),
      },
    };
  });
};
