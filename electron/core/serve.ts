/**
 * Headless entry (`npm run serve`): builds the Console from flags, env and config.json, prints one
 * ready line, and stops cleanly on SIGINT/SIGTERM (exit 0): the first signal drains, a second one
 * aborts what is left. Invalid settings, a damaged or too-new store, or a restore with no good
 * backup exit with code 2 and one message.
 */
import { ConfigError, FLAGS_HELP, parseFlags } from './base/config.js';
import { StoreCorruptError, StoreVersionError } from './base/store.js';
import { StoreRestoreError } from './base/storeBackup.js';
import { createConsole, type Console } from './console.js';
import { ClusterStartError } from './base/redisConnection.js';

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (parseFlags(argv).help) {
    process.stdout.write(`${FLAGS_HELP}\n`);
    return 0;
  }
  let app: Console;
  try {
    app = createConsole({ argv });
  } catch (err) {
    if (err instanceof ConfigError || err instanceof StoreVersionError || err instanceof StoreCorruptError || err instanceof StoreRestoreError) {
      process.stderr.write(`console: ${err.message}\n`);
      return 2;
    }
    if (err instanceof ClusterStartError) {
      process.stderr.write(`console: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  // Signal handlers go in before start-up, so a signal that arrives while starting (or a second
  // one while stopping) never falls through to Node's default "die by signal". The first signal
  // drains (close: work in flight may finish for up to ops.shutdownGraceSeconds); a second one
  // aborts what is left (destroy). Either way the exit code is 0 when stopping succeeds.
  let signals = 0;
  let running = false;
  let finish: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (finish = resolve));
  const shutdown = (signal: string) => {
    signals++;
    const log = app.logs.get('console');
    if (signals === 1) {
      const graceSeconds = app.config.get().ops.shutdownGraceSeconds;
      log.info({ signal }, 'shutting down');
      log.info({ graceSeconds }, `draining, up to ${graceSeconds} s; send the signal again to abort`);
      if (running) stopNow();
    } else if (signals === 2) {
      log.warn({ signal }, 'second signal: aborting work in flight');
      if (running) void app.destroy().catch(() => undefined); // the drain's own promise reports the outcome
    }
  };
  const stopNow = () => {
    const stopping = signals > 1 ? app.destroy() : app.close();
    stopping.then(
      () => finish(0),
      (err: unknown) => {
        process.stderr.write(`console: error while stopping: ${(err as Error).message}\n`);
        finish(1);
      },
    );
  };
  const onSigint = () => shutdown('SIGINT');
  const onSigterm = () => shutdown('SIGTERM');
  const onSighup = () => {
    try {
      app.configAdmin.reload('signal:SIGHUP');
      app.logs.get('console').info('config reloaded');
    } catch (err) {
      const details = (err as { details?: unknown }).details;
      app.logs.get('console').error({ issues: details ?? (err as Error).message }, 'config reload failed; keeping the old config');
    }
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);
  process.on('SIGHUP', onSighup);
  const removeHandlers = () => {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
    process.off('SIGHUP', onSighup);
  };

  let addresses;
  try {
    addresses = await app.start();
  } catch (err) {
    removeHandlers();
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE') {
      process.stderr.write(`console: port already in use (${e.message}); choose another with --port / --grpc-port or 0 for any free port\n`);
      return 2;
    }
    if (err instanceof ClusterStartError) {
      process.stderr.write(`console: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  running = true;
  if (signals > 0) {
    stopNow(); // a signal came while starting
    return done.finally(removeHandlers);
  }
  process.stdout.write(`console ready ${addresses.httpUrl} grpc ${addresses.grpcAddress}\n`);
  // The optional S2 listeners (limiter.listen_port / metrics_port), on lines of their own.
  if (addresses.limiterUrl) process.stdout.write(`limiter ${addresses.limiterUrl}\n`);
  if (addresses.metricsUrl) process.stdout.write(`metrics ${addresses.metricsUrl}\n`);
  const login = app.loginUrl();
  process.stdout.write(`dashboard ${addresses.httpUrl}/${login ? ` (one-time login link: ${login})` : ''}\n`);
  return done.finally(removeHandlers);
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`console: failed to start: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
