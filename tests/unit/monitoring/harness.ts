import { AppError } from '../../../electron/core/base/errors.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { FakeClock } from '../../../electron/core/base/clock.js';
import { ConfigStore, loadSettings, type Layer } from '../../../electron/core/base/config.js';
import { HealthRegistry } from '../../../electron/core/base/health.js';
import { LoggerRegistry } from '../../../electron/core/base/logger.js';
import { MetricsRegistry } from '../../../electron/core/base/metrics.js';
import { PeriodicTaskRegistry } from '../../../electron/core/base/periodic.js';
import { Store } from '../../../electron/core/base/store.js';
import { MonitoringService } from '../../../electron/core/services/monitoring/monitoringService.js';
import { SqliteLockStore } from '../../../electron/core/services/monitoring/sqliteLockStore.js';
import { StoreAuditLog } from '../../../electron/core/base/audit.js';

export interface Harness {
  clock: FakeClock;
  dir: string;
  store: Store;
  service: MonitoringService;
  periodic: PeriodicTaskRegistry;
  metrics: MetricsRegistry;
  config: ConfigStore;
  logs: string[];
  /**
   * Advances the fake clock in steps; after each step lets the work it started finish (store
   * operations are group-committed on a later turn of the event loop).
   */
  advance(ms: number, stepMs?: number): Promise<void>;
  /** Stops the service and closes the store (the data dir stays for a restart). */
  stop(): Promise<void>;
  /** Stops, and builds a fresh service on the same data dir and clock (a restart). */
  restart(monitoring?: Layer): Promise<Harness>;
  dispose(): Promise<void>;
}

/** A MonitoringService on a temp SQLite file with a FakeClock; telemetry off unless asked for. */
export async function createHarness(monitoring: Layer = {}, clock = new FakeClock(), dir = mkdtempSync(join(tmpdir(), 'mon-unit-'))): Promise<Harness> {
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _e, cb) {
      logs.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  const merged: Layer = { telemetry: { enabled: false }, ...monitoring };
  const config = new ConfigStore(loadSettings({ env: {}, dataDir: dir, overrides: { monitoring: merged } }));
  const loggers = new LoggerRegistry({ level: 'debug', destination });
  const metrics = new MetricsRegistry();
  const periodic = new PeriodicTaskRegistry(clock, loggers.get('periodic'));
  const store = new Store({ path: join(dir, 'console.db') });
  const service = new MonitoringService({ config, clock, audit: new StoreAuditLog(store, clock), lockStore: new SqliteLockStore(store), logger: loggers.get('monitoring'), metrics, periodic, health: new HealthRegistry() });
  await service.start();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await service.stop();
    periodic.stopAll();
    store.close();
  };
  return {
    clock,
    dir,
    store,
    service,
    periodic,
    metrics,
    config,
    logs,
    async advance(ms: number, stepMs = ms) {
      let left = ms;
      while (left > 0) {
        const step = Math.min(stepMs, left);
        clock.advance(step);
        left -= step;
        for (let i = 0; i < 50; i++) await new Promise<void>((r) => setImmediate(r));
      }
    },
    stop,
    async restart(next?: Layer) {
      await stop();
      return createHarness(next ?? monitoring, clock, dir);
    },
    async dispose() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The AppError a promise rejects with (fails the test when it resolves or rejects otherwise). */
export async function rejection(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AppError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}
