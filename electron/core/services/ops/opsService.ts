import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { threadId } from 'node:worker_threads';
import type { Logger } from 'pino';
import { maskSecret, isSecretKey } from '../../../../shared/mask.js';
import type { Clock } from '../../base/clock.js';
import type { ConfigStore } from '../../base/config.js';
import { AppError, ErrorCode } from '../../base/errors.js';
import { BaseService, drainUntil } from '../../base/lifecycle.js';
import type { ChildProcessRegistry } from '../../base/managedProcess.js';
import type { MetricsRegistry } from '../../base/metrics.js';
import { ScriptRunner, type ScriptRunResult } from './scriptRunner.js';

export interface OpsServiceOptions {
  config: ConfigStore;
  metrics: MetricsRegistry;
  logger: Logger;
  /** Environment reported by /env (process.env in production). */
  env: NodeJS.ProcessEnv;
  /** Base URL of the console, given to scripts so they can call its public API. */
  baseUrl: () => string;
  /** Registers a run-scoped API key; returns its revoker. */
  addTemporaryKey: (key: string) => () => void;
  clock: Clock;
  /** Every child process the console runs (runtime, trainer, run_script, self-tests, nvidia-smi), for /threads. */
  children: ChildProcessRegistry;
}

/** libuv's pool size as libuv reads it: `UV_THREADPOOL_SIZE` when a positive integer (at most 1024), else 4. */
export function libuvPoolSize(value: string | undefined): number {
  const n = Number.parseInt(value ?? '', 10);
  return Number.isFinite(n) && n > 0 ? Math.min(n, 1024) : 4;
}

/** A "thread" in the Node sense: the main thread, the libuv pool, workers, child processes. */
export interface ThreadInfo {
  /** The thread id (main: 0), or a child's pid; null for the libuv pool, which has no single id. */
  id: number | null;
  name: string;
  kind: 'main' | 'libuv-pool' | 'worker' | 'child-process';
  detail: string[];
}

/** The ops common API's logic (contract §2): env, threads, run_script. */
export class OpsService extends BaseService {
  readonly name = 'ops';
  private readonly scripts: ScriptRunner;
  /** run_script calls in flight; a drain lets them finish until its deadline. */
  private readonly runs = new Set<Promise<unknown>>();

  constructor(private readonly options: OpsServiceOptions) {
    super();
    this.scripts = new ScriptRunner({ clock: options.clock, children: options.children });
  }

  protected async onStart(): Promise<void> {
    this.disposables.defer(() => this.scripts.killAll());
  }

  /** A script already running may finish until the deadline; then stop kills what is left. */
  protected override async onDrain(deadline: AbortSignal): Promise<void> {
    if (this.runs.size === 0) return;
    this.options.logger.info({ scripts: this.runs.size }, 'ops draining: waiting for run_script in flight');
    if (!(await drainUntil(deadline, Promise.all([...this.runs])))) this.options.logger.warn({ scripts: this.runs.size }, 'ops drain deadline reached: killing run_script in flight');
  }

  /** Every environment variable, keys sorted, secrets masked (§2.1). */
  env(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const key of Object.keys(this.options.env).sort()) {
      const value = this.options.env[key] ?? '';
      out[key] = isSecretKey(key) ? maskSecret(value) : value;
    }
    return out;
  }

  /** Node's equivalent of thread stacks (§2.5): main thread, libuv pool, workers, child processes. */
  threads(filter: { name?: string; threadId?: number }): string {
    const lag = this.options.metrics.eventLoopLag();
    const resources = process.getActiveResourcesInfo();
    const counts = new Map<string, number>();
    for (const r of resources) counts.set(r, (counts.get(r) ?? 0) + 1);
    const stack = (new Error('stack').stack ?? '').split('\n').slice(1, 12).map((l) => `    ${l.trim()}`);
    // The pool of this process: libuv reads the real environment, not the one injected for /env.
    const poolSize = libuvPoolSize(process.env.UV_THREADPOOL_SIZE);
    const now = this.options.clock.now();
    const children: ThreadInfo[] = this.options.children.list().map((c) => ({
      id: c.pid,
      name: c.name,
      kind: 'child-process',
      detail: [
        `pid: ${c.pid}`,
        `kind: ${c.kind}`,
        `state: ${c.state}`,
        `started: ${new Date(c.startedAt).toISOString()} (running for s: ${((now - c.startedAt) / 1000).toFixed(1)})`,
        `executable: ${c.command}`,
        ...c.detail,
      ],
    }));
    const mem = process.memoryUsage();
    const all: ThreadInfo[] = [
      {
        id: threadId,
        name: 'main',
        kind: 'main',
        detail: [
          `event-loop lag ms: p50=${lag.p50} p99=${lag.p99} max=${lag.max}`,
          `heap used MB: ${(mem.heapUsed / 1048576).toFixed(1)} rss MB: ${(mem.rss / 1048576).toFixed(1)}`,
          `active handles: ${[...counts.entries()].map(([k, v]) => `${k}×${v}`).join(', ') || 'none'}`,
          'stack (at the time of this request):',
          ...stack,
        ],
      },
      {
        id: null,
        name: 'libuv-threadpool',
        kind: 'libuv-pool',
        detail: [
          `size: ${poolSize} (${process.env.UV_THREADPOOL_SIZE === undefined ? 'UV_THREADPOOL_SIZE unset: default 4' : `UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE}`})`,
          `CPU cores: ${availableParallelism()}`,
          'runs fs, dns, crypto and native addon work; no JS stacks',
        ],
      },
      ...children,
    ];
    const nameFilter = filter.name?.toLowerCase();
    const matching = all.filter((t) => (nameFilter === undefined || t.name.toLowerCase().includes(nameFilter)) && (filter.threadId === undefined || t.id === filter.threadId));
    const lines = [
      '=== Threads (Node.js) ===',
      'Node.js runs JavaScript on one main thread (the event loop); this lists what Node has in place of Python threads.',
      'Worker threads: none (the console starts no worker_threads). Child processes: every one the console runs',
      '(runtime supervisor, training jobs, run_script, backend self-tests, the nvidia-smi loop).',
      '',
    ];
    for (const t of matching) {
      lines.push(`${t.kind === 'child-process' ? 'Process' : 'Thread'} ${t.id ?? '-'}: ${t.name} [${t.kind}]`, ...t.detail.map((d) => (d.startsWith('    ') ? d : `  ${d}`)), '');
    }
    lines.push('=== Summary ===', `matching: ${matching.length} of ${all.length}`, `event-loop lag p99 ms: ${lag.p99}`);
    return lines.join('\n');
  }

  /** Runs an uploaded script in a child process (§2.9); throws when disabled. */
  async runScript(source: Buffer): Promise<ScriptRunResult> {
    const cfg = this.options.config.get().ops.runScript;
    if (this.draining) throw new AppError(ErrorCode.UNAVAILABLE, 'run_script is not available: ops is stopping');
    if (!this.running) throw new AppError(ErrorCode.UNAVAILABLE, 'run_script is not available: ops is not running');
    if (!cfg.enabled) {
      throw new AppError(ErrorCode.FORBIDDEN, 'run_script is disabled. Enable it with "ops": {"runScript": {"enabled": true}} in config.json or CONSOLE_RUN_SCRIPT_ENABLED=true; it also needs the admin token.');
    }
    if (source.length > cfg.maxUploadBytes) {
      throw new AppError(ErrorCode.PAYLOAD_TOO_LARGE, `Script is ${source.length} bytes; the limit is ${cfg.maxUploadBytes} (ops.runScript.maxUploadBytes)`);
    }
    const token = randomBytes(24).toString('base64url');
    const revoke = this.options.addTemporaryKey(token);
    const run = this.scripts.run(source, { CONSOLE_URL: this.options.baseUrl(), CONSOLE_RUN_TOKEN: token }, { timeoutMs: cfg.timeoutSeconds * 1000, memoryMb: cfg.memoryMb });
    this.runs.add(run);
    void run.then(
      () => this.runs.delete(run),
      () => this.runs.delete(run),
    );
    try {
      const result = await run;
      this.options.logger.info(
        { sha256: result.sha256, exitCode: result.exitCode, timedOut: result.timedOut, memoryExceeded: result.memoryExceeded, durationMs: Math.round(result.durationMs) },
        'run_script finished',
      );
      return result;
    } finally {
      revoke();
    }
  }
}
