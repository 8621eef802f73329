import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { isProcessAlive } from '../../electron/core/base/processUtil.js';
import { spawnServe } from '../helpers/spawnServe.js';
import { startConsole } from '../helpers/startConsole.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '../fixtures/runtime');

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

/** Runs a real console process, starts its gateway over HTTP, then ends the console with `signal`. */
async function gatewayLeftByKilledConsole(dataDir: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<{ pid: number; exit: number | string }> {
  const serve = spawnServe(['--data-dir', dataDir, '--port', '0', '--grpc-port', '0'], { CONSOLE_ADMIN_TOKEN: 'orphan-test-token' });
  let pid = 0;
  try {
    const { url } = await serve.ready;
    const res = await fetch(`${url}/api/runtime/start`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer orphan-test-token' },
      body: JSON.stringify({ mode: 'live', tickers: ['AAPL'] }),
    });
    const body = (await res.json()) as { pid: number };
    expect(res.status, JSON.stringify(body)).toBe(200);
    pid = body.pid;
  } finally {
    serve.child.kill(signal);
  }
  return { pid, exit: await serve.exited };
}

describe('runtime orphans: a console killed with SIGKILL, then restarted', { timeout: 90_000 }, () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'runtime-orphans-'));
  const leftovers: number[] = [];
  afterAll(() => {
    for (const pid of leftovers) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('reports the old gateway as an orphan, refuses to start over it, and kills it on the admin action', async () => {
    const port = await freePort();
    writeFileSync(
      join(dataDir, 'config.json'),
      JSON.stringify({
        runtime: {
          processes: [
            {
              name: 'gateway',
              command: process.execPath,
              args: [join(fixtures, 'healthy.mjs')],
              env: { PORT: String(port), MODEL_NAME: 'm', OPENAI_API_KEY: 'sk-123456', FINNHUB_API_KEY: 'fh-123456' },
              port,
              healthUrl: `http://127.0.0.1:${port}/health`,
              stopGraceSeconds: 2,
            },
          ],
        },
      }),
    );
    const { pid } = await gatewayLeftByKilledConsole(dataDir);
    leftovers.push(pid);
    expect(isProcessAlive(pid)).toBe(true); // the console died; its detached child did not

    const c = await startConsole({ dataDir });
    try {
      const info = (await (await fetch(`${c.url}/api/runtime/processes/gateway`)).json()) as { state: string; orphan: { pid: number; message: string } | null };
      expect(info.state).toBe('not_running');
      expect(info.orphan?.pid).toBe(pid);
      expect(info.orphan?.message).toMatch(/^orphan from a previous run/);
      expect(((await (await fetch(`${c.url}/api/status`)).json()) as { status: string }).status).toBe('degraded');

      const start = await fetch(`${c.url}/api/runtime/start`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...c.admin },
        body: JSON.stringify({ mode: 'live', tickers: ['AAPL'] }),
      });
      expect(start.status).toBe(409);
      expect(((await start.json()) as { detail: string }).detail).toMatch(new RegExp(`previous console run is still alive \\(PID: ${pid}\\)`));
      expect((await fetch(`${c.url}/api/runtime/processes/gateway/orphan/kill`, { method: 'POST' })).status).toBe(401);

      const kill = await fetch(`${c.url}/api/runtime/processes/gateway/orphan/kill`, { method: 'POST', headers: c.admin });
      expect(kill.status).toBe(200);
      expect(await kill.json()).toMatchObject({ status: 'killed', pid });
      expect(isProcessAlive(pid)).toBe(false);

      const again = await fetch(`${c.url}/api/runtime/start`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...c.admin },
        body: JSON.stringify({ mode: 'live', tickers: ['AAPL'] }),
      });
      expect(again.status).toBe(200);
    } finally {
      await c.close();
    }
  });

  it('with orphanPolicy "kill", the next console kills the orphan at start', async () => {
    const { pid } = await gatewayLeftByKilledConsole(dataDir);
    leftovers.push(pid);
    expect(isProcessAlive(pid)).toBe(true);
    const c = await startConsole({ dataDir, config: { runtime: { orphanPolicy: 'kill' } } });
    try {
      expect(isProcessAlive(pid)).toBe(false);
      const info = (await (await fetch(`${c.url}/api/runtime/processes/gateway`)).json()) as { orphan: unknown };
      expect(info.orphan).toBeNull();
      const audit = (await (await fetch(`${c.url}/api/console/audit`, { headers: c.admin })).json()) as { entries: Array<{ action: string; detail: { pid: number } }> };
      expect(audit.entries.find((e) => e.action === 'runtime.orphan.kill')?.detail.pid).toBe(pid);
    } finally {
      await c.close();
    }
  });

  it('a console stopped by SIGTERM (npm run serve) exits 0 and takes its gateway with it', async () => {
    const { pid, exit } = await gatewayLeftByKilledConsole(dataDir, 'SIGTERM');
    leftovers.push(pid);
    expect(exit).toBe(0);
    expect(isProcessAlive(pid)).toBe(false);
    const c = await startConsole({ dataDir });
    try {
      const info = (await (await fetch(`${c.url}/api/runtime/processes/gateway`)).json()) as { orphan: unknown };
      expect(info.orphan).toBeNull(); // nothing left to report
    } finally {
      await c.close();
    }
  });
});
