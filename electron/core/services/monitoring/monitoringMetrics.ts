import { Counter, Gauge } from 'prom-client';
import type { MetricsRegistry } from '../../base/metrics.js';

/** Host and GPU telemetry gauges, set by the telemetry sampler (`GpuTelemetry`). */
export class TelemetryMetrics {
  readonly util: Gauge<'gpu'>;
  readonly memUsed: Gauge<'gpu'>;
  readonly memTotal: Gauge<'gpu'>;
  readonly temp: Gauge<'gpu'>;
  readonly power: Gauge<'gpu'>;
  readonly cpu: Gauge;
  readonly hostMem: Gauge;

  constructor(metrics: MetricsRegistry) {
    const registers = [metrics.registry];
    this.util = new Gauge({ name: 'console_gpu_utilization_percent', help: 'GPU utilisation (nvidia-smi), percent', labelNames: ['gpu'], registers });
    this.memUsed = new Gauge({ name: 'console_gpu_memory_used_bytes', help: 'GPU memory used (nvidia-smi)', labelNames: ['gpu'], registers });
    this.memTotal = new Gauge({ name: 'console_gpu_memory_total_bytes', help: 'GPU memory total (nvidia-smi)', labelNames: ['gpu'], registers });
    this.temp = new Gauge({ name: 'console_gpu_temperature_celsius', help: 'GPU temperature (nvidia-smi)', labelNames: ['gpu'], registers });
    this.power = new Gauge({ name: 'console_gpu_power_watts', help: 'GPU power draw (nvidia-smi)', labelNames: ['gpu'], registers });
    this.cpu = new Gauge({ name: 'console_host_cpu_load_percent', help: 'Host CPU load, percent', registers });
    this.hostMem = new Gauge({ name: 'console_host_memory_used_bytes', help: 'Host memory in use (excluding caches)', registers });
  }
}

/** One GPU lock as the metrics read it when scraped. */
export interface LockSample {
  lockKey: string;
  /** Fencing token of the held lock; null when free. */
  token: number | null;
  /** Age of the held lock; null when free. */
  ageSeconds: number | null;
}

/** What monitoring's gauges read when scraped. */
export interface MonitoringLive {
  locks(): LockSample[];
  heartbeatTasks(): { active: number; dead: number; orphaned: number };
  heartbeatMaxAgeSeconds(): number;
  /** The durable lock store's commit counters, when it keeps them. */
  storeCommits?: () => { commits: number; operations: number };
  /** Cluster only: whether this node holds the monitor lease. */
  leaseHeld?: () => boolean;
}

/**
 * Monitoring's Prometheus metrics: GPU locks, heartbeats, timeout actions, the cluster monitor
 * lease, and (through {@link TelemetryMetrics}) host and GPU telemetry.
 */
export class MonitoringMetrics {
  readonly telemetry: TelemetryMetrics;
  readonly beats: Counter<'result'>;
  readonly timeoutActions: Counter<'action'>;
  readonly lockHeld: Gauge<'lock_key'>;
  readonly lockAge: Gauge<'lock_key'>;
  readonly lockHeldSeconds: Counter<'lock_key'>;
  readonly storeCommits: Gauge<'kind'> | undefined;
  readonly leaseHeld: Gauge | undefined;
  readonly heartbeatTasks: Gauge<'state'>;
  readonly heartbeatMaxAge: Gauge;

  constructor(metrics: MetricsRegistry, live: MonitoringLive) {
    const registers = [metrics.registry];
    this.telemetry = new TelemetryMetrics(metrics);
    const beats = new Counter({
      name: 'console_heartbeat_beats_total',
      help: 'Heartbeats received, by result (ok; refused: unknown or ended task, lost lock, stale token)',
      labelNames: ['result'],
      registers,
    });
    const zeroBeats = () => {
      for (const result of ['ok', 'refused']) beats.inc({ result }, 0);
    };
    zeroBeats();
    metrics.onReset(zeroBeats);
    this.beats = beats;
    this.timeoutActions = new Counter({ name: 'console_monitoring_timeout_actions_total', help: 'Actions taken by the timeout manager', labelNames: ['action'], registers });
    this.lockHeld = new Gauge({
      name: 'console_gpu_lock_held',
      help: 'Whether the GPU lock is held (1) or free (0)',
      labelNames: ['lock_key'],
      registers,
      collect() {
        for (const v of live.locks()) this.set({ lock_key: v.lockKey }, v.token !== null ? 1 : 0);
      },
    });
    this.lockAge = new Gauge({
      name: 'console_gpu_lock_age_seconds',
      help: 'Age of the held GPU lock (0 when free)',
      labelNames: ['lock_key'],
      registers,
      collect() {
        for (const v of live.locks()) this.set({ lock_key: v.lockKey }, v.ageSeconds ?? 0);
      },
    });
    // Occupancy (the alert's "held > 80 % of the time") is rate() of this counter. It is advanced
    // at scrape time from each lock's age, so a hold that starts and ends between two scrapes is missed.
    const accounted = new Map<string, { token: number; ageSeconds: number }>();
    this.lockHeldSeconds = new Counter({
      name: 'console_gpu_lock_held_seconds_total',
      help: 'Seconds each GPU lock has been held (advanced when scraped)',
      labelNames: ['lock_key'],
      registers,
      collect() {
        for (const v of live.locks()) {
          const prev = accounted.get(v.lockKey);
          if (v.token === null) {
            accounted.delete(v.lockKey);
            this.inc({ lock_key: v.lockKey }, 0);
            continue;
          }
          const age = Math.max(0, v.ageSeconds ?? 0);
          const from = prev && prev.token === v.token ? Math.min(prev.ageSeconds, age) : 0;
          this.inc({ lock_key: v.lockKey }, age - from);
          accounted.set(v.lockKey, { token: v.token, ageSeconds: age });
        }
      },
    });
    const storeCommits = live.storeCommits;
    this.storeCommits = storeCommits
      ? new Gauge({
          name: 'console_monitoring_store_commits',
          help: 'Durable lock-store commits since start, and the operations they carried (kind=commits|operations)',
          labelNames: ['kind'],
          registers,
          collect() {
            const s = storeCommits();
            this.set({ kind: 'commits' }, s.commits);
            this.set({ kind: 'operations' }, s.operations);
          },
        })
      : undefined;
    const leaseHeld = live.leaseHeld;
    this.leaseHeld = leaseHeld
      ? new Gauge({
          name: 'console_cluster_monitor_lease_held',
          help: 'Whether this node holds the cluster monitor lease (1: its monitor times heartbeats out for the cluster)',
          registers,
          collect() {
            this.set(leaseHeld() ? 1 : 0);
          },
        })
      : undefined;
    this.heartbeatTasks = new Gauge({
      name: 'console_heartbeat_tasks',
      help: 'Tasks by heartbeat state',
      labelNames: ['state'],
      registers,
      collect() {
        const o = live.heartbeatTasks();
        this.set({ state: 'active' }, o.active);
        this.set({ state: 'dead' }, o.dead);
        this.set({ state: 'orphaned' }, o.orphaned);
      },
    });
    this.heartbeatMaxAge = new Gauge({
      name: 'console_heartbeat_max_age_seconds',
      help: 'Seconds since the stalest running task last beat (0 when none runs)',
      registers,
      collect() {
        this.set(live.heartbeatMaxAgeSeconds());
      },
    });
  }
}
