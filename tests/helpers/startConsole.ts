import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createConsole, type Console, type ConsoleAddresses, type ConsoleOptions } from '../../electron/core/console.js';
import type { Layer } from '../../electron/core/base/config.js';

export interface TestConsole {
  console: Console;
  url: string;
  grpcAddress: string;
  addresses: ConsoleAddresses;
  dataDir: string;
  adminToken: string;
  /** Log lines the console wrote (JSON strings). */
  logs: string[];
  /** Authorization header for admin endpoints. */
  admin: { authorization: string };
  /** Stops the console and removes the temp data dir. */
  close(): Promise<void>;
}

/**
 * Starts a real Console on ephemeral ports with a temp data dir (or the given one), logs captured
 * in memory. Pass `config` to override config sections (e.g. `{ engine: { gpu: 'false' } }`).
 */
export async function startConsole(
  options: Omit<ConsoleOptions, 'overrides'> & { config?: Layer; keepDataDir?: boolean } = {},
): Promise<TestConsole> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'console-test-'));
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      cb();
    },
  });
  const { config, keepDataDir, ...rest } = options;
  const overrides: Layer = { ...(config ?? {}) };
  const server = { ...((config?.server as Record<string, unknown> | undefined) ?? {}), httpPort: 0, grpcPort: 0 };
  overrides.server = server;
  // Backend detection (getLlama, seconds of CPU) only where a test asks for it.
  overrides.engine = { detectOnStart: false, ...((config?.engine as Record<string, unknown> | undefined) ?? {}) };
  const instance = createConsole({ env: {}, ...rest, dataDir, overrides, logDestination: destination });
  const addresses = await instance.start();
  return {
    console: instance,
    url: addresses.httpUrl,
    grpcAddress: addresses.grpcAddress,
    addresses,
    dataDir,
    adminToken: instance.adminToken,
    logs,
    admin: { authorization: `Bearer ${instance.adminToken}` },
    async close() {
      await instance.stop();
      if (!keepDataDir && !options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
