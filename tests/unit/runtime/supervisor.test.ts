import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../../electron/core/base/clock.js';
import { ConfigStore, loadSettings } from '../../../electron/core/base/config.js';
import { AppError } from '../../../electron/core/base/errors.js';
import { HealthRegistry } from '../../../electron/core/base/health.js';
import { MetricsRegistry } from '../../../electron/core/base/metrics.js';
import { Store } from '../../../electron/core/base/store.js';
import { isProcessAlive } from '../../../electron/core/base/processUtil.js';
import { RuntimeService } from '../../../electron/core/services/runtime/runtimeService.js';
import { StoreAuditLog } from '../../../electron/core/base/audit.js';
import { waitUntil } from '../../helpers/wait.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/runtime');
const node = process.execPath;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

const realSleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Advances the fake clock in small steps, letting real I/O (child processes) happen in between. */
async function drive<T>(clock: FakeClock, work: Promise<T>, stepMs = 50): Promise<T> {
  let settled = false;
  const tracked = work.finally(() => {
    settled = true;
  });
  tracked.catch(() => undefined);
  while (!settled) {
    clock.advance(stepMs);
    await realSleep(10);
  }
  return tracked;
}

/** The shared bounded waitUntil; the condition's own source says what did not happen. */
const waitFor = (check: () => boolean, timeoutMs = 20_000): Promise<void> => waitUntil(check, timeoutMs, check.toString());

interface Harness {
  svc: RuntimeService;
  clock: FakeClock;
  store: Store;
  dataDir: string;
}

const harnesses: Harness[] = [];

function build(runtime: Record<string, unknown>): Harness {
  const dataDir = mkdtempSync(join(tmpdir(), 'runtime-unit-'));
  const settings = loadSettings({ dataDir, env: {}, overrides: { runtime } });
  const clock = new FakeClock();
  const store = new Store({ path: join(dataDir, 'console.db') });
  const svc = new RuntimeService({
    config: new ConfigStore(settings),
    clock,
    logger: pino({ level: 'silent' }),
    store,
    metrics: new MetricsRegistry(),
    audit: new StoreAuditLog(store, clock),
    health: new HealthRegistry(),
    dataDir,
    env: {},
  });
  const h = { svc, clock, store, dataDir };
  harnesses.push(h);
  return h;
}

afterEach(async () => {
  for (const h of harnesses.splice(0)) {
    await drive(h.clock, h.svc.stop());
    h.store.close();
    rmSync(h.dataDir, { recursive: true, force: true });
  }
});

const gatewayEnv = { MODEL_NAME: 'tiny', OPENAI_API_KEY: 'sk-test-123456', FINNHUB_API_KEY: 'fh-test-123456' };

describe('RuntimeService (real child processes, fake clock)', () => {
  it('starts the gateway, waits for its health URL, reports it, and stops it (each audited with the caller as actor)', async () => {
    const port = await freePort();
    const { svc, clock, store } = build({
      processes: [
        { name: 'gateway', command: node, args: [join(fixtures, 'healthy.mjs')], env: { ...gatewayEnv, PORT: String(port) }, port, healthUrl: `http://127.0.0.1:${port}/health`, startupTimeoutSeconds: 3600 },
      ],
    });
    await svc.start();
    const started = await drive(clock, svc.startGateway({ mode: 'live', tickers: ['AAPL'] }, 'tray'));
    expect(started).toMatchObject({ status: 'started', port });
    expect(started.run_id).toMatch(/^\d{8}_\d{6}$/);
    expect(isProcessAlive(started.pid)).toBe(true);
    expect(svc.mode()).toEqual({ mode: 'live', is_backtest: false, run_id: started.run_id, schedule_mode: 'daily', is_running: true });
    expect(svc.gatewayStatus()).toEqual({ is_running: true, port, run_id: started.run_id, process_status: 'running', pid: started.pid });
    const health = await svc.gatewayHealth();
    expect(health.status).toBe('healthy');
    expect(health.checks.port.details.accessible).toBe(true);
    clock.advance(5000);
    const snap = svc.snapshot().processes[0]!;
    expect(snap).toMatchObject({ name: 'gateway', state: 'running', pid: started.pid, restarts: 0, exit_code: null });
    expect(snap.uptime_seconds).toBeGreaterThanOrEqual(5);
    await waitFor(() => svc.snapshot().processes[0]!.last_lines.some((l) => l.startsWith('listening')));
    // the run parameters reach the child's environment
    await waitFor(() => svc.snapshot().processes[0]!.last_lines.some((l) => l.includes(`mode=live run=${started.run_id}`)));

    await expect(svc.startGateway({ mode: 'live', tickers: ['AAPL'] }, 'admin')).rejects.toMatchObject({ status: 409 });
    const stopped = await drive(clock, svc.stopGateway('admin'));
    expect(stopped).toEqual({ status: 'stopped', message: `Runtime stopped successfully (PID: ${started.pid})` });
    expect(isProcessAlive(started.pid)).toBe(false);
    expect(svc.gatewayStatus().process_status).toBe('not_running');
    expect(svc.mode().mode).toBe('stopped');
    await expect(svc.stopGateway('admin')).rejects.toMatchObject({ status: 400, message: 'No runtime is currently running.' });
    // the refused start and stop wrote nothing; the two that ran did, newest first
    expect(store.recentAudit(10)).toMatchObject([
      { actor: 'admin', action: 'runtime.stop', target: 'gateway', detail: { message: stopped.message } },
      { actor: 'tray', action: 'runtime.start', target: 'gateway', detail: { run_id: started.run_id, pid: started.pid } },
    ]);
    expect(store.recentAudit(10)).toHaveLength(2);
  });

  it('a crash during start-up fails the start with the exit code and the last 4000 characters of output', async () => {
    const { svc, clock } = build({
      processes: [{ name: 'gateway', command: node, args: [join(fixtures, 'crash.mjs')], env: gatewayEnv, startupWatchSeconds: 3600 }],
    });
    await svc.start();
    const err = (await drive(clock, svc.startGateway({ mode: 'live', tickers: ['AAPL'] }, 'admin')).catch((e: unknown) => e)) as AppError;
    expect(err).toBeInstanceOf(AppError);
    expect(err.status).toBe(500);
    const [head, code, label, ...rest] = err.message.split('\n');
    expect([head, code, label]).toEqual(['Gateway process exited unexpectedly', 'Exit code: 1', 'Recent log output:']);
    const tail = rest.join('\n');
    expect(tail.length).toBeLessThanOrEqual(4000);
    expect(tail.length).toBeGreaterThan(3900); // the fixture printed more than 4000 characters
    expect(tail).toContain('[ERROR] FINNHUB_API_KEY not set');
    expect(tail).not.toContain('filler 0000'); // the start was cut off
    expect(tail).not.toContain('sk-abcdef123456'); // secrets masked
    expect(err.message).not.toContain('Configuration issues detected');
    expect(svc.gatewayStatus().process_status).toBe('exited');
    await expect(svc.stopGateway('admin')).rejects.toThrow(/^No runtime is currently running\. Previous Gateway process exited with code 1\. PID: \d+$/);
    expect(svc.apiStatus().status).toBe('degraded');
  });

  it('/api/status: a clean exit (code 0) after a successful start is operational, a crash is degraded', async () => {
    for (const [code, expected] of [
      ['0', 'operational'],
      ['3', 'degraded'],
    ] as const) {
      const { svc, clock } = build({
        processes: [
          { name: 'gateway', command: node, args: [join(fixtures, 'crash.mjs')], env: { ...gatewayEnv, EXIT_CODE: code, CRASH_AFTER_MS: '600', FILLER_LINES: '0' }, startupWatchSeconds: 0.2 },
        ],
      });
      await svc.start();
      await drive(clock, svc.startGateway({ mode: 'live', tickers: ['AAPL'] }, 'admin'));
      expect(svc.apiStatus().status).toBe('operational');
      await waitFor(() => svc.gatewayStatus().process_status === 'exited');
      expect(svc.apiStatus()).toMatchObject({ status: expected, runtime: { gateway_running: false } });
      await svc.stop();
    }
  });

  it('kills a process that ignores SIGTERM only after the grace period (SIGKILL to the group)', async () => {
    const { svc, clock } = build({
      processes: [{ name: 'stubborn', command: node, args: [join(fixtures, 'stubborn.mjs')], startupWatchSeconds: 0.5, stopGraceSeconds: 10 }],
    });
    await svc.start();
    const info = await drive(clock, svc.startProcess('stubborn', 'admin'));
    const pid = info.pid!;
    await waitFor(() => svc.snapshot().processes[0]!.last_lines.some((l) => l.startsWith('ready')));
    let done = false;
    const stopping = svc.stopProcess('stubborn', 'admin').finally(() => (done = true));
    await waitFor(() => svc.snapshot().processes[0]!.last_lines.includes('ignoring SIGTERM'));
    clock.advance(9_900);
    // A fixed wait on purpose: 100 ms before the grace ends nothing may happen; there is no event to wait for.
    await realSleep(200);
    expect(done).toBe(false);
    expect(isProcessAlive(pid)).toBe(true);
    clock.advance(100);
    const after = await stopping;
    expect(after.state).toBe('not_running');
    expect(isProcessAlive(pid)).toBe(false);
  });

  it('close() drains: SIGTERM now, SIGKILL only when the drain deadline fires (not after stopGraceSeconds)', async () => {
    const { svc, clock } = build({
      processes: [{ name: 'stubborn', command: node, args: [join(fixtures, 'stubborn.mjs')], startupWatchSeconds: 0.5, stopGraceSeconds: 1 }],
    });
    await svc.start();
    const info = await drive(clock, svc.startProcess('stubborn', 'admin'));
    const pid = info.pid!;
    await waitFor(() => svc.snapshot().processes[0]!.last_lines.some((l) => l.startsWith('ready')));
    const deadline = new AbortController();
    let done = false;
    const closing = svc.close({ deadline: deadline.signal }).finally(() => (done = true));
    expect(svc.running).toBe(false);
    await waitFor(() => svc.snapshot().processes[0]!.last_lines.includes('ignoring SIGTERM'));
    clock.advance(60_000); // far past stopGraceSeconds: the drain's deadline decides, not the per-process grace
    // A fixed wait on purpose: nothing may happen before the deadline fires; there is no event to wait for.
    await realSleep(200);
    expect(done).toBe(false);
    expect(isProcessAlive(pid)).toBe(true);
    deadline.abort();
    await closing;
    expect(isProcessAlive(pid)).toBe(false);
    expect(svc.snapshot().processes[0]!.last_lines.some((l) => l.includes('after SIGTERM: SIGKILL'))).toBe(true);
  });

  it('restarts after a crash with exponential backoff on the clock, then gives up', async () => {
    const port = await freePort();
    const { svc, clock } = build({
      processes: [
        {
          name: 'worker',
          command: node,
          args: [join(fixtures, 'healthy.mjs')],
          env: { PORT: String(port) },
          healthUrl: `http://127.0.0.1:${port}/health`,
          startupTimeoutSeconds: 3600,
          restart: { policy: 'on-failure', initialDelaySeconds: 1, multiplier: 2, maxDelaySeconds: 60, maxRestarts: 2 },
        },
      ],
    });
    await svc.start();
    let info = await drive(clock, svc.startProcess('worker', 'admin'));
    const firstPid = info.pid!;

    process.kill(firstPid, 'SIGKILL');
    await waitFor(() => svc.get('worker').state === 'backoff');
    info = svc.get('worker');
    expect(info.exit_code).toBe(-9);
    expect(info.next_restart_in_seconds).toBe(1);
    clock.advance(999);
    // A fixed wait on purpose: 1 ms before the backoff ends no restart may start; there is no event to wait for.
    await realSleep(100);
    expect(svc.get('worker').state).toBe('backoff');
    clock.advance(1);
    expect(svc.get('worker').state).toBe('starting');
    await drive(clock, (async () => waitFor(() => svc.get('worker').state === 'running'))());
    info = svc.get('worker');
    expect(info.restarts).toBe(1);
    expect(info.pid).not.toBe(firstPid);

    process.kill(info.pid!, 'SIGKILL');
    await waitFor(() => svc.get('worker').state === 'backoff');
    expect(svc.get('worker').next_restart_in_seconds).toBe(2); // 1 s × 2
    clock.advance(2000);
    await drive(clock, (async () => waitFor(() => svc.get('worker').state === 'running'))());
    expect(svc.get('worker').restarts).toBe(2);

    process.kill(svc.get('worker').pid!, 'SIGKILL');
    await waitFor(() => svc.get('worker').state === 'failed');
    expect(svc.get('worker').last_error).toMatch(/gave up after 2 restarts/);
    expect(svc.snapshot().processes[0]!.state).toBe('failed');
  });

  it('a process that never becomes ready is stopped after the start-up timeout (504)', async () => {
    const port = await freePort();
    const wrong = await freePort();
    const { svc, clock } = build({
      processes: [
        { name: 'slow', command: node, args: [join(fixtures, 'healthy.mjs')], env: { PORT: String(port) }, healthUrl: `http://127.0.0.1:${wrong}/health`, startupTimeoutSeconds: 5, stopGraceSeconds: 1 },
      ],
    });
    await svc.start();
    const started = svc.startProcess('slow', 'admin');
    await waitFor(() => svc.snapshot().processes[0]!.last_lines.some((l) => l.startsWith('listening')));
    const pid = svc.get('slow').pid!;
    const err = (await drive(clock, started, 250).catch((e: unknown) => e)) as AppError;
    expect(err.status).toBe(504);
    expect(err.message).toMatch(/^Process 'slow' did not become ready within 5 s/);
    expect(err.message).toContain('listening');
    expect(isProcessAlive(pid)).toBe(false);
    expect(svc.get('slow')).toMatchObject({ state: 'exited', last_error: 'did not become ready within 5 s' });
  });

  it('stop() of the service cancels a pending restart and leaves no timer behind', async () => {
    const { svc, clock } = build({
      processes: [
        { name: 'flaky', command: node, args: [join(fixtures, 'crash.mjs')], env: { CRASH_AFTER_MS: '300', FILLER_LINES: '1' }, startupWatchSeconds: 0.1, restart: { policy: 'always', initialDelaySeconds: 30 } },
      ],
    });
    await svc.start();
    await drive(clock, svc.startProcess('flaky', 'admin'));
    await waitFor(() => svc.get('flaky').state === 'backoff');
    expect(svc.get('flaky')).toMatchObject({ exit_code: 1, next_restart_in_seconds: 30, last_error: 'exited unexpectedly with code 1' });
    await svc.stop();
    expect(clock.pendingTimers()).toBe(0);
    expect(svc.get('flaky').state).toBe('not_running');
    clock.advance(60_000);
    expect(svc.get('flaky').state).toBe('not_running');
  });

  it('a stop during start-up cancels the start (409) and kills the process', async () => {
    const port = await freePort();
    const wrong = await freePort();
    const { svc, clock } = build({
      processes: [
        { name: 'slow', command: node, args: [join(fixtures, 'healthy.mjs')], env: { PORT: String(port) }, healthUrl: `http://127.0.0.1:${wrong}/health`, startupTimeoutSeconds: 3600, stopGraceSeconds: 1 },
      ],
    });
    await svc.start();
    const starting = svc.startProcess('slow', 'admin').catch((e: unknown) => e as AppError);
    await waitFor(() => svc.snapshot().processes[0]!.last_lines.some((l) => l.startsWith('listening')));
    const pid = svc.get('slow').pid!;
    expect(svc.get('slow').state).toBe('starting');
    await expect(svc.startProcess('slow', 'admin')).rejects.toMatchObject({ status: 409 });
    const stopped = await drive(clock, svc.stopProcess('slow', 'admin'));
    expect(stopped.state).toBe('not_running');
    const err = await starting;
    expect(err).toMatchObject({ status: 409, message: expect.stringMatching(/start was cancelled by a stop request/) });
    expect(isProcessAlive(pid)).toBe(false);
  });

  it('auto-starts processes marked autoStart when the service starts (not an admin action: not audited)', async () => {
    const { svc, clock, store } = build({
      processes: [{ name: 'auto', command: node, args: [join(fixtures, 'stubborn.mjs')], startupWatchSeconds: 1, stopGraceSeconds: 0, autoStart: true }],
    });
    await svc.start();
    expect(svc.get('auto').state).toBe('starting');
    await drive(clock, (async () => waitFor(() => svc.get('auto').state === 'running'))());
    expect(isProcessAlive(svc.get('auto').pid!)).toBe(true);
    expect(store.recentAudit(10)).toEqual([]);
  });

  it('refuses to start with a bad config, listing every problem', async () => {
    const { svc } = build({
      processes: [{ name: 'gateway', command: '/no/such/binary', cwd: '/no/such/dir', healthUrl: 'http://[bad', requiredEnv: ['NEEDED_VAR'] }],
    });
    await svc.start();
    const err = (await svc.startGateway({ mode: 'live', tickers: [], initial_cash: 0 }, 'admin').catch((e: unknown) => e)) as AppError;
    expect(err.status).toBe(400);
    expect(err.message.startsWith('Gateway configuration validation failed: ')).toBe(true);
    const issues = err.message.slice('Gateway configuration validation failed: '.length).split('; ');
    expect(issues).toEqual([
      'tickers must be a non-empty list of ticker symbols',
      'initial_cash must be greater than 0',
      'working directory does not exist: /no/such/dir',
      'command not found or not executable: /no/such/binary',
      'healthUrl is not a valid URL: http://[bad',
      'NEEDED_VAR environment variable is required',
      'FINNHUB_API_KEY environment variable is required for live mode',
      'MODEL_NAME environment variable is required for live mode',
      'OPENAI_API_KEY environment variable is required for live mode',
    ]);
    const health = await svc.gatewayHealth();
    expect(health.status).toBe('unhealthy');
    expect(health.checks.configuration.status).toBe('unhealthy');
  });

  it('reports processes it does not own, recorded by a previous run, and kills them on request', async () => {
    const first = build({});
    // A previous run's record: a live process in its own group, as the supervisor spawns them.
    const { spawn } = await import('node:child_process');
    const orphan = spawn(node, [join(fixtures, 'stubborn.mjs')], { detached: true, stdio: 'ignore' });
    const { processStartTime } = await import('../../../electron/core/base/processUtil.js');
    await waitFor(() => processStartTime(orphan.pid!) !== null || process.platform !== 'linux');
    first.store.db
      .prepare('INSERT INTO runtime_processes (name, pid, proc_start, started_at, console_pid, run_id, mode, command) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run('gateway', orphan.pid, processStartTime(orphan.pid!), Date.now(), 1, '20250101_000000', 'live', node);
    // and a stale record whose process is gone
    first.store.db
      .prepare('INSERT INTO runtime_processes (name, pid, proc_start, started_at, console_pid, command) VALUES (?, ?, ?, ?, ?, ?)')
      .run('old', 2 ** 22 + 12345, '1', Date.now(), 1, node);
    await first.svc.start();
    const info = first.svc.get('gateway');
    expect(info.orphan).toMatchObject({ pid: orphan.pid, run_id: '20250101_000000' });
    expect(info.orphan?.message).toMatch(/^orphan from a previous run/);
    expect(first.svc.list().map((p) => p.name)).toEqual(['gateway']);
    expect(first.svc.apiStatus().status).toBe('degraded');
    await expect(first.svc.startGateway({ mode: 'live', tickers: ['A'] }, 'admin')).rejects.toMatchObject({ status: 400 }); // not configured
    // stubborn ignores SIGTERM: SIGKILL after the (default 10 s) grace, on the fake clock
    const killed = await drive(first.clock, first.svc.killOrphan('gateway', 'admin'), 500);
    expect(killed).toMatchObject({ status: 'killed', pid: orphan.pid });
    await waitFor(() => orphan.exitCode !== null || orphan.signalCode !== null);
    expect(isProcessAlive(orphan.pid!)).toBe(false);
    expect(first.svc.get('gateway').orphan).toBeNull();
    expect(first.store.db.prepare('SELECT COUNT(*) AS n FROM runtime_processes').get()).toEqual({ n: 0 });
    await expect(first.svc.killOrphan('gateway', 'admin')).rejects.toMatchObject({ status: 404 });
    expect(first.store.recentAudit(10)).toMatchObject([{ actor: 'admin', action: 'runtime.orphan.kill', target: 'gateway', detail: { pid: orphan.pid } }]);
    expect(first.store.recentAudit(10)).toHaveLength(1);
  });
});

describe('RuntimeService log streaming', () => {
  it('yields live lines through an async iterator until aborted', async () => {
    const { svc, clock } = build({
      processes: [{ name: 'stubborn', command: node, args: [join(fixtures, 'stubborn.mjs')], startupWatchSeconds: 0.2, stopGraceSeconds: 0 }],
    });
    await svc.start();
    const abort = new AbortController();
    const seen: string[] = [];
    const reading = (async () => {
      for await (const line of svc.logLines('stubborn', abort.signal)) {
        seen.push(`${line.stream}:${line.line}`);
        if (line.line.startsWith('ready ')) abort.abort();
      }
    })();
    const info = await drive(clock, svc.startProcess('stubborn', 'admin'));
    await reading;
    expect(seen.some((l) => l.startsWith('supervisor:') && l.includes(`started pid ${info.pid}`))).toBe(true);
    expect(seen.at(-1)).toBe(`stdout:ready ${info.pid}`);
  });
});
