import { EventEmitter, on } from 'node:events';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { RuntimeConfig, RuntimeProcessConfig } from '../../../../shared/contracts/config/runtime.js';
import {
  validateStartRequest,
  type GatewayHealthResponse,
  type GatewayStatusResponse,
  type HealthStatus,
  type LogLine,
  type LogTailResponse,
  type OrphanKillResponse,
  type ProcessInfo,
  type ProcessState,
  type ProcessStatusName,
  type RuntimeMode,
  type RuntimeModeResponse,
  type RuntimeSnapshot,
  type RuntimeStartResponse,
  type RuntimeStatusResponse,
  type RuntimeStopResponse,
} from '../../../../shared/contracts/runtime.js';
import type { Clock } from '../../base/clock.js';
import type { ChildProcessRegistry } from '../../base/managedProcess.js';
import type { ConfigStore } from '../../base/config.js';
import { AppError, ErrorCode } from '../../base/errors.js';
import type { ComponentHealth, HealthRegistry } from '../../base/health.js';
import { BaseService } from '../../base/lifecycle.js';
import type { MetricsRegistry } from '../../base/metrics.js';
import type { AuditPort } from '../../base/ports.js';
import type { Store } from '../../base/store.js';
import { HealthProbe } from './healthProbe.js';
import { maskLogText } from './logText.js';
import { ProcessRecords, type ProcessRecord } from './processRecords.js';
import { isDirectory, isProcessAlive, processStartTime, resolveExecutable, signalGroup } from '../../base/processUtil.js';
import { RotatingLog } from './rotatingLog.js';
import { RuntimeMetrics } from './runtimeMetrics.js';
import { SupervisedProcess, type LaunchSpec, type RunInfo } from './supervisedProcess.js';

export interface RuntimeServiceOptions {
  config: ConfigStore;
  clock: Clock;
  logger: Logger;
  store: Store;
  metrics: MetricsRegistry;
  /** Start/stop/kill are recorded here (with the actor the surface passes in). */
  audit: AuditPort;
  health: HealthRegistry;
  /** Logs go to `<dataDir>/logs/runtime/<name>.log`; relative `cwd`s resolve against it. */
  dataDir: string;
  /** The console's environment; children inherit it minus the console's own secrets. */
  env: NodeJS.ProcessEnv;
  /** Where /threads lists the supervised children. */
  children?: ChildProcessRegistry;
}

/** The console's own secrets never reach a child. */
const CONSOLE_SECRETS = new Set(['CONSOLE_ADMIN_TOKEN', 'SIDECAR_ADMIN_TOKEN', 'CY_LLM_INTERNAL_TOKEN']);

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** `YYYYMMDD_HHMMSS` in local time (contract §1.4). */
export function formatRunId(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}_${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
}

/** ISO-8601 local time with microseconds and no zone, e.g. `2025-04-01T12:00:00.000000` (contract §1.5). */
export function formatLocalTimestamp(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}000`;
}

function contractStatus(state: ProcessState): ProcessStatusName {
  if (state === 'starting' || state === 'running' || state === 'stopping') return 'running';
  if (state === 'not_running') return 'not_running';
  return 'exited';
}

const ORPHAN_MESSAGE = 'orphan from a previous run';
const ORPHAN_POLL_MS = 100;

/**
 * The runtime supervisor (contract §8): runs the configured processes (the "gateway" and any
 * others), each detached in its own process group, with start-up validation and readiness,
 * health probes, per-process rotating logs streamed to listeners, an optional restart policy with
 * exponential backoff, no orphans on stop, and detection of processes a previous run left behind.
 */
export class RuntimeService extends BaseService {
  readonly name = 'runtime';
  private readonly processes = new Map<string, SupervisedProcess>();
  private readonly orphans = new Map<string, ProcessRecord>();
  private readonly logs = new Map<string, RotatingLog>();
  private readonly events = new EventEmitter();
  private readonly probe = new HealthProbe(1000);
  private readonly records: ProcessRecords;
  private readonly metrics: RuntimeMetrics;
  private readonly log: Logger;

  constructor(private readonly options: RuntimeServiceOptions) {
    super();
    this.log = options.logger;
    this.records = new ProcessRecords(options.store);
    this.events.setMaxListeners(0);
    this.metrics = new RuntimeMetrics(options.metrics, { gatewayUp: () => this.gatewayProcess()?.state === 'running' });
    options.health.addComponent('runtime', () => this.component());
    options.health.addLivenessField('gateway', () => this.livenessGateway());
  }

  private get cfg(): RuntimeConfig {
    return this.options.config.get().runtime;
  }

  override async start(): Promise<void> {
    const wasRunning = this.running;
    await super.start();
    if (!wasRunning && this.running) this.autoStart();
  }

  protected async onStart(): Promise<void> {
    await this.detectOrphans();
  }

  /** Starts the `autoStart` entries in the background; a failure is logged, never fatal. */
  private autoStart(): void {
    for (const spec of this.cfg.processes) {
      if (!spec.autoStart || spec.name === this.cfg.gateway) continue;
      void this.launchProcess(spec.name).catch((err: unknown) =>
        this.log.error({ process: spec.name, err: (err as Error).message }, 'auto-start failed'),
      );
    }
  }

  /** Gateways get SIGTERM now and until the deadline to exit (then SIGKILL); no restart meanwhile. */
  protected override async onDrain(deadline: AbortSignal): Promise<void> {
    await Promise.allSettled([...this.processes.values()].map((p) => p.drain(deadline)));
  }

  protected override async onStop(): Promise<void> {
    await Promise.allSettled([...this.processes.values()].map((p) => p.stop()));
    // Closed, not forgotten: a log reopens on its next write (after a stop → start of the service).
    for (const log of this.logs.values()) log.close();
    await this.probe.close();
  }

  // --- contract §8 -------------------------------------------------------------------------

  /** `GET /api/runtime/mode`. */
  mode(): RuntimeModeResponse {
    const p = this.gatewayProcess();
    const run = p?.active ? p.launch?.run : undefined;
    if (!p || !p.active || !run) return { mode: 'stopped', is_backtest: false, run_id: null, schedule_mode: null, is_running: false };
    return { mode: run.params.mode, is_backtest: run.params.mode === 'backtest', run_id: run.runId, schedule_mode: run.params.schedule_mode, is_running: p.state === 'running' };
  }

  /** `GET /api/runtime/gateway/status`. */
  gatewayStatus(): GatewayStatusResponse {
    const p = this.gatewayProcess();
    return {
      is_running: p?.state === 'running',
      port: this.gatewayPort(),
      run_id: p?.active ? (p.launch?.run?.runId ?? null) : null,
      process_status: p ? contractStatus(p.state) : 'not_running',
      pid: p?.active ? p.pid : null,
    };
  }

  /** `GET /api/runtime/gateway/health` and `GET /health/gateway`. */
  async gatewayHealth(): Promise<GatewayHealthResponse> {
    const p = this.gatewayProcess();
    const spec = this.specOf(this.cfg.gateway);
    const processStatus = p ? contractStatus(p.state) : 'not_running';
    const processHealthy = p?.state === 'running';
    const port = this.gatewayPort();
    const probe = spec?.healthUrl ? await this.probe.http(spec.healthUrl) : await this.probe.tcp(port);
    const issues: string[] = [];
    if (spec) this.prepare(spec, null, issues);
    const configured = spec !== undefined;
    const configHealthy = configured && issues.length === 0;
    const status: HealthStatus = !processHealthy ? 'unhealthy' : !probe.accessible || !configHealthy ? 'degraded' : 'healthy';
    return {
      status,
      checks: {
        process: {
          status: processHealthy ? 'healthy' : 'unhealthy',
          details: { pid: p?.active ? p.pid : null, status: processStatus, returncode: p && !p.active ? p.exitCode : null },
        },
        port: {
          status: probe.accessible ? 'healthy' : 'unhealthy',
          details: {
            port,
            accessible: probe.accessible,
            ...(spec?.healthUrl ? { url: spec.healthUrl, status_code: probe.statusCode ?? null } : {}),
            ...(probe.error ? { error: probe.error } : {}),
          },
        },
        configuration: {
          status: configHealthy ? 'healthy' : 'unhealthy',
          details: {
            has_runtime_manager: configured,
            ...(configured ? (issues.length > 0 ? { issues } : {}) : { issues: [`no process named '${this.cfg.gateway}' in runtime.processes`] }),
          },
        },
      },
      timestamp: formatLocalTimestamp(this.options.clock.now()),
    };
  }

  /** `GET /api/status`. */
  apiStatus(): RuntimeStatusResponse {
    const p = this.gatewayProcess();
    const state = p?.state ?? 'not_running';
    // A clean exit (code 0, no signal) is the process finishing its work, not a fault.
    const cleanExit = state === 'exited' && p?.exitCode === 0 && p.exitSignal === null;
    const degraded = (state === 'exited' && !cleanExit) || state === 'backoff' || state === 'failed' || this.orphans.has(this.cfg.gateway);
    return {
      status: degraded ? 'degraded' : 'operational',
      service: 'runtime-service',
      runtime: {
        gateway_running: state === 'running',
        gateway_port: this.gatewayPort(),
        gateway_pid: p?.active ? p.pid : null,
        gateway_process_status: contractStatus(state),
        has_runtime_manager: this.specOf(this.cfg.gateway) !== undefined,
      },
    };
  }

  /** `POST /api/runtime/start`: validates everything first and lists every problem; audited as `actor`. */
  async startGateway(body: unknown, actor: string): Promise<RuntimeStartResponse> {
    this.requireRunning();
    const name = this.cfg.gateway;
    const p = this.proc(name);
    if (p.active) throw new AppError(ErrorCode.CONFLICT, `Runtime is already running (PID: ${p.pid})`);
    const parsed = validateStartRequest(body ?? {});
    const issues = parsed.ok ? [] : [...parsed.issues];
    const rawMode = (body as { mode?: unknown } | null)?.mode;
    const mode: RuntimeMode | null = rawMode === 'live' || rawMode === 'backtest' ? rawMode : null;
    const spec = this.specOf(name);
    if (!spec) issues.push(`no process named '${name}' is configured (runtime.processes)`);
    const launch = spec ? this.prepare(spec, mode, issues) : null;
    if (issues.length > 0 || !launch || !parsed.ok) {
      throw new AppError(ErrorCode.INVALID_REQUEST, `Gateway configuration validation failed: ${issues.join('; ')}`);
    }
    this.refuseIfOrphan(name, 'Gateway');
    const run: RunInfo = { runId: formatRunId(this.options.clock.now()), params: parsed.value };
    launch.run = run;
    Object.assign(launch.env, {
      RUNTIME_RUN_ID: run.runId,
      RUNTIME_MODE: run.params.mode,
      RUNTIME_SCHEDULE_MODE: run.params.schedule_mode,
      RUNTIME_PARAMS: JSON.stringify(run.params),
    });
    launch.recheck = () => {
      const again: string[] = [];
      const now = this.specOf(name);
      if (now) this.prepare(now, run.params.mode, again);
      return again;
    };
    const pid = await p.start(launch);
    this.options.audit.record({ actor, action: 'runtime.start', target: 'gateway', detail: { run_id: run.runId, pid } });
    return { status: 'started', run_id: run.runId, pid, port: this.gatewayPort() };
  }

  /** `POST /api/runtime/stop`; audited as `actor`. */
  async stopGateway(actor: string): Promise<RuntimeStopResponse> {
    const name = this.cfg.gateway;
    const p = this.processes.get(name);
    if (!p || !(p.active || p.state === 'backoff')) {
      const orphan = this.orphans.get(name);
      const hint = orphan ? ` A gateway from a previous console run is still alive (PID: ${orphan.pid}); kill it with POST /api/runtime/processes/${name}/orphan/kill.` : '';
      if (p && (p.state === 'exited' || p.state === 'failed') && p.pid !== null) {
        throw new AppError(ErrorCode.INVALID_REQUEST, `No runtime is currently running. Previous Gateway process exited with code ${p.exitCode ?? 'unknown'}. PID: ${p.pid}${hint}`);
      }
      throw new AppError(ErrorCode.INVALID_REQUEST, `No runtime is currently running.${hint}`);
    }
    const pid = await p.stop();
    const message = `Runtime stopped successfully (PID: ${pid ?? 'unknown'})`;
    this.options.audit.record({ actor, action: 'runtime.stop', target: 'gateway', detail: { message } });
    return { status: 'stopped', message };
  }

  // --- every process (extension) -----------------------------------------------------------

  /** Every configured process, plus any still known (running after being removed from config, or orphaned). */
  list(): ProcessInfo[] {
    const names = new Set([...this.cfg.processes.map((s) => s.name), ...this.processes.keys(), ...this.orphans.keys()]);
    return [...names].sort().map((n) => this.info(n));
  }

  get(name: string): ProcessInfo {
    if (!this.known(name)) throw this.unknown(name);
    return this.info(name);
  }

  /** Starts a configured process other than the gateway (which starts with run parameters, §8.5); audited as `actor`. */
  async startProcess(name: string, actor: string): Promise<ProcessInfo> {
    const info = await this.launchProcess(name);
    this.options.audit.record({ actor, action: 'runtime.process.start', target: name, detail: { pid: info.pid } });
    return info;
  }

  /** Starts a non-gateway process (the public start and `autoStart`, which is not an admin action). */
  private async launchProcess(name: string): Promise<ProcessInfo> {
    this.requireRunning();
    if (name === this.cfg.gateway) {
      throw new AppError(ErrorCode.INVALID_REQUEST, `'${name}' is the gateway: start it with POST /api/runtime/start and its run parameters`);
    }
    const spec = this.specOf(name);
    if (!spec) throw this.unknown(name);
    const p = this.proc(name);
    if (p.active) throw new AppError(ErrorCode.CONFLICT, `Process '${name}' is already running (PID: ${p.pid})`);
    const issues: string[] = [];
    const launch = this.prepare(spec, null, issues);
    if (!launch || issues.length > 0) throw new AppError(ErrorCode.INVALID_REQUEST, `Process '${name}' configuration validation failed: ${issues.join('; ')}`);
    this.refuseIfOrphan(name, `Process '${name}'`);
    launch.recheck = () => {
      const again: string[] = [];
      const now = this.specOf(name);
      if (now) this.prepare(now, null, again);
      return again;
    };
    await p.start(launch);
    return this.info(name);
  }

  /** Stops a process; audited as `actor`. */
  async stopProcess(name: string, actor: string): Promise<ProcessInfo> {
    if (!this.known(name)) throw this.unknown(name);
    const p = this.processes.get(name);
    if (!p || !(p.active || p.state === 'backoff')) throw new AppError(ErrorCode.INVALID_REQUEST, `Process '${name}' is not running`);
    await p.stop();
    const info = this.info(name);
    this.options.audit.record({ actor, action: 'runtime.process.stop', target: name, detail: { pid: info.pid } });
    return info;
  }

  /** Kills a process a previous console run left behind (SIGTERM to its group, SIGKILL after the grace period); audited as `actor`. */
  async killOrphan(name: string, actor: string): Promise<OrphanKillResponse> {
    const orphan = this.liveOrphan(name);
    if (!orphan) throw new AppError(ErrorCode.NOT_FOUND, `No orphan process recorded for '${name}'`);
    await this.killRecord(orphan);
    this.options.audit.record({ actor, action: 'runtime.orphan.kill', target: name, detail: { pid: orphan.pid } });
    return { status: 'killed', pid: orphan.pid, message: `Killed ${ORPHAN_MESSAGE} (PID: ${orphan.pid})` };
  }

  /** The last `lines` lines of a process's log file (rotated files included), secrets masked. */
  async tail(name: string, lines: number): Promise<LogTailResponse> {
    if (!this.known(name)) throw this.unknown(name);
    const log = this.logFor(name);
    const env = this.processes.get(name)?.launch?.env;
    return { name, file: log.path, lines: (await log.tail(lines)).map((l) => maskLogText(l, env)) };
  }

  /** Live output lines (masked), of one process or all; returns the unsubscribe function. */
  onLog(listener: (line: LogLine) => void, name?: string): () => void {
    const wrapped = (line: LogLine) => {
      if (name === undefined || line.name === name) listener(line);
    };
    this.events.on('log', wrapped);
    return () => this.events.off('log', wrapped);
  }

  /**
   * Live output lines as an async iterator (of one process or all), until `signal` aborts; the
   * iteration then ends quietly.
   */
  async *logLines(name?: string, signal?: AbortSignal): AsyncGenerator<LogLine> {
    try {
      for await (const [line] of on(this.events, 'log', { signal }) as AsyncIterableIterator<[LogLine]>) {
        if (name === undefined || line.name === name) yield line;
      }
    } catch (err) {
      if ((err as Error).name !== 'AbortError') throw err;
    }
  }

  /** Called with a process name whenever its state changes. */
  onStateChange(listener: (name: string) => void): () => void {
    this.events.on('state', listener);
    return () => this.events.off('state', listener);
  }

  /** Cheap synchronous view for the dashboard's live stream (no I/O). */
  snapshot(): RuntimeSnapshot {
    const names = new Set([...this.cfg.processes.map((s) => s.name), ...this.processes.keys(), ...this.orphans.keys()]);
    return {
      processes: [...names].sort().map((name) => {
        const p = this.processes.get(name);
        return {
          name,
          state: p?.state ?? 'not_running',
          pid: p?.active ? p.pid : null,
          uptime_seconds: p?.uptimeSeconds() ?? null,
          restarts: p?.restarts ?? 0,
          exit_code: p && !p.active ? p.exitCode : null,
          orphan_pid: this.orphans.get(name)?.pid ?? null,
          last_lines: p?.recentLines() ?? [],
        };
      }),
    };
  }

  // --- health registry -----------------------------------------------------------------------

  private component(): ComponentHealth {
    const p = this.gatewayProcess();
    // A clean exit (code 0, no restart pending) is a finished job, not a fault.
    const failed = [...this.processes.values()].filter((x) => x.state === 'failed' || x.state === 'backoff' || (x.state === 'exited' && x.exitCode !== 0));
    return {
      status: this.running && failed.length === 0 ? 'UP' : 'DOWN',
      details: { gateway_running: p?.state === 'running', gateway_pid: p?.active ? p.pid : null },
    };
  }

  private livenessGateway(): Record<string, unknown> {
    const p = this.gatewayProcess();
    return {
      running: p?.state === 'running',
      port: this.gatewayPort(),
      pid: p?.active ? p.pid : null,
      process_status: p ? contractStatus(p.state) : 'not_running',
      returncode: p && !p.active ? p.exitCode : null,
    };
  }

  // --- internals -----------------------------------------------------------------------------

  private requireRunning(): void {
    if (!this.running) throw new AppError(ErrorCode.UNAVAILABLE, 'The runtime supervisor is not running');
  }

  private gatewayProcess(): SupervisedProcess | undefined {
    return this.processes.get(this.cfg.gateway);
  }

  private gatewayPort(): number {
    return this.specOf(this.cfg.gateway)?.port ?? this.cfg.gatewayPort;
  }

  private specOf(name: string): RuntimeProcessConfig | undefined {
    return this.cfg.processes.find((s) => s.name === name);
  }

  private known(name: string): boolean {
    return this.specOf(name) !== undefined || this.processes.has(name) || this.orphans.has(name);
  }

  private unknown(name: string): AppError {
    return new AppError(ErrorCode.NOT_FOUND, `No process named '${name}' (configure it in runtime.processes)`);
  }

  private proc(name: string): SupervisedProcess {
    let p = this.processes.get(name);
    if (!p) {
      p = new SupervisedProcess(name, {
        clock: this.options.clock,
        logger: this.log,
        records: this.records,
        ...(this.options.children ? { children: this.options.children } : {}),
        probe: this.probe,
        log: this.logFor(name),
        emitLog: (line) => this.events.emit('log', line),
        emitState: (n) => this.events.emit('state', n),
        onRestart: (n) => this.metrics.restarts.inc({ process: n }),
      });
      this.processes.set(name, p);
    }
    return p;
  }

  private logFor(name: string): RotatingLog {
    let log = this.logs.get(name);
    if (!log) {
      log = new RotatingLog({ path: join(this.options.dataDir, 'logs', 'runtime', `${name}.log`), maxBytes: this.cfg.logMaxBytes, maxFiles: this.cfg.logMaxFiles });
      this.logs.set(name, log);
    }
    return log;
  }

  /** The child's environment: the console's minus its own secrets, plus the entry's `env`. */
  private childEnv(spec: RuntimeProcessConfig): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.options.env)) if (v !== undefined && !CONSOLE_SECRETS.has(k)) env[k] = v;
    return { ...env, ...spec.env };
  }

  /**
   * Resolves a process entry into a launch spec, adding every problem found to `issues`: duplicate
   * names, working dir, executable, health URL, required environment (and the mode's, §8.5).
   */
  private prepare(spec: RuntimeProcessConfig, mode: RuntimeMode | null, issues: string[]): LaunchSpec | null {
    const before = issues.length;
    const dupes = this.cfg.processes.filter((s) => s.name === spec.name).length;
    if (dupes > 1) issues.push(`runtime.processes has ${dupes} entries named '${spec.name}'`);
    const cwd = resolve(this.options.dataDir, spec.cwd ?? '.');
    if (!isDirectory(cwd)) issues.push(`working directory does not exist: ${cwd}`);
    const env = this.childEnv(spec);
    const executable = resolveExecutable(spec.command, cwd, env.PATH ?? process.env.PATH);
    if (!executable) issues.push(`command not found or not executable: ${spec.command}`);
    if (spec.healthUrl !== undefined && !URL.canParse(spec.healthUrl)) issues.push(`healthUrl is not a valid URL: ${spec.healthUrl}`);
    const isSet = (v: string) => env[v] !== undefined && env[v] !== '';
    for (const v of spec.requiredEnv) if (!isSet(v)) issues.push(`${v} environment variable is required`);
    if (mode) {
      for (const v of this.cfg.modeEnv[mode]) {
        if (!isSet(v) && !spec.requiredEnv.includes(v)) issues.push(`${v} environment variable is required for ${mode} mode`);
      }
    }
    if (issues.length > before || !executable) return null;
    return { config: spec, executable, cwd, env, run: null, label: spec.name === this.cfg.gateway ? 'Gateway process' : `Process '${spec.name}'`, recheck: () => [] };
  }

  private refuseIfOrphan(name: string, label: string): void {
    const orphan = this.liveOrphan(name);
    if (orphan) {
      throw new AppError(
        ErrorCode.CONFLICT,
        `${label} from a previous console run is still alive (PID: ${orphan.pid}); kill it first: POST /api/runtime/processes/${name}/orphan/kill`,
      );
    }
  }

  /** The orphan of `name` if it is still alive; a dead one is forgotten. */
  private liveOrphan(name: string): ProcessRecord | undefined {
    const orphan = this.orphans.get(name);
    if (!orphan) return undefined;
    if (this.isSameProcess(orphan)) return orphan;
    this.orphans.delete(name);
    this.records.remove(orphan.name, orphan.pid);
    this.events.emit('state', name);
    return undefined;
  }

  private isSameProcess(r: ProcessRecord): boolean {
    if (!isProcessAlive(r.pid)) return false;
    const start = processStartTime(r.pid);
    return r.procStart === null || start === null || start === r.procStart;
  }

  /** Finds processes a previous run recorded and never saw exit: report them, or kill them (`orphanPolicy`). */
  private async detectOrphans(): Promise<void> {
    for (const record of this.records.list()) {
      if (this.processes.get(record.name)?.pid === record.pid) continue;
      if (!this.isSameProcess(record)) {
        this.records.remove(record.name, record.pid);
        continue;
      }
      if (this.cfg.orphanPolicy === 'kill') {
        this.log.warn({ process: record.name, pid: record.pid }, `killing ${ORPHAN_MESSAGE}`);
        await this.killRecord(record);
        this.options.audit.record({ actor: 'runtime', action: 'runtime.orphan.kill', target: record.name, detail: { pid: record.pid, policy: 'kill' } });
      } else {
        this.log.warn({ process: record.name, pid: record.pid }, `${ORPHAN_MESSAGE}: still alive; not owned by this console`);
        this.orphans.set(record.name, record);
      }
    }
  }

  private async killRecord(record: ProcessRecord): Promise<void> {
    const graceMs = (this.specOf(record.name)?.stopGraceSeconds ?? 10) * 1000;
    const clock = this.options.clock;
    signalGroup(record.pid, 'SIGTERM');
    const deadline = clock.monotonic() + graceMs;
    while (this.isSameProcess(record) && clock.monotonic() < deadline) await clock.sleep(ORPHAN_POLL_MS);
    if (this.isSameProcess(record)) {
      signalGroup(record.pid, 'SIGKILL');
      const killDeadline = clock.monotonic() + 5000;
      while (this.isSameProcess(record) && clock.monotonic() < killDeadline) await clock.sleep(ORPHAN_POLL_MS);
    }
    if (this.isSameProcess(record)) throw new AppError(ErrorCode.INTERNAL_ERROR, `Could not kill PID ${record.pid}`);
    this.orphans.delete(record.name);
    this.records.remove(record.name, record.pid);
    this.events.emit('state', record.name);
  }

  private info(name: string): ProcessInfo {
    const p = this.processes.get(name);
    const orphan = this.liveOrphan(name);
    const active = p?.active ?? false;
    const run = active ? p?.launch?.run : undefined;
    return {
      name,
      configured: this.specOf(name) !== undefined,
      state: p?.state ?? 'not_running',
      process_status: p ? contractStatus(p.state) : 'not_running',
      pid: p && (active || p.state !== 'not_running') ? p.pid : null,
      started_at: p && active && p.startedAt !== null ? new Date(p.startedAt).toISOString() : null,
      uptime_seconds: p?.uptimeSeconds() ?? null,
      restarts: p?.restarts ?? 0,
      exit_code: p && !active ? p.exitCode : null,
      exit_signal: p && !active ? p.exitSignal : null,
      run_id: run?.runId ?? null,
      mode: run?.params.mode ?? null,
      next_restart_in_seconds: p?.nextRestartInSeconds() ?? null,
      last_error: p?.lastError ?? null,
      orphan: orphan
        ? { pid: orphan.pid, started_at: new Date(orphan.startedAt).toISOString(), run_id: orphan.runId, message: `${ORPHAN_MESSAGE} (PID: ${orphan.pid}); kill it with POST /api/runtime/processes/${name}/orphan/kill` }
        : null,
      log_file: join(this.options.dataDir, 'logs', 'runtime', `${name}.log`),
    };
  }
}
