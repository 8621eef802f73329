import { hostname } from 'node:os';
import { join } from 'node:path';
import { ensureAdminToken } from './base/adminToken.js';
import { SystemClock, type Clock, type TimerHandle } from './base/clock.js';
import { ConfigAdmin } from './base/configAdmin.js';
import { ConfigError, ConfigStore, loadSettings, type LoadSettingsOptions, type Settings } from './base/config.js';
import { HealthRegistry } from './base/health.js';
import type { Service } from './base/lifecycle.js';
import { LoggerRegistry, toPinoLevel } from './base/logger.js';
import { ChildProcessRegistry } from './base/managedProcess.js';
import { MetricsRegistry } from './base/metrics.js';
import { LoginLink } from './base/loginLink.js';
import { packageRoot, packageVersion } from './base/packageInfo.js';
import { PeriodicTaskRegistry, type PeriodicTask } from './base/periodic.js';
import { CoreStats, SnapshotRegistry, SnapshotStream } from './base/snapshots.js';
import { Store, StoreCorruptError } from './base/store.js';
import { StoreAuditLog } from './base/audit.js';
import { backupStore, restoreLastBackup } from './base/storeBackup.js';
import { Auth } from './server/auth.js';
import { GrpcServer } from './server/grpc/grpcServer.js';
import { isLoopbackAddress } from './server/http/hostOrigin.js';
import { HttpServer } from './server/http/httpServer.js';
import { alertsPlugin } from './server/http/plugins/alerts.js';
import { consoleConfigPlugin } from './server/http/plugins/consoleConfig.js';
import { consoleStreamPlugin } from './server/http/plugins/consoleStream.js';
import { dashboardPlugin } from './server/http/plugins/dashboard.js';
import { healthPlugin } from './server/http/plugins/health.js';
import { metricsOnlyPlugin } from './server/http/plugins/metricsOnly.js';
import { modelLibraryPlugin } from './server/http/plugins/modelLibrary.js';
import { openaiRouterPlugin, type OpenAiHandlers, type RemoteOpenAiHandlers } from './server/http/plugins/openaiRouter.js';
import { monitoringPlugin } from './server/http/plugins/monitoring.js';
import { opsPlugin } from './server/http/plugins/ops.js';
import { runtimePlugin } from './server/http/plugins/runtime.js';
import { trainingPlugin } from './server/http/plugins/training.js';
import { trainingDatasetsPlugin } from './server/http/plugins/trainingDatasets.js';
import { createEngineHttp } from './server/http/plugins/engine.js';
import { aiServiceDefinition, createAiService } from './server/grpc/aiService.js';
import { createTrainingGrpc, trainingServiceDefinition } from './server/grpc/trainingService.js';
import { AlertInbox } from './services/ops/alertInbox.js';
import { selfTestBackend } from './services/engine/backendSelfTest.js';
import { EngineService } from './services/engine/engineService.js';
import { createLimiterOpenAiHandlers, limiterPlugin } from './server/http/plugins/limiter.js';
import { SqliteLearnedRateStore } from './services/limiter/learnedRateStore.js';
import { RedisBudgetStore } from './services/limiter/sharedBudget.js';
import { LimiterService, resolveProviders } from './services/limiter/limiterService.js';
import { ModelLibrary } from './services/models/modelLibrary.js';
import { MonitoringService } from './services/monitoring/monitoringService.js';
import { RedisConnection } from './base/redisConnection.js';
import { RedisLockStore } from './services/monitoring/redisLockStore.js';
import { RedisHeartbeatStore } from './services/monitoring/clusterHeartbeats.js';
import { SqliteLockStore } from './services/monitoring/sqliteLockStore.js';
import { OpsService } from './services/ops/opsService.js';
import { TrainingService } from './services/training/trainingService.js';
import { DatasetLibrary } from './services/training/datasetLibrary.js';
import { RuntimeService } from './services/runtime/runtimeService.js';

export interface ConsoleOptions extends LoadSettingsOptions {
  /** Injected time source; tests pass a FakeClock. */
  clock?: Clock;
  /** Where log lines go (stdout by default; JSON unless `ops.logFormat` says `pretty`, or `auto` on a terminal). */
  logDestination?: NodeJS.WritableStream;
  /** better-sqlite3 native binary for Electron's ABI (see docs/deploy.md, Storage). */
  sqliteNativeBinding?: string;
  /** The built dashboard to serve at `/` (default: `<package root>/dist/renderer`). */
  dashboardRoot?: string;
}

/** Addresses the console listens on once started. */
export interface ConsoleAddresses {
  httpUrl: string;
  grpcAddress: string;
  httpPort: number;
  grpcPort: number;
  /** The limiter's own listener (`limiter.listen_port` / SIDECAR_PORT), when one was asked for. */
  limiterUrl?: string;
  /** The separate metrics-only listener (`limiter.metrics_port` / SIDECAR_METRICS_PORT), when one was asked for. */
  metricsUrl?: string;
}

/** True when a config layer (file, env, flags) sets `path` itself, not through the defaults. */
function layerSets(settings: Settings, path: string[]): boolean {
  return [settings.layers.file, settings.layers.env, settings.layers.flags].some((layer) => {
    let cur: unknown = layer;
    for (const k of path) {
      if (!cur || typeof cur !== 'object' || !(k in cur)) return false;
      cur = (cur as Record<string, unknown>)[k];
    }
    return cur !== undefined;
  });
}

/** One service as the tray sees it: its name, whether it runs, and start/stop at run time. */
export interface ServiceControl {
  readonly name: string;
  running(): boolean;
  /** Starts the service, and first what it needs (e.g. training needs monitoring); returns the names started, in order. */
  start(): Promise<string[]>;
  /**
   * Stops the service, and first what depends on it (e.g. stopping monitoring stops training, whose
   * jobs hold its GPU locks); each drains (`close()`) for up to `ops.shutdownGraceSeconds`. Returns
   * the names stopped, in order.
   */
  stop(): Promise<string[]>;
}

/** The running console: everything the composition root built, plus its lifecycle. */
export interface Console {
  readonly settings: Settings;
  readonly config: ConfigStore;
  /** Audited config changes (replace, patch, reload), whatever asks for them. */
  readonly configAdmin: ConfigAdmin;
  readonly clock: Clock;
  readonly store: Store;
  readonly logs: LoggerRegistry;
  readonly metrics: MetricsRegistry;
  readonly periodic: PeriodicTaskRegistry;
  readonly health: HealthRegistry;
  readonly http: HttpServer;
  readonly grpc: GrpcServer;
  readonly adminToken: string;
  readonly version: string;
  /** Services register their cheap `snapshot()` here; the dashboard's live stream sends them at 1 Hz. */
  readonly snapshots: SnapshotRegistry;
  /** Every service, for the tray's start/stop menu (a stopped service's routes answer 503 or its own error). */
  serviceControls(): ServiceControl[];
  /** The one-time dashboard login link (null before start or once used). */
  loginUrl(): string | null;
  /** The model library (GGUF files, imports, downloads); the engine reads it as a ModelFilesPort. */
  readonly models: ModelLibrary;
  /** GPU locks (`monitoring.locks`: GpuLockPort), heartbeats (`monitoring.heartbeats`: HeartbeatPort), telemetry. */
  readonly monitoring: MonitoringService;
  /** Local inference (node-llama-cpp); `engine.snapshot()` feeds the dashboard. */
  readonly engine: EngineService;
  /** Fine-tuning job queue; `training.snapshot()` feeds the dashboard. */
  readonly training: TrainingService;
  /** Starts every service, then the HTTP and gRPC listeners. */
  start(): Promise<ConsoleAddresses>;
  /**
   * Aborts: stops listeners (connections and calls in flight are cut), then services in reverse
   * start order (`destroy()`); safe to call twice. No handle stays open. The same as destroy().
   */
  stop(): Promise<void>;
  /** Aborts (see stop()); called while close() drains, it aborts what is left at once. */
  destroy(): Promise<void>;
  /**
   * Drains: listeners stop accepting (requests and gRPC calls in flight finish), then every service
   * `close()`s in reverse start order, all with one deadline `graceMs` from now on the injected
   * clock (default `ops.shutdownGraceSeconds`); then what is left is aborted and everything is
   * released as by stop(). Safe to call twice.
   */
  close(options?: { graceMs?: number }): Promise<void>;
  addresses(): ConsoleAddresses;
}

/** At a drain's deadline: after the services are aborted, how long their requests have to send their 503 before the connections are cut. */
const CUT_AFTER_ABORT_MS = 1000;

/**
 * Which services use which (through the ports they are given here): stopping one from the tray
 * stops its dependants first; starting one starts what it needs first.
 */
const SERVICE_DEPENDENCIES: Readonly<Record<string, readonly string[]>> = {
  engine: ['models'],
  // training holds monitoring's GPU locks and heartbeats, asks the engine for the GPU, resolves models
  training: ['monitoring', 'engine', 'models'],
};

/**
 * The composition root: the only place that creates services and wires them together.
 * Throws ConfigError (exit code 2) when settings are invalid; nothing in the data dir is written then.
 */
export function createConsole(options: ConsoleOptions = {}): Console {
  const env = options.env ?? process.env;
  const settings = loadSettings(options);
  const config = new ConfigStore(settings);
  const cfg = config.get();
  if (!isLoopbackAddress(cfg.server.host) && cfg.auth.apiKeys.length === 0) {
    throw new ConfigError(
      `Refusing to bind ${cfg.server.host}: a non-loopback address needs API keys (set auth.apiKeys in config.json or CY_LLM_API_KEY), so the network cannot use the console unauthenticated.`,
      [],
    );
  }

  // S2's separate ports (contract §1.1/§6.2), off unless a config layer sets them (defaults alone
  // open nothing): `limiter.listen_port` opens the limiter's own surface (/v1/* for remote
  // providers, /api/limiter/*, /status, /api/dashboard*, /api/admin/config, /health), and
  // `limiter.metrics_port` a metrics-only listener. Both keep the main port's edge and auth rules.
  const limiterListener = layerSets(settings, ['limiter', 'listen_port']) ? { host: cfg.limiter.listen_host, port: cfg.limiter.listen_port } : null;
  const metricsListener = layerSets(settings, ['limiter', 'metrics_port']) ? { host: cfg.limiter.listen_host, port: cfg.limiter.metrics_port } : null;
  if (limiterListener && !cfg.limiter.enabled) {
    throw new ConfigError('Invalid settings:', [
      { path: 'limiter.listen_port', expected: 'unset while limiter.enabled is false (there is no limiter to serve)', got: String(cfg.limiter.listen_port), source: settings.layers.sources.get('limiter.listen_port') ?? settings.configPath },
    ]);
  }
  for (const l of [limiterListener, metricsListener]) {
    if (l && !isLoopbackAddress(l.host) && cfg.auth.apiKeys.length === 0) {
      throw new ConfigError(`Refusing to bind ${l.host} (limiter.listen_host): a non-loopback address needs API keys (set auth.apiKeys in config.json or CY_LLM_API_KEY).`, []);
    }
  }
  if (cfg.limiter.enabled) resolveProviders(cfg.limiter, env); // provider conflicts are start-up errors too (before anything is written)
  const clock = options.clock ?? new SystemClock();
  const version = packageVersion();
  const terminal = options.logDestination === undefined && process.stdout.isTTY === true;
  const logFormat = cfg.ops.logFormat === 'auto' ? (terminal ? 'pretty' : 'json') : cfg.ops.logFormat;
  const logs = new LoggerRegistry({ level: cfg.ops.logLevel, destination: options.logDestination, format: logFormat, colorize: terminal });
  const log = logs.get('console');
  const metrics = new MetricsRegistry();
  const periodic = new PeriodicTaskRegistry(clock, logs.get('periodic'));
  const health = new HealthRegistry();
  const storePath = join(settings.dataDir, 'console.db');
  const backupDir = join(settings.dataDir, 'backups');
  const openStore = () => new Store({ path: storePath, nativeBinding: options.sqliteNativeBinding, backupDir });
  let store: Store;
  try {
    store = openStore();
  } catch (err) {
    // A damaged store stops start-up with a clear message (serve.ts: exit 2), unless the operator
    // asked to start from the last good backup; the damaged file is moved aside, never deleted.
    if (!(err instanceof StoreCorruptError) || !settings.restoreLastBackup) throw err;
    const restored = restoreLastBackup(storePath, backupDir, clock.now(), options.sqliteNativeBinding);
    log.warn({ damaged: err.problem, movedAside: restored.movedAside, restoredFrom: restored.restoredFrom, skipped: restored.skipped }, 'console.db was damaged; started from the last good backup');
    store = openStore();
  }
  const { token: adminToken, source: tokenSource } = ensureAdminToken(join(settings.dataDir, 'admin-token'), env);
  const auth = new Auth({ adminToken, config });
  const http = new HttpServer({ config, logger: logs.get('http'), metrics });
  const limiterHttp = limiterListener ? new HttpServer({ config, logger: logs.get('http'), metrics, listenOn: () => limiterListener }) : undefined;
  const metricsHttp = metricsListener ? new HttpServer({ config, logger: logs.get('http'), metrics, listenOn: () => metricsListener }) : undefined;
  const grpc = new GrpcServer({ host: cfg.server.host, port: cfg.server.grpcPort, logger: logs.get('grpc') });

  let addresses: ConsoleAddresses | null = null;
  const baseUrl = () => addresses?.httpUrl ?? `http://${cfg.server.host}:${cfg.server.httpPort}`;

  // Live dashboard stream: one shared snapshot per tick (core facts + every registered provider).
  const snapshots = new SnapshotRegistry();
  const stream = new SnapshotStream({ registry: snapshots, clock, logger: logs.get('dashboard'), core: new CoreStats({ clock, metrics, version, startedMono: clock.monotonic() }) });
  const loginLink = new LoginLink();

  // --- services (created here only; started in this order, stopped in reverse) ---
  // Every child process the console runs registers here while it runs (/threads lists them).
  const children = new ChildProcessRegistry();
  const ops = new OpsService({
    config,
    metrics,
    logger: logs.get('ops'),
    env,
    baseUrl,
    addTemporaryKey: (k) => auth.addTemporaryKey(k),
    clock,
    children,
  });
  // GPU locks: this box's SQLite store, or (cluster.redisUrl set) Redis shared with other consoles.
  const sqliteLocks = new SqliteLockStore(store);
  let cluster: { nodeId: string; store: RedisLockStore; connection: RedisConnection; heartbeats: RedisHeartbeatStore } | undefined;
  if (cfg.cluster.redisUrl !== '') {
    const nodeId = cfg.cluster.nodeId || hostname().replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 64);
    // One connection (and one pub/sub connection) for everything shared: GPU locks and provider budgets.
    const connection = new RedisConnection({ url: cfg.cluster.redisUrl, logger: logs.get('monitoring').child({ part: 'cluster' }), commandTimeoutMs: cfg.cluster.commandTimeoutMs });
    cluster = {
      nodeId,
      connection,
      store: new RedisLockStore({ redis: connection, node: nodeId, self: nodeId, local: sqliteLocks, maxTtlMs: () => config.get().monitoring.locks.maxTtlSeconds * 1000 }),
      heartbeats: new RedisHeartbeatStore({ redis: connection, node: nodeId, local: sqliteLocks }),
    };
    const c = cluster;
    health.addComponent('cluster', () => {
      const st = c.connection.state();
      const lease = monitoring.clusterView()?.lease;
      return {
        status: st.connected ? 'UP' : 'DOWN',
        details: {
          nodeId: c.nodeId,
          redis: st.url,
          connected: st.connected,
          lastError: st.lastError,
          downSince: st.downSinceWall === null ? null : new Date(st.downSinceWall).toISOString(),
          locks: st.connected ? 'shared' : 'unavailable: lock operations fail with 503 until Redis is back',
          providerBudgets: st.connected ? 'shared' : 'unavailable: proxied requests fail with 503 until Redis is back',
          // The node whose monitor times heartbeats out (null while Redis is away: nobody does).
          monitorLeaseHolder: lease?.holder ?? null,
          monitorLeaseHeldHere: lease?.heldHere ?? false,
        },
      };
    });
    // Readiness: a cluster node whose Redis is away cannot grant a lock or a shared token (fail
    // closed), so it is not ready; it is again as soon as the client has reconnected.
    health.addReadiness('cluster', () => {
      const connected = c.connection.state().connected;
      return { fields: { cluster_redis_reachable: connected }, ready: connected };
    });
  }
  // The one audit log: services record the admin actions they perform, whatever the surface.
  const audit = new StoreAuditLog(store, clock);
  const configAdmin = new ConfigAdmin(config, audit);
  const monitoring = new MonitoringService({ config, clock, children, audit, lockStore: cluster?.store ?? sqliteLocks, cluster, logger: logs.get('monitoring'), metrics, periodic, health });
  const runtime = new RuntimeService({ config, clock, logger: logs.get('runtime'), store, metrics, audit, health, dataDir: settings.dataDir, env, children });
  const models = new ModelLibrary({ config, dataDir: settings.dataDir, clock, logger: logs.get('models'), store, metrics, audit });
  // The backend self-test's probe runs as a child like any other (listed in /threads).
  const engine = new EngineService({ config, clock, logger: logs.get('engine'), metrics, models, selfTest: (backend) => selfTestBackend(backend, { clock, children }) });
  const training = new TrainingService({
    config,
    store,
    clock,
    logger: logs.get('training'),
    metrics,
    dataDir: settings.dataDir,
    modelsDir: () => models.dir,
    models,
    gpuLocks: monitoring.locks,
    heartbeats: monitoring.heartbeats,
    gpuTenant: engine,
    children,
  });
  const datasets = new DatasetLibrary({ config, logger: logs.get('training'), dataDir: settings.dataDir });
  const services: Service[] = [ops, monitoring, runtime, models, engine, training];
  grpc.addService('cyllm.v1.TrainingService', trainingServiceDefinition(), createTrainingGrpc({ training, auth, draining: grpc.draining }));
  const engineHttp = createEngineHttp({ engine, clock });
  health.addComponent('engine', () => engine.health());
  grpc.addService('cyllm.v1.AIService', aiServiceDefinition(), createAiService({ engine, auth }));
  // What the dashboard's live stream shows each second (runtime carries log lines: admin viewers only).
  snapshots.register('monitoring', () => monitoring.snapshot());
  snapshots.register('runtime', () => runtime.snapshot(), { adminOnly: true });
  snapshots.register('library', () => ({ downloads: models.snapshot() }));
  snapshots.register('engine', () => engine.snapshot());
  snapshots.register('training', () => training.snapshot());
  // Alerts Alertmanager posts to /api/alerts (resources/observability), shown on the Overview.
  const alertInbox = new AlertInbox({ clock });
  snapshots.register('alerts', () => alertInbox.snapshot());

  // OpenAI-compatible /v1 surface: local models (engine) and remote providers (limiter) plug in here.
  const openaiLocal: OpenAiHandlers | undefined = engineHttp.openai;
  let openaiRemote: RemoteOpenAiHandlers | undefined;

  // Limiter: remote providers behind /v1 (contract §6).
  const limiter = cfg.limiter.enabled
    ? new LimiterService({
        config,
        clock,
        logger: logs.get('limiter'),
        metrics,
        rates: new SqliteLearnedRateStore(store.db),
        env,
        budgets: cluster ? new RedisBudgetStore({ redis: cluster.connection, logger: logs.get('limiter').child({ part: 'cluster' }) }) : undefined,
      })
    : undefined;
  if (limiter) {
    logs.setLevel('limiter', toPinoLevel(cfg.limiter.log_level) ?? 'info');
    services.push(limiter);
    openaiRemote = createLimiterOpenAiHandlers(limiter);
    snapshots.register('limiter', () => limiter.snapshot());
    health.addReadiness('limiter', () => limiter.readiness());
    health.addComponent('limiter', () => limiter.component());
  }

  // --- the core's own periodic tasks ---
  const startedMono = clock.monotonic();
  const startedAt = clock.now();
  const coreTasks: PeriodicTask[] = [
    periodic.register({ name: 'metrics-uptime', level: 'low', intervalSeconds: 15, run: () => metrics.uptime.set((clock.monotonic() - startedMono) / 1000) }),
    periodic.register({ name: 'store-checkpoint', level: 'low', intervalSeconds: 300, runOnStart: false, run: () => store.checkpoint() }),
  ];
  // Rolling online backups (one at start, after migrations, then every intervalSeconds).
  let backupInFlight: Promise<unknown> | null = null;
  if (cfg.ops.storeBackup.keep > 0) {
    const backupTask = periodic.register({
      name: 'store-backup',
      level: 'low',
      intervalSeconds: cfg.ops.storeBackup.intervalSeconds,
      run: async () => {
        const keep = config.get().ops.storeBackup.keep;
        if (keep <= 0 || (state !== 'running' && state !== 'starting')) return;
        const p = backupStore(store.db, backupDir, keep, clock.now());
        backupInFlight = p.catch(() => undefined);
        try {
          await p;
        } finally {
          backupInFlight = null;
        }
      },
    });
    coreTasks.push(backupTask);
    config.onChange((next, prev) => {
      if (next.ops.storeBackup.intervalSeconds !== prev.ops.storeBackup.intervalSeconds) backupTask.setInterval(next.ops.storeBackup.intervalSeconds);
    });
  }
  config.onChange((next, prev) => {
    if (next.ops.logLevel !== prev.ops.logLevel) logs.setLevel('root', next.ops.logLevel === 'warning' ? 'warn' : next.ops.logLevel === 'critical' ? 'fatal' : (next.ops.logLevel.toLowerCase() as 'info'));
  });

  let state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';
  const started: Service[] = [];
  /** Services the operator stopped from the tray while the console runs. */
  const pausedServices = new Set<string>();

  /** The drain under way (close()), whose deadline a destroy() fires to abort the rest at once. */
  let drain: AbortController | null = null;
  let stopping: Promise<void> | null = null;

  /** A deadline `graceMs` from now on the injected clock (default `ops.shutdownGraceSeconds`). */
  const graceDeadline = (graceMs?: number): { controller: AbortController; cancel: () => void } => {
    const controller = new AbortController();
    const ms = Math.max(0, graceMs ?? config.get().ops.shutdownGraceSeconds * 1000);
    const timer = clock.setTimeout(() => controller.abort(), ms);
    return { controller, cancel: () => timer.cancel() };
  };

  /**
   * Winds everything down: listeners, then services in reverse start order, then the core's own
   * parts. `deadline` null aborts (stop/destroy); otherwise it drains until `deadline` fires.
   */
  const shutdown = async (deadline: AbortSignal | null): Promise<void> => {
    const errors: unknown[] = [];
    const attempt = async (fn: () => Promise<void> | void) => {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
    };
    stream.stop();
    const reversed = [...started].reverse();
    // Drain: when the deadline fires, what is left is aborted: every service (also one the tray is
    // draining with a deadline of its own), so requests in flight answer with their 503, then, after
    // at most CUT_AFTER_ABORT_MS, the connections still open are cut.
    const cut = new AbortController();
    let cutTimer: TimerHandle | null = null;
    let aborting: Promise<void> | null = null;
    const onDeadline = () => {
      aborting = (async () => {
        for (const s of reversed) await s.destroy().catch((err: unknown) => errors.push(err));
        cutTimer = clock.setTimeout(() => cut.abort(), CUT_AFTER_ABORT_MS);
      })();
    };
    if (deadline) {
      // Every service begins its drain and every listener stops accepting, at once: queued work is
      // refused (503) while requests and calls in flight finish.
      for (const s of started) s.beginDrain({ deadline });
      if (deadline.aborted) onDeadline();
      else deadline.addEventListener('abort', onDeadline, { once: true });
      const listeners = [http, limiterHttp, metricsHttp].filter((h): h is HttpServer => h !== undefined);
      await Promise.all([...listeners.map((h) => attempt(() => h.close({ deadline: cut.signal }))), attempt(() => grpc.close(cut.signal))]);
    } else {
      await attempt(() => http.close());
      if (limiterHttp) await attempt(() => limiterHttp.close());
      if (metricsHttp) await attempt(() => metricsHttp.close());
      await attempt(() => grpc.stop());
    }
    for (const t of coreTasks) t.stop();
    for (const s of reversed) await attempt(() => (deadline ? s.close({ deadline }) : s.stop()));
    deadline?.removeEventListener('abort', onDeadline);
    if (aborting) await aborting;
    (cutTimer as TimerHandle | null)?.cancel();
    started.length = 0;
    periodic.stopAll();
    metrics.stop();
    await attempt(() => logs.flush());
    if (backupInFlight) await backupInFlight; // a backup half-way through keeps its connection until done
    store.close();
    state = 'stopped';
    if (errors.length > 0) throw new AggregateError(errors, 'errors while stopping the console');
  };

  const run = (deadline: AbortSignal | null): Promise<void> => {
    state = 'stopping';
    stopping = shutdown(deadline).finally(() => {
      stopping = null;
    });
    return stopping;
  };

  /** Aborts: cuts work in flight now. During a close() it fires the drain's deadline and waits for it. */
  const destroy = async (): Promise<void> => {
    if (stopping) {
      if (drain && !drain.signal.aborted) log.warn('stop requested again while draining: aborting what is left');
      drain?.abort();
      return stopping;
    }
    if (state === 'stopped' || state === 'new' || state === 'stopping') return;
    log.info('stopping');
    return run(null);
  };

  /** Drains: stops accepting, lets work in flight finish for up to `graceMs`, then aborts the rest. */
  const close = async (options: { graceMs?: number } = {}): Promise<void> => {
    if (stopping) return stopping;
    if (state === 'stopped' || state === 'new' || state === 'stopping') return;
    const grace = graceDeadline(options.graceMs);
    drain = grace.controller;
    log.info({ graceMs: options.graceMs ?? config.get().ops.shutdownGraceSeconds * 1000 }, 'draining');
    try {
      await run(grace.controller.signal);
    } finally {
      grace.cancel();
      drain = null;
    }
  };
  const stop = destroy;

  const start = async (): Promise<ConsoleAddresses> => {
    if (state === 'running' && addresses) return addresses;
    if (state !== 'new') throw new Error(`console cannot start from state ${state}`);
    state = 'starting';
    try {
      metrics.start();
      if (tokenSource === 'generated') log.info({ path: join(settings.dataDir, 'admin-token') }, 'generated admin token');
      await http.init();
      await http.register(healthPlugin, { health, clock, version, startedAt, startedMono });
      await http.register(opsPlugin, { ops, logs, metrics, periodic, auth });
      await http.register(consoleConfigPlugin, { config, admin: configAdmin, store, auth });
      await http.register(monitoringPlugin, { monitoring, config, clock, auth });
      await http.register(openaiRouterPlugin, { auth, local: openaiLocal, remote: openaiRemote });
      await http.register(engineHttp.plugin, { engine, auth, clock });
      if (limiter) await http.register(limiterPlugin, { limiter, auth, stream });
      await http.register(trainingPlugin, { training, auth, clock });
      await http.register(trainingDatasetsPlugin, { datasets, auth });
      await http.register(runtimePlugin, { runtime, auth });
      await http.register(modelLibraryPlugin, { library: models, auth, clock });
      await http.register(alertsPlugin, { inbox: alertInbox, auth });
      await http.register(consoleStreamPlugin, { stream, logs, auth, loginLink, adminToken });
      await http.register(dashboardPlugin, { root: options.dashboardRoot ?? join(packageRoot(), 'dist/renderer') });
      for (const s of services) {
        await s.start();
        started.push(s);
      }
      for (const t of coreTasks) t.start();
      const { port: httpPort } = await http.listen();
      const grpcPort = await grpc.start();
      const host = cfg.server.host.includes(':') ? `[${cfg.server.host}]` : cfg.server.host;
      addresses = { httpUrl: `http://${host}:${httpPort}`, grpcAddress: `${host}:${grpcPort}`, httpPort, grpcPort };
      const urlOf = (m: { host: string; port: number }) => `http://${m.host.includes(':') ? `[${m.host}]` : m.host}:${m.port}`;
      if (limiterHttp && limiter) {
        await limiterHttp.init();
        await limiterHttp.register(healthPlugin, { health, clock, version, startedAt, startedMono });
        await limiterHttp.register(openaiRouterPlugin, { auth, remote: openaiRemote });
        await limiterHttp.register(limiterPlugin, { limiter, auth, stream });
        addresses.limiterUrl = urlOf(await limiterHttp.listen());
      }
      if (metricsHttp) {
        await metricsHttp.init();
        await metricsHttp.register(metricsOnlyPlugin, { metrics, auth });
        addresses.metricsUrl = urlOf(await metricsHttp.listen());
      }
      state = 'running';
      log.info({ ...addresses, dataDir: settings.dataDir, version }, 'console ready');
      return addresses;
    } catch (err) {
      state = 'running';
      await stop().catch(() => undefined);
      throw err;
    }
  };

  return {
    settings,
    config,
    configAdmin,
    clock,
    store,
    logs,
    metrics,
    periodic,
    health,
    http,
    grpc,
    adminToken,
    version,
    snapshots,
    serviceControls: () => {
      const byName = new Map(services.map((s) => [s.name, s]));
      const isRunning = (name: string) => state === 'running' && !pausedServices.has(name);
      const stopWithDependants = async (name: string, done: string[]): Promise<void> => {
        for (const [dependant, needs] of Object.entries(SERVICE_DEPENDENCIES)) {
          if (needs.includes(name) && isRunning(dependant)) await stopWithDependants(dependant, done);
        }
        const svc = byName.get(name);
        if (!svc || !isRunning(name)) return;
        pausedServices.add(name);
        const grace = graceDeadline();
        try {
          await svc.close({ deadline: grace.controller.signal });
        } finally {
          grace.cancel();
        }
        done.push(name);
      };
      const startWithNeeds = async (name: string, done: string[]): Promise<void> => {
        for (const need of SERVICE_DEPENDENCIES[name] ?? []) if (!isRunning(need)) await startWithNeeds(need, done);
        const svc = byName.get(name);
        if (!svc || state !== 'running' || !pausedServices.has(name)) return;
        await svc.start();
        pausedServices.delete(name);
        done.push(name);
      };
      return services.map((s) => ({
        name: s.name,
        running: () => isRunning(s.name),
        start: async () => {
          const done: string[] = [];
          await startWithNeeds(s.name, done);
          if (done.length > 1) log.info({ started: done }, `started ${s.name} and what it needs first`);
          return done;
        },
        stop: async () => {
          const done: string[] = [];
          await stopWithDependants(s.name, done);
          if (done.length > 1) log.warn({ stopped: done }, `stopped ${s.name} and what depends on it first`);
          return done;
        },
      }));
    },
    loginUrl: () => (addresses ? loginLink.url(addresses.httpUrl) : null),
    models,
    monitoring,
    engine,
    training,
    start,
    stop,
    close,
    destroy,
    addresses: () => {
      if (!addresses) throw new Error('console not started');
      return addresses;
    },
  };
}
