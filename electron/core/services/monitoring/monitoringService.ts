import type { Logger } from 'pino';
import type { Clock } from '../../base/clock.js';
import type { ChildProcessRegistry } from '../../base/managedProcess.js';
import type { ConfigStore } from '../../base/config.js';
import type { HealthRegistry } from '../../base/health.js';
import { AppError, ErrorCode } from '../../base/errors.js';
import { BaseService } from '../../base/lifecycle.js';
import type { MetricsRegistry } from '../../base/metrics.js';
import type { PeriodicTask, PeriodicTaskRegistry } from '../../base/periodic.js';
import type { AuditPort } from '../../base/ports.js';
import { listNodeGpus, MonitorLease, publishNodeGpus, type ClusterTask, type NodeGpus, type RedisHeartbeatStore } from './clusterHeartbeats.js';
import { GpuLockService, type LockStats } from './gpuLocks.js';
import { GpuTelemetry, type TelemetrySample } from './gpuTelemetry.js';
import { HeartbeatService, type HeartbeatOverview, type OrphanInfo } from './heartbeats.js';
import { MonitoringMetrics } from './monitoringMetrics.js';
import { clusterLockKeyOf, type LockRecord, type LockStore, type TaskRecord } from './lockStore.js';
import { PersistentClock } from './persistentClock.js';
import type { RedisConnection } from '../../base/redisConnection.js';
import type { RedisLockStore } from './redisLockStore.js';
import { TimeoutManager, type ClusterLockAge, type TimeoutCheckResult } from './timeoutManager.js';

export interface MonitoringServiceOptions {
  config: ConfigStore;
  clock: Clock;
  /** Where /threads lists the nvidia-smi children. */
  children?: ChildProcessRegistry;
  /** The audit log (forced releases and timeouts are recorded there). */
  audit: AuditPort;
  lockStore: LockStore;
  /**
   * Set when GPU locks are shared through Redis (`cluster.redisUrl`): `lockStore` is then this
   * node's RedisLockStore, and `gpu_lock:<node>:<id>` names another node's GPU.
   */
  cluster?: { nodeId: string; store: RedisLockStore; connection: RedisConnection; heartbeats: RedisHeartbeatStore };
  logger: Logger;
  metrics: MetricsRegistry;
  periodic: PeriodicTaskRegistry;
  health: HealthRegistry;
}

export type HealthStatus = 'healthy' | 'warning' | 'critical';

export interface MonitorState {
  running: boolean;
  /** Unix ms of the last (re)start of the monitor loop, null when stopped. */
  startWall: number | null;
  uptimeSeconds: number;
  lastCheckWall: number | null;
  checksPerformed: number;
  issuesDetected: number;
  /** Mean duration of one check, ms. */
  avgCheckMs: number;
}

export interface LockView {
  lockKey: string;
  gpuId: number;
  lock: LockRecord | null;
  ttlRemainingSeconds: number | null;
  lockAgeSeconds: number | null;
}

/**
 * A lock as readers see it: who holds it, for what, since when and for how long, never its fencing
 * token (the token is the holder's proof for renew and release; only acquire returns it).
 */
export interface LockSummary {
  lockKey: string;
  gpuId: number;
  isLocked: boolean;
  holder: string | null;
  purpose: string | null;
  taskId: string | null;
  /** Unix ms when the lock was taken. */
  acquiredWall: number | null;
  /** TTL the lock was taken (or last renewed) with. */
  ttlSeconds: number | null;
  ttlRemainingSeconds: number | null;
  lockAgeSeconds: number | null;
}

/** A heartbeat task as readers see it (without the fencing token of its lock). */
export type TaskSummary = Omit<TaskRecord, 'fencingToken'>;

/** A lock of some node of the cluster. */
export type ClusterLockSummary = LockSummary & { node: string };
/** A heartbeat task of some node of the cluster (no fencing token). */
export type ClusterTaskSummary = Omit<ClusterTask, 'fencingToken' | 'metadata' | 'progressDetail'> & { lockKey: string | null };

/** The cluster as the last monitor check saw it (null on a single box). */
export interface ClusterView {
  nodeId: string;
  redis: { connected: boolean; lastError: string | null; downSinceWall: number | null };
  /** The node whose monitor sweeps heartbeat timeouts (null: none, or Redis away). */
  lease: { holder: string | null; heldHere: boolean; ttlSeconds: number };
  /** Unix ms of the last complete read of the cluster; null before the first. */
  refreshedWall: number | null;
  /** Why the last read failed (Redis away…), null when it worked. */
  error: string | null;
  nodes: NodeGpus[];
  locks: ClusterLockSummary[];
  tasks: ClusterTaskSummary[];
}

/** Everything the dashboard's live stream shows; cheap and synchronous; carries no fencing token. */
export interface MonitoringSnapshot {
  at: number;
  /** Monitoring health and its issues (contract §7.7), what the Overview's alerts show. */
  status: HealthStatus;
  issues: string[];
  monitor: MonitorState;
  locks: LockSummary[];
  heartbeats: { active: TaskSummary[]; dead: TaskSummary[]; orphaned: OrphanInfo[] };
  telemetry: { nvidiaAvailable: boolean; reason: string | null; latest: TelemetrySample | null };
  /** Every node's GPUs, locks and tasks (cluster only; null on a single box). */
  cluster: ClusterView | null;
}

const taskSummary = ({ fencingToken: _token, ...rest }: TaskRecord): TaskSummary => rest;

/**
 * Monitoring (seed 004): GPU locks, task heartbeats, the timeout manager, the monitor loop and GPU
 * telemetry. Other services get `locks` (GpuLockPort) and `heartbeats` (HeartbeatPort) from the
 * composition root.
 */
export class MonitoringService extends BaseService {
  readonly name = 'monitoring';
  readonly locks: GpuLockService;
  readonly heartbeats: HeartbeatService;
  readonly timeouts: TimeoutManager;
  readonly telemetry: GpuTelemetry;
  private readonly pclock: PersistentClock;
  private readonly monitorTask: PeriodicTask;
  private readonly monitor = { running: false, startMono: 0, startWall: null as number | null, lastCheckWall: null as number | null, checks: 0, issues: 0, checkMsTotal: 0 };
  private readonly occupancy = new Map<number, number>();
  /** Checks (monitor loop, POST /timeout/check, cleanup) run one at a time, so a timeout is handled once. */
  private checkChain: Promise<unknown> = Promise.resolve();
  /** Lock services for other nodes' GPUs (cluster only), created on first use. */
  private readonly remote = new Map<string, { locks: GpuLockService; gpus: Set<number>; ready: Promise<void> }>();
  /** Cluster only: the monitor lease, and what the last check read of the other nodes. */
  private readonly lease: MonitorLease | null;
  private clusterSeen: { refreshedWall: number | null; error: string | null; nodes: NodeGpus[]; locks: ClusterLockSummary[]; tasks: ClusterTaskSummary[] } = { refreshedWall: null, error: null, nodes: [], locks: [], tasks: [] };

  constructor(private readonly o: MonitoringServiceOptions) {
    super();
    const cfg = () => o.config.get().monitoring;
    const log = o.logger;
    this.pclock = new PersistentClock(o.clock);
    o.lockStore.attachClock?.(this.pclock);
    const cluster = o.cluster;
    const commitStats = o.lockStore.commitStats?.bind(o.lockStore);
    // The gauges read the parts below when scraped (they all exist by then).
    const metrics = new MonitoringMetrics(o.metrics, {
      locks: () =>
        this.locks.gpuIds().map((id) => {
          const v = this.lockView(id);
          return { lockKey: v.lockKey, token: v.lock?.token ?? null, ageSeconds: v.lockAgeSeconds };
        }),
      heartbeatTasks: () => {
        const h = this.heartbeats.overview();
        return { active: h.active.length, dead: h.dead.length, orphaned: h.orphaned.length };
      },
      heartbeatMaxAgeSeconds: () => this.heartbeats.maxBeatAgeSeconds(),
      ...(commitStats ? { storeCommits: commitStats } : {}),
      ...(cluster ? { leaseHeld: () => this.clusterView()?.lease.heldHere === true } : {}),
    });
    this.telemetry = new GpuTelemetry({ clock: o.clock, ...(o.children ? { children: o.children } : {}), logger: log.child({ part: 'telemetry' }), metrics: metrics.telemetry, periodic: o.periodic, settings: () => cfg().telemetry });
    this.locks = new GpuLockService({
      store: o.lockStore,
      clock: o.clock,
      pclock: this.pclock,
      logger: log.child({ part: 'locks' }),
      limits: () => ({ ...cfg().locks, maxRetryAttempts: cfg().timeout.maxRetryAttempts }),
      knownGpus: () => new Set([...cfg().locks.gpuIds, ...this.telemetry.gpuIndices()]),
      audit: o.audit,
    });
    this.lease = cluster ? new MonitorLease({ redis: cluster.connection, node: cluster.nodeId, ttlMs: () => o.config.get().cluster.monitorLeaseSeconds * 1000 }) : null;
    this.heartbeats = new HeartbeatService({
      onBeat: (result) => metrics.beats.inc({ result }),
      store: cluster?.heartbeats ?? o.lockStore,
      clock: o.clock,
      pclock: this.pclock,
      logger: log.child({ part: 'heartbeat' }),
      locks: this.locks,
      settings: () => ({
        timeoutSeconds: cfg().heartbeat.timeoutSeconds,
        autoRegister: cfg().heartbeat.autoRegister,
        maxTimeoutSeconds: cfg().locks.maxTtlSeconds,
        startGraceSeconds: cfg().heartbeat.intervalSeconds,
      }),
    });
    this.timeouts = new TimeoutManager({
      locks: this.locks,
      heartbeats: this.heartbeats,
      store: o.lockStore,
      clock: o.clock,
      pclock: this.pclock,
      logger: log.child({ part: 'timeout' }),
      metrics,
      settings: () => ({ ...cfg().timeout, gpuTimeoutSeconds: cfg().locks.gpuTimeoutSeconds }),
    });
    this.monitorTask = o.periodic.register({ name: 'gpu-monitor', level: 'high', intervalSeconds: cfg().monitor.checkIntervalSeconds, run: () => this.check().then(() => undefined) });
    o.health.addComponent('monitor', () => ({ status: this.monitor.running ? 'UP' : 'DOWN', details: { running: this.monitor.running, status: this.overallHealth().status } }));
    o.health.addReadiness('monitor', () => ({ fields: { monitor_running: this.monitor.running }, ready: true }));
  }

  protected async onStart(): Promise<void> {
    if (this.o.cluster) {
      // A wrong URL or an unreachable Redis stops the start here, with the URL in the message.
      this.disposables.defer(await this.o.cluster.connection.open());
    }
    this.pclock.resume(await this.o.lockStore.loadClock());
    await this.locks.init();
    if (this.o.cluster) {
      const store = this.o.cluster.store;
      const gpus = () => [...new Set([...this.o.config.get().monitoring.locks.gpuIds, ...this.telemetry.gpuIndices()])];
      await store.publishNode(gpus(), true);
      // On stop, hand the monitor lease over at once (runs before the connection closes).
      const lease = this.lease;
      if (lease) this.disposables.defer(() => lease.release().catch((err: unknown) => this.o.logger.warn({ err }, 'could not release the monitor lease')));
      // Redis that restarted without its data has forgotten the nodes: publish again on reconnect.
      this.disposables.defer(
        this.o.cluster.connection.onReconnect(() => {
          store.publishNode(gpus(), false).catch((err: unknown) => this.o.logger.warn({ err }, 'could not publish this node to Redis'));
        }),
      );
    }
    this.disposables.defer(() => {
      for (const r of this.remote.values()) r.locks.close();
      this.remote.clear();
    });
    await this.heartbeats.init();
    await this.timeouts.init();
    this.disposables.defer(() => this.locks.close());
    const cfg = this.o.config.get().monitoring;
    this.telemetry.start();
    this.disposables.defer(() => this.telemetry.stop());
    if (cfg.monitor.enabled) this.startMonitor();
    this.disposables.defer(() => this.stopMonitor());
    this.disposables.defer(
      this.o.config.onChange((next, prev) => {
        const n = next.monitoring;
        const p = prev.monitoring;
        if (n.monitor.checkIntervalSeconds !== p.monitor.checkIntervalSeconds) this.monitorTask.setInterval(n.monitor.checkIntervalSeconds);
        if (n.telemetry.intervalSeconds !== p.telemetry.intervalSeconds) this.telemetry.setInterval(n.telemetry.intervalSeconds);
      }),
    );
    // Record the clock basis at stop too, so a clean restart measures downtime from here.
    this.disposables.defer(() => this.o.lockStore.saveClock(this.pclock.stamp()));
    // Let a check in flight finish before the store closes.
    this.disposables.defer(() => this.checkChain.then(() => undefined));
  }

  /**
   * The lock service for a node's GPUs: this node's (`node` undefined or this node's id) or, in a
   * cluster, another node's (its GPUs as it published them). Unknown node → 404.
   */
  async locksFor(node: string | undefined): Promise<GpuLockService> {
    const cluster = this.o.cluster;
    if (node === undefined || node === cluster?.nodeId) return this.locks;
    if (!cluster) throw new AppError(ErrorCode.INVALID_REQUEST, `Lock keys naming a node (gpu_lock:${node}:<id>) need a cluster: set cluster.redisUrl`);
    const gpus = await cluster.store.nodeGpus(node);
    if (gpus === undefined) throw new AppError(ErrorCode.NOT_FOUND, `Unknown node ${node}: no console with that cluster.nodeId has joined the cluster`);
    let r = this.remote.get(node);
    if (!r) {
      const known = new Set<number>();
      const locks = new GpuLockService({
        store: cluster.store.forNode(node),
        clock: this.o.clock,
        pclock: this.pclock,
        logger: this.o.logger.child({ part: 'locks', node }),
        limits: () => ({ ...this.o.config.get().monitoring.locks, maxRetryAttempts: this.o.config.get().monitoring.timeout.maxRetryAttempts }),
        knownGpus: () => known,
        keyOf: (gpuId) => clusterLockKeyOf(node, gpuId),
        audit: this.o.audit,
      });
      const entry = { locks, gpus: known, ready: locks.init() };
      entry.ready.catch(() => this.remote.delete(node));
      this.remote.set(node, entry);
      r = entry;
    }
    await r.ready;
    r.gpus.clear();
    for (const g of gpus) r.gpus.add(g);
    return r.locks;
  }

  /** Starts the monitor loop (idempotent). */
  startMonitor(): void {
    if (this.monitor.running) return;
    this.monitor.running = true;
    this.monitor.startMono = this.o.clock.monotonic();
    this.monitor.startWall = this.o.clock.now();
    this.monitorTask.start();
  }

  /** Stops the monitor loop (idempotent); locks and heartbeats keep working, timeouts are not handled. */
  stopMonitor(): void {
    if (!this.monitor.running) return;
    this.monitor.running = false;
    this.monitor.startWall = null;
    this.monitorTask.stop();
  }

  /** One monitor check: store the clock basis, handle timeouts, forget long-ended tasks, measure occupancy. */
  check(gpuIds?: readonly number[]): Promise<TimeoutCheckResult> {
    const run = this.checkChain.then(() => this.checkNow(gpuIds));
    this.checkChain = run.catch(() => undefined);
    return run;
  }

  private async checkNow(gpuIds?: readonly number[]): Promise<TimeoutCheckResult> {
    const t0 = this.o.clock.monotonic();
    await this.o.lockStore.saveClock(this.pclock.stamp());
    // Other consoles of a cluster change this console's locks too: decide on what Redis holds now.
    await this.locks.refresh();
    // Cluster: this node checks its own GPUs' locks; heartbeats are the monitor lease holder's.
    // A lock's task may beat on any node, so its liveness is judged on every node's tasks; with
    // Redis away it cannot be judged, and no lock is freed for its age (TTLs still run out).
    let clusterTasks: ClusterTask[] | null = null;
    let lockTaskLive: ((lock: LockRecord) => boolean) | undefined;
    if (this.o.cluster) {
      try {
        clusterTasks = await this.o.cluster.heartbeats.clusterTasks();
        const live = clusterTasks.filter((t) => t.status === 'running' && t.lastBeatAgeMs <= t.timeoutMs);
        lockTaskLive = (lock) => live.some((t) => (lock.taskId !== null ? t.taskId === lock.taskId : t.fencingToken === lock.token));
      } catch {
        lockTaskLive = () => true;
      }
    }
    const result = await this.timeouts.check(gpuIds, { tasks: !this.o.cluster, ...(lockTaskLive ? { lockTaskLive } : {}) });
    if (this.o.cluster) {
      const swept = await this.clusterCheck(clusterTasks);
      result.timeoutsDetected += swept.timeoutsDetected;
      result.actionsTaken.push(...swept.actionsTaken);
    }
    await this.heartbeats.expireEnded(this.o.config.get().monitoring.heartbeat.endedRetentionSeconds * 1000);
    for (const id of this.locks.gpuIds()) this.occupancy.set(id, this.locks.takeOccupancy(id));
    this.monitor.checks++;
    this.monitor.issues += result.timeoutsDetected;
    this.monitor.lastCheckWall = this.o.clock.now();
    this.monitor.checkMsTotal += this.o.clock.monotonic() - t0;
    if (this.monitor.checks % 20 === 0) await this.o.lockStore.pruneHistory(this.o.config.get().monitoring.locks.historyKept);
    return result;
  }

  /**
   * The cluster's part of a check: renew (or take) the monitor lease; if held, sweep every node's
   * heartbeats; take over what the holder decided for this node's tasks; publish this node's GPUs
   * and read every node's GPUs, locks and tasks for the snapshot. Redis away: nothing is swept (fail
   * closed), the error is shown, and the next check after Redis is back picks up by itself.
   */
  private async clusterCheck(prefetched: ClusterTask[] | null): Promise<TimeoutCheckResult> {
    const cluster = this.o.cluster!;
    const lease = this.lease!;
    const none: TimeoutCheckResult = { checkedLocks: [], timeoutsDetected: 0, actionsTaken: [] };
    try {
      const hb = cluster.heartbeats;
      let result = none;
      let tasks = prefetched ?? (await hb.clusterTasks());
      if (await lease.tick()) {
        const cfg = this.o.config.get().monitoring;
        result = await this.timeouts.sweepCluster({
          self: cluster.nodeId,
          tasks,
          timeOut: (t) => hb.timeOut(t.node, t.taskId, cfg.timeout.recovery, cfg.timeout.maxRetryAttempts),
          releaseLock: async (t, reason) => {
            const locks = await this.locksFor(t.node);
            const freed = await locks.forceRelease(t.gpuId!, { actor: `timeout-manager@${cluster.nodeId}`, reason, cause: 'timed_out', onlyToken: t.fencingToken! });
            return freed !== null;
          },
          audit: this.o.audit,
        });
        // Ended tasks stay listed for heartbeat.endedRetentionSeconds, also those of a node that is gone.
        const cutoff = this.o.clock.now() - cfg.heartbeat.endedRetentionSeconds * 1000;
        const stale = tasks.filter((t) => t.status !== 'running' && (t.endedWall ?? t.lastUpdateWall) <= cutoff);
        await hb.forget(stale);
        if (result.actionsTaken.length > 0 || stale.length > 0) tasks = await hb.clusterTasks();
        const aged = await this.sweepOtherNodesLocks(tasks);
        result = { checkedLocks: [...result.checkedLocks, ...aged.checkedLocks], timeoutsDetected: result.timeoutsDetected + aged.timeoutsDetected, actionsTaken: [...result.actionsTaken, ...aged.actionsTaken] };
      }
      for (const t of tasks) {
        if (t.node !== cluster.nodeId) continue;
        const changed = await this.heartbeats.adoptClusterState(t);
        if (changed === 'ended') this.timeouts.ownerRecovery(this.heartbeats.get(t.taskId)!);
      }
      await this.readCluster(tasks);
      this.clusterSeen.error = null;
      return result;
    } catch (err) {
      this.clusterSeen.error = (err as Error).message;
      this.o.logger.warn({ err }, 'cluster monitor check failed');
      return none;
    }
  }

  /**
   * The lease holder applies the lock-age rule (locks.gpuTimeoutSeconds) to the other nodes' GPU
   * locks: a node that died cannot free its own. A lock's task is live when a running task of any
   * node, within its timeout by Redis time, has the lock's task id or its GPU and fencing token.
   */
  private async sweepOtherNodesLocks(tasks: readonly ClusterTask[]): Promise<TimeoutCheckResult> {
    const cluster = this.o.cluster!;
    const held: Array<ClusterLockAge & { locks: GpuLockService }> = [];
    for (const n of await listNodeGpus(cluster.connection)) {
      if (n.node === cluster.nodeId) continue;
      const locks = await this.locksFor(n.node);
      await locks.refresh();
      for (const gpuId of locks.gpuIds()) {
        const v = this.lockView(gpuId, locks);
        if (v.lock) held.push({ node: n.node, gpuId, lock: v.lock, ageMs: (v.lockAgeSeconds ?? 0) * 1000, locks });
      }
    }
    const live = tasks.filter((t) => t.status === 'running' && t.lastBeatAgeMs <= t.timeoutMs);
    return this.timeouts.sweepClusterLocks({
      self: cluster.nodeId,
      locks: held,
      isLive: (l) => live.some((t) => (l.lock.taskId !== null ? t.taskId === l.lock.taskId : t.gpuId === l.gpuId && t.fencingToken === l.lock.token)),
      release: async (l, reason) => {
        const owner = held.find((h) => h.node === l.node && h.gpuId === l.gpuId)!;
        const freed = await owner.locks.forceRelease(l.gpuId, { actor: `timeout-manager@${cluster.nodeId}`, reason, cause: 'timed_out', onlyToken: l.lock.token });
        return freed !== null;
      },
      audit: this.o.audit,
    });
  }

  private async readCluster(tasks: ClusterTask[]): Promise<void> {
    const cluster = this.o.cluster!;
    const cfg = this.o.config.get().monitoring;
    const t = this.telemetry.status();
    const lockable = [...new Set([...cfg.locks.gpuIds, ...this.telemetry.gpuIndices()])].sort((a, b) => a - b);
    const gpus = (t.latest?.gpus ?? []).map((g) => ({ index: g.index, name: g.name, utilizationGpu: g.utilizationGpu, memoryUsedMiB: g.memoryUsedMiB, memoryTotalMiB: g.memoryTotalMiB, temperatureC: g.temperatureC }));
    // Published for three check intervals: a node that stops publishing drops off the list by itself.
    const ttlMs = 3000 * Math.max(cfg.monitor.checkIntervalSeconds, cfg.telemetry.intervalSeconds);
    await publishNodeGpus(cluster.connection, { node: cluster.nodeId, at: this.o.clock.now(), lockable, nvidiaAvailable: t.nvidia.available, gpus }, ttlMs);
    const nodes = await listNodeGpus(cluster.connection);
    const locks: ClusterLockSummary[] = [];
    for (const n of nodes) {
      if (n.node === cluster.nodeId) {
        for (const id of this.locks.gpuIds()) locks.push({ node: n.node, ...this.lockSummary(id) });
        continue;
      }
      const remote = await this.locksFor(n.node);
      await remote.refresh();
      for (const id of remote.gpuIds()) locks.push({ node: n.node, ...this.lockSummary(id, remote) });
    }
    this.clusterSeen = {
      refreshedWall: this.o.clock.now(),
      error: null,
      nodes,
      locks,
      tasks: tasks.map(({ fencingToken: _t, metadata: _m, progressDetail: _d, ...rest }) => ({ ...rest, lockKey: rest.gpuId === null ? null : clusterLockKeyOf(rest.node, rest.gpuId) })),
    };
  }

  /**
   * Other nodes' heartbeat tasks, read from Redis now (null on a single box; Redis away: 503
   * `UNAVAILABLE`), sorted by their state: ended (dead), running past their timeout by Redis time
   * (orphaned) or running (active). This node's own tasks stay with {@link HeartbeatService.overview}.
   */
  async otherNodesTasks(): Promise<{ active: ClusterTask[]; dead: ClusterTask[]; orphaned: ClusterTask[] } | null> {
    const cluster = this.o.cluster;
    if (!cluster) return null;
    const out = { active: [] as ClusterTask[], dead: [] as ClusterTask[], orphaned: [] as ClusterTask[] };
    for (const t of await cluster.heartbeats.clusterTasks()) {
      if (t.node === cluster.nodeId) continue;
      if (t.status !== 'running') out.dead.push(t);
      else if (t.lastBeatAgeMs > t.timeoutMs) out.orphaned.push(t);
      else out.active.push(t);
    }
    return out;
  }

  /** This console's node id in a cluster (null on a single box). */
  get nodeId(): string | null {
    return this.o.cluster?.nodeId ?? null;
  }

  /** The cluster as the last check saw it; null on a single box. */
  clusterView(): ClusterView | null {
    const cluster = this.o.cluster;
    if (!cluster || !this.lease) return null;
    const st = cluster.connection.state();
    return {
      nodeId: cluster.nodeId,
      redis: { connected: st.connected, lastError: st.lastError, downSinceWall: st.downSinceWall },
      lease: { holder: st.connected ? this.lease.holder : null, heldHere: st.connected && this.lease.held, ttlSeconds: this.o.config.get().cluster.monitorLeaseSeconds },
      ...this.clusterSeen,
    };
  }

  monitorState(): MonitorState {
    const m = this.monitor;
    return {
      running: m.running,
      startWall: m.startWall,
      uptimeSeconds: m.running ? (this.o.clock.monotonic() - m.startMono) / 1000 : 0,
      lastCheckWall: m.lastCheckWall,
      checksPerformed: m.checks,
      issuesDetected: m.issues,
      avgCheckMs: m.checks === 0 ? 0 : m.checkMsTotal / m.checks,
    };
  }

  /** The reader's view of a lock (no fencing token). */
  lockSummary(gpuId: number, locks: GpuLockService = this.locks): LockSummary {
    const v = this.lockView(gpuId, locks);
    return {
      lockKey: v.lockKey,
      gpuId,
      isLocked: v.lock !== null,
      holder: v.lock?.holder ?? null,
      purpose: v.lock?.purpose ?? null,
      taskId: v.lock?.taskId ?? null,
      acquiredWall: v.lock?.acquiredWall ?? null,
      ttlSeconds: v.lock ? v.lock.ttlMs / 1000 : null,
      ttlRemainingSeconds: v.ttlRemainingSeconds,
      lockAgeSeconds: v.lockAgeSeconds,
    };
  }

  /** Internal view of a lock, token included (for the service and its tests; never sent to readers). */
  lockView(gpuId: number, locks: GpuLockService = this.locks): LockView {
    const lock = locks.current(gpuId);
    const now = this.pclock.basis();
    return {
      lockKey: locks.key(gpuId),
      gpuId,
      lock,
      ttlRemainingSeconds: lock ? Math.max(0, (lock.expiresAt - now) / 1000) : null,
      lockAgeSeconds: lock ? (now - lock.acquiredAt) / 1000 : null,
    };
  }

  /** Lock health (contract §7.2): critical on a timed-out lock, warning on timeouts > 10 % or occupancy > 80 %. */
  lockHealth(gpuId: number, locks: GpuLockService = this.locks): { status: HealthStatus; issues: string[]; stats: LockStats; occupancy: number } {
    const stats = locks.stats(gpuId);
    const view = this.lockView(gpuId, locks);
    const issues: string[] = [];
    let status: HealthStatus = 'healthy';
    const cfg = this.o.config.get().monitoring;
    // The same rule as the timeout manager's: a lock past gpu_timeout whose task (by task id or by
    // fencing token) has no live heartbeat.
    const timedOut = view.lock !== null && (view.lockAgeSeconds ?? 0) > cfg.locks.gpuTimeoutSeconds && !this.heartbeats.isLive(this.heartbeats.taskOfLock(view.lock));
    if (timedOut) {
      status = 'critical';
      issues.push(`${view.lockKey} held ${view.lockAgeSeconds!.toFixed(0)} s by ${view.lock!.holder} without a live heartbeat`);
    }
    const timeoutRate = stats.totalAttempts === 0 ? 0 : stats.timeoutCount / stats.totalAttempts;
    const occupancy = locks === this.locks ? (this.occupancy.get(gpuId) ?? 0) : 0;
    if (timeoutRate > 0.1) issues.push(`lock timeout rate ${(timeoutRate * 100).toFixed(0)} % (> 10 %)`);
    if (occupancy > 0.8) issues.push(`GPU lock occupancy ${(occupancy * 100).toFixed(0)} % over the last check window (> 80 %)`);
    if (status === 'healthy' && issues.length > 0) status = 'warning';
    return { status, issues, stats, occupancy };
  }

  /** Heartbeat health numbers (contract §7.7); `failureRate` = orphaned / total, in [0, 1]. */
  heartbeatHealth(overview: HeartbeatOverview = this.heartbeats.overview()): { total: number; active: number; failureRate: number } {
    const total = overview.total;
    return { total, active: overview.active.length, failureRate: total === 0 ? 0 : Math.min(1, overview.orphaned.length / total) };
  }

  /** Monitoring health (contract §7.7): critical when the monitor is stopped. */
  overallHealth(): { status: HealthStatus; issues: string[] } {
    const issues: string[] = [];
    let status: HealthStatus = 'healthy';
    if (!this.monitor.running) {
      status = 'critical';
      issues.push('监控器未运行 (monitor is stopped)');
    }
    for (const id of this.locks.gpuIds()) {
      const h = this.lockHealth(id);
      if (h.status === 'critical') status = 'critical';
      else if (h.status === 'warning' && status === 'healthy') status = 'warning';
      issues.push(...h.issues);
    }
    const hb = this.heartbeatHealth();
    if (hb.failureRate > 0.1) {
      if (status === 'healthy') status = 'warning';
      issues.push('心跳故障率过高');
    }
    return { status, issues };
  }

  /** Cleans ended tasks and orphans: runs a timeout check, frees locks whose task is gone, forgets ended tasks. */
  async cleanup(actor: string): Promise<{ cleanedDeadTasks: number; releasedLocks: number }> {
    await this.check();
    let released = 0;
    for (const o of this.heartbeats.overview().orphaned) {
      if (o.reason !== 'lock_without_task' || o.lockKey === null) continue;
      const gpuId = Number(o.lockKey.slice('gpu_lock:'.length));
      const lock = this.locks.current(gpuId);
      if (!lock) continue;
      const freed = await this.locks.forceRelease(gpuId, { actor, reason: `heartbeat cleanup: task ${o.taskId ?? '?'} is not alive`, onlyToken: lock.token });
      if (freed) released++;
    }
    const removed = await this.heartbeats.removeEnded();
    return { cleanedDeadTasks: removed.length, releasedLocks: released };
  }

  /** Durable commits of the lock store and the operations they carried (group commit). */
  commitStats(): { commits: number; operations: number } {
    return this.o.lockStore.commitStats?.() ?? { commits: 0, operations: 0 };
  }

  /** Cheap, synchronous view for the dashboard's live stream. */
  snapshot(): MonitoringSnapshot {
    const hb = this.heartbeats.overview();
    const t = this.telemetry.status();
    const health = this.overallHealth();
    return {
      at: this.o.clock.now(),
      status: health.status,
      issues: health.issues,
      monitor: this.monitorState(),
      locks: this.locks.gpuIds().map((id) => this.lockSummary(id)),
      heartbeats: { active: hb.active.map(taskSummary), dead: hb.dead.map(taskSummary), orphaned: hb.orphaned },
      telemetry: { nvidiaAvailable: t.nvidia.available, reason: t.nvidia.reason, latest: t.latest },
      cluster: this.clusterView(),
    };
  }
}
