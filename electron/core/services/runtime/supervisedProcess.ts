import { constants } from 'node:os';
import type { Logger } from 'pino';
import type { RuntimeProcessConfig } from '../../../../shared/contracts/config/runtime.js';
import type { LogLine, ProcessState, RuntimeRunParams } from '../../../../shared/contracts/runtime.js';
import type { Clock, TimerHandle } from '../../base/clock.js';
import { AppError, ErrorCode } from '../../base/errors.js';
import type { HealthProbe } from './healthProbe.js';
import { ManagedProcess, type ChildProcessRegistry } from '../../base/managedProcess.js';
import { maskLogText } from './logText.js';
import type { ProcessRecords } from './processRecords.js';
import { processStartTime } from '../../base/processUtil.js';
import type { RotatingLog } from './rotatingLog.js';

/** Characters of child output returned in a start-up failure (contract §8.5). */
export const START_FAILURE_TAIL_CHARS = 4000;
const OUTPUT_KEPT_CHARS = 16 * 1024;
const RECENT_LINES = 20;
const READY_POLL_MS = 200;

/** The run parameters of a gateway started through `POST /api/runtime/start`. */
export interface RunInfo {
  runId: string;
  params: RuntimeRunParams;
}

/** Everything needed to spawn a process, resolved and validated beforehand. */
export interface LaunchSpec {
  config: RuntimeProcessConfig;
  executable: string;
  cwd: string;
  env: Record<string, string>;
  run: RunInfo | null;
  /** How the process is named in messages (`Gateway process` for the contract's gateway, else `Process '<name>'`). */
  label: string;
  /** Re-checks the configuration after a start-up failure (the message lists what it finds). */
  recheck: () => string[];
}

/** What a supervised process needs from its service. */
export interface SupervisorContext {
  clock: Clock;
  logger: Logger;
  records: ProcessRecords;
  /** Where /threads lists the supervised children (optional). */
  children?: ChildProcessRegistry;
  probe: HealthProbe;
  log: RotatingLog;
  emitLog(line: LogLine): void;
  emitState(name: string): void;
  onRestart(name: string): void;
}

/** Python-style return code: the exit code, or minus the signal number. */
function returnCode(code: number | null, signal: NodeJS.Signals | null): number | null {
  if (code !== null) return code;
  if (signal !== null) return -(constants.signals[signal] ?? 0);
  return null;
}

function cancellableSleep(clock: Clock, ms: number): { promise: Promise<'slept'>; cancel: () => void } {
  let handle: TimerHandle | null = null;
  const promise = new Promise<'slept'>((resolve) => {
    handle = clock.setTimeout(() => resolve('slept'), ms);
  });
  return { promise, cancel: () => handle?.cancel() };
}

type ReadyOutcome = 'ready' | 'exited' | 'timeout' | 'cancelled';

/**
 * One supervised child: spawn (detached, in its own process group), start-up readiness, output to
 * a rotating log and to listeners, stop (SIGTERM to the group, SIGKILL after the grace period),
 * and the restart policy with exponential backoff on the injected clock.
 */
export class SupervisedProcess {
  state: ProcessState = 'not_running';
  pid: number | null = null;
  exitCode: number | null = null;
  exitSignal: string | null = null;
  lastError: string | null = null;
  /** Consecutive restarts done by the restart policy (reset by a manual start or a long enough run). */
  restarts = 0;
  launch: LaunchSpec | null = null;
  private proc: ManagedProcess | null = null;
  /** Resolves once the current child has exited, its output is read and onExit has run. */
  private exited: Promise<void> | null = null;
  private hasExited = true;
  private startedWall: number | null = null;
  private startedMono: number | null = null;
  private restartTimer: TimerHandle | null = null;
  private nextRestartMono: number | null = null;
  private stopPromise: Promise<void> | null = null;
  private stopRequested = false;
  private generation = 0;
  private output = '';
  private readonly recent: string[] = [];

  constructor(
    readonly name: string,
    private readonly ctx: SupervisorContext,
  ) {}

  /** True while a child of ours is alive or being started/stopped. */
  get active(): boolean {
    return this.state === 'starting' || this.state === 'running' || this.state === 'stopping';
  }

  get startedAt(): number | null {
    return this.startedWall;
  }

  uptimeSeconds(): number | null {
    if (!this.active || this.startedMono === null) return null;
    return Math.max(0, (this.ctx.clock.monotonic() - this.startedMono) / 1000);
  }

  nextRestartInSeconds(): number | null {
    if (this.state !== 'backoff' || this.nextRestartMono === null) return null;
    return Math.max(0, (this.nextRestartMono - this.ctx.clock.monotonic()) / 1000);
  }

  recentLines(): string[] {
    return [...this.recent];
  }

  /** A manual start: resets the restart count; resolves with the pid once the process is ready. */
  async start(launch: LaunchSpec): Promise<number> {
    this.cancelRestart();
    this.restarts = 0;
    this.lastError = null;
    return this.launchOnce(launch);
  }

  /**
   * Stops the process (or cancels a pending restart). Resolves with the pid that was stopped, or
   * null when there was nothing to stop.
   */
  stop(): Promise<number | null> {
    return this.drain((this.launch?.config.stopGraceSeconds ?? 10) * 1000);
  }

  /**
   * Drains: SIGTERM to the process group, SIGKILL when `grace` runs out: a number of milliseconds
   * (stop(): `stopGraceSeconds`) or a signal (a console stop's deadline). Resolves with the pid
   * stopped, or null when there was nothing to stop.
   */
  async drain(grace: number | AbortSignal): Promise<number | null> {
    if (this.state === 'backoff') {
      this.cancelRestart();
      this.state = 'not_running';
      this.supervisorLine('restart cancelled by a stop request');
      this.ctx.emitState(this.name);
      return this.pid;
    }
    if (this.state === 'stopping' && this.stopPromise) {
      await this.stopPromise;
      return this.pid;
    }
    if (this.state !== 'starting' && this.state !== 'running') return null;
    const pid = this.pid;
    this.stopRequested = true;
    this.state = 'stopping';
    this.ctx.emitState(this.name);
    this.stopPromise = this.terminate(grace);
    try {
      await this.stopPromise;
    } finally {
      this.stopPromise = null;
    }
    this.state = 'not_running';
    this.ctx.emitState(this.name);
    return pid;
  }

  private async launchOnce(launch: LaunchSpec): Promise<number> {
    const { config } = launch;
    this.launch = launch;
    this.stopRequested = false;
    this.state = 'starting';
    this.exitCode = null;
    this.exitSignal = null;
    this.output = '';
    const gen = ++this.generation;
    this.ctx.emitState(this.name);

    // Its own process group; output goes to the rotating log, the start-up tail and (as lines) to listeners.
    const proc = ManagedProcess.spawn({
      command: launch.executable,
      args: config.args,
      cwd: launch.cwd,
      env: launch.env,
      clock: this.ctx.clock,
      onOutput: (_stream, text) => {
        this.ctx.log.write(text);
        this.output = (this.output + text).slice(-OUTPUT_KEPT_CHARS);
      },
      onLine: (stream, line) => this.addLine(stream, line),
      ...(this.ctx.children ? { registry: { registry: this.ctx.children, name: `runtime ${this.name}`, kind: 'runtime' as const, detail: () => [`supervisor state: ${this.state}`, `restarts: ${this.restarts}`] } } : {}),
    });
    this.proc = proc;
    this.hasExited = false;
    // `exited` resolves after the output is drained (the last lines of a crash are in the tail).
    this.exited = proc.exited.then((exit) => {
      this.hasExited = true;
      if (exit.error) {
        this.ctx.logger.warn({ err: exit.error, process: this.name }, 'child process error');
        return;
      }
      this.onExit(gen, proc.pid ?? null, exit.code, exit.signal);
    });

    if (proc.pid === undefined) {
      const err = (await proc.exited).error ?? new Error('no pid');
      this.hasExited = true;
      this.state = 'exited';
      this.lastError = `failed to spawn: ${err.message}`;
      this.supervisorLine(this.lastError);
      this.ctx.emitState(this.name);
      throw new AppError(ErrorCode.INTERNAL_ERROR, `${launch.label} could not be started: ${err.message}`, { status: 500 });
    }
    const pid = proc.pid;
    this.pid = pid;
    this.startedWall = this.ctx.clock.now();
    this.startedMono = this.ctx.clock.monotonic();
    this.ctx.records.put({
      name: this.name,
      pid,
      procStart: processStartTime(pid),
      startedAt: this.startedWall,
      consolePid: process.pid,
      runId: launch.run?.runId ?? null,
      mode: launch.run?.params.mode ?? null,
      command: launch.executable,
    });
    this.supervisorLine(
      `started pid ${pid}${launch.run ? ` (run ${launch.run.runId}, mode ${launch.run.params.mode})` : ''}: ${[launch.executable, ...config.args].join(' ')}`,
    );
    this.ctx.logger.info({ process: this.name, pid, runId: launch.run?.runId }, 'process started');

    const outcome = await this.waitReady(launch, gen);
    if (this.stopRequested || gen !== this.generation || outcome === 'cancelled') {
      throw new AppError(ErrorCode.CONFLICT, `${launch.label} start was cancelled by a stop request (PID: ${pid})`);
    }
    if (outcome === 'ready') {
      this.state = 'running';
      this.supervisorLine(`ready (pid ${pid})`);
      this.ctx.emitState(this.name);
      return pid;
    }
    if (outcome === 'timeout') {
      const what = config.healthUrl ? `health URL ${config.healthUrl}` : `port ${config.port ?? ''}`;
      this.supervisorLine(`not ready within ${config.startupTimeoutSeconds} s (${what}); stopping it`);
      await this.terminate(config.stopGraceSeconds * 1000);
      this.state = 'exited';
      this.lastError = `did not become ready within ${config.startupTimeoutSeconds} s`;
      this.ctx.emitState(this.name);
      throw new AppError(
        ErrorCode.TIMEOUT,
        `${launch.label} did not become ready within ${config.startupTimeoutSeconds} s (${what}); it was stopped (PID: ${pid})\nRecent log output:\n${this.tail()}`,
      );
    }
    // exited during start-up: the output has drained and onExit has recorded the code
    const lines = [
      `${launch.label} exited unexpectedly`,
      `Exit code: ${this.exitCode ?? 'unknown'}`,
      'Recent log output:',
      this.tail(),
    ];
    const issues = launch.recheck();
    if (issues.length > 0) lines.push(`Configuration issues detected: ${issues.join('; ')}`);
    throw new AppError(ErrorCode.INTERNAL_ERROR, lines.join('\n'), { status: 500 });
  }

  /** The last 4000 characters of this run's output, secrets masked. */
  private tail(): string {
    return maskLogText(this.output, this.launch?.env).slice(-START_FAILURE_TAIL_CHARS).replace(/\n$/, '');
  }

  private async waitReady(launch: LaunchSpec, gen: number): Promise<ReadyOutcome> {
    const { config } = launch;
    const clock = this.ctx.clock;
    const exited = this.exited!.then(() => 'exited' as const);
    const stale = () => gen !== this.generation || this.state !== 'starting';
    if (!config.healthUrl && config.port === undefined) {
      const watch = cancellableSleep(clock, config.startupWatchSeconds * 1000);
      const r = await Promise.race([exited, watch.promise]);
      watch.cancel();
      if (r === 'exited') return 'exited';
      return stale() ? 'cancelled' : 'ready';
    }
    const deadline = clock.monotonic() + config.startupTimeoutSeconds * 1000;
    for (;;) {
      if (this.hasExited) return 'exited';
      if (stale()) return 'cancelled';
      const probe = config.healthUrl ? await this.ctx.probe.http(config.healthUrl) : await this.ctx.probe.tcp(config.port!);
      if (this.hasExited) return 'exited';
      if (stale()) return 'cancelled';
      if (probe.accessible) return 'ready';
      if (clock.monotonic() >= deadline) return 'timeout';
      const pause = cancellableSleep(clock, READY_POLL_MS);
      await Promise.race([exited, pause.promise]);
      pause.cancel();
    }
  }

  /** SIGTERM to the process group; SIGKILL when it is still there after `grace` (ms, or when a deadline fires). */
  private async terminate(grace: number | AbortSignal): Promise<void> {
    const pid = this.pid;
    const proc = this.proc;
    const exited = this.exited;
    if (pid === null || proc === null || exited === null || this.hasExited) return;
    this.supervisorLine(`stopping: SIGTERM to process group ${pid}`);
    const after = typeof grace === 'number' ? `${grace / 1000} s` : 'the stop deadline';
    await proc.close(grace, () => this.supervisorLine(`still running ${after} after SIGTERM: SIGKILL to process group ${pid}`));
    await exited;
  }

  private onExit(gen: number, pid: number | null, code: number | null, signal: NodeJS.Signals | null): void {
    // (Whatever the main process left in its group was killed when it exited: no orphans.)
    if (pid !== null) this.ctx.records.remove(this.name, pid);
    if (gen !== this.generation) return;
    this.exitCode = returnCode(code, signal);
    this.exitSignal = signal;
    this.supervisorLine(`exited (pid ${pid ?? '?'}) with ${signal ? `signal ${signal}` : `code ${code}`}`);
    const uptimeMs = this.startedMono === null ? 0 : this.ctx.clock.monotonic() - this.startedMono;
    this.ctx.logger.info({ process: this.name, pid, code, signal, uptimeMs }, 'process exited');
    if (this.state === 'starting') {
      this.state = 'exited';
      this.lastError = `exited during start-up with ${signal ? `signal ${signal}` : `code ${code}`}`;
    } else if (this.state === 'running') {
      this.lastError = `exited unexpectedly with ${signal ? `signal ${signal}` : `code ${code}`}`;
      this.ctx.logger.warn({ process: this.name, pid, code, signal }, 'process exited unexpectedly');
      this.afterFailure(code !== 0 || signal !== null, uptimeMs);
    }
    this.ctx.emitState(this.name);
  }

  /** Applies the restart policy after an unexpected exit (or a failed restart). */
  private afterFailure(failed: boolean, uptimeMs: number): void {
    const launch = this.launch;
    const policy = launch?.config.restart;
    if (!launch || !policy || policy.policy === 'never' || (policy.policy === 'on-failure' && !failed)) {
      this.state = 'exited';
      return;
    }
    if (uptimeMs >= policy.resetAfterSeconds * 1000) this.restarts = 0;
    if (policy.maxRestarts > 0 && this.restarts >= policy.maxRestarts) {
      this.state = 'failed';
      this.lastError = `${this.lastError ?? 'exited'}; gave up after ${this.restarts} restarts`;
      this.supervisorLine(`gave up after ${this.restarts} restarts`);
      this.ctx.logger.error({ process: this.name, restarts: this.restarts }, 'restart policy gave up');
      return;
    }
    const delayMs = Math.min(policy.initialDelaySeconds * policy.multiplier ** this.restarts, policy.maxDelaySeconds) * 1000;
    this.state = 'backoff';
    this.nextRestartMono = this.ctx.clock.monotonic() + delayMs;
    this.supervisorLine(`restarting in ${delayMs / 1000} s (restart ${this.restarts + 1})`);
    this.restartTimer = this.ctx.clock.setTimeout(() => void this.restartNow(launch), delayMs);
  }

  private async restartNow(launch: LaunchSpec): Promise<void> {
    this.restartTimer = null;
    this.nextRestartMono = null;
    if (this.state !== 'backoff') return;
    this.restarts++;
    this.ctx.onRestart(this.name);
    try {
      await this.launchOnce(launch);
    } catch (err) {
      this.ctx.logger.warn({ process: this.name, err: (err as Error).message.split('\n')[0] }, 'restart failed');
      // Re-read after the await: a stop may have moved it on (then there is nothing to restart).
      if ((this.state as ProcessState) === 'exited') {
        this.afterFailure(true, 0);
        this.ctx.emitState(this.name);
      }
    }
  }

  private cancelRestart(): void {
    this.restartTimer?.cancel();
    this.restartTimer = null;
    this.nextRestartMono = null;
  }

  private addLine(stream: 'stdout' | 'stderr' | 'supervisor', raw: string): void {
    const line = maskLogText(raw, this.launch?.env);
    this.recent.push(line);
    if (this.recent.length > RECENT_LINES) this.recent.shift();
    this.ctx.emitLog({ name: this.name, stream, line, at: this.ctx.clock.now() });
  }

  private supervisorLine(message: string): void {
    const text = `[runtime ${new Date(this.ctx.clock.now()).toISOString()}] ${message}`;
    this.ctx.log.write(`${text}\n`);
    this.addLine('supervisor', text);
  }
}
