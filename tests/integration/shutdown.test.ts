import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startUpstreamSim, type UpstreamSim } from '../../scripts/upstream-sim.js';
import { spawnServe, type ServeProcess } from '../helpers/spawnServe.js';
import { waitUntil } from '../helpers/wait.js';

/**
 * Drain vs abort of the whole console (issue 16), through the real headless entry: the first
 * SIGTERM drains (requests in flight finish, new ones are refused), a second one aborts.
 */
describe('serve: SIGTERM drains, a second SIGTERM aborts', () => {
  let dir: string;
  let sim: UpstreamSim | undefined;
  let p: ServeProcess | undefined;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'console-shutdown-'));
  });
  afterEach(async () => {
    if (p && p.child.exitCode === null && p.child.signalCode === null) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
    p = undefined;
    await sim?.close();
    sim = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  /** Starts serve with the limiter in front of a simulator that answers after `latencyMs`. */
  const start = async (latencyMs: number, env: NodeJS.ProcessEnv = {}) => {
    sim = await startUpstreamSim({ capacity: 100_000, latencyMs });
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ limiter: { upstream_url: sim.baseUrl, rate_rpm: 6000, bucket_capacity: 100, request_timeout: 120 } }));
    p = spawnServe(['--port', '0', '--grpc-port', '0'], { CONSOLE_DATA_DIR: dir, ...env });
    const { url } = await p.ready;
    return url;
  };
  const chat = (url: string) =>
    fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'nvidia/meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }] }),
    });
  /** A request after the signal: refused at the socket, or answered 503 — never served. */
  const refused = async (url: string): Promise<string> => {
    try {
      const res = await chat(url);
      await res.arrayBuffer();
      return `status ${res.status}`;
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      return `error ${cause?.code ?? (err as Error).message}`;
    }
  };
  const logMessages = (proc: ServeProcess) =>
    proc
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => (JSON.parse(l) as { msg: string }).msg);

  it('the first SIGTERM lets a request waiting on a slow upstream finish (200), refuses new ones, and exits 0', async () => {
    const url = await start(3000);
    const proc = p!;
    const slow = chat(url).then(async (res) => ({ status: res.status, body: await res.text() }));
    await waitUntil(() => sim!.stats().inFlight === 1, 10_000, 'the slow request to reach the upstream');
    proc.child.kill('SIGTERM');
    await waitUntil(() => logMessages(proc).some((m) => m.startsWith('draining, up to 30 s')), 10_000, 'the draining log line');
    expect(await refused(url)).toMatch(/^(error (ECONNREFUSED|ECONNRESET|UND_ERR_SOCKET)|status 503)$/);
    const answer = await slow;
    expect(answer.status).toBe(200);
    expect(answer.body).toContain('hello from the simulator');
    const code = await proc.exited;
    expect({ code, stderr: proc.stderr().slice(-2000) }).toMatchObject({ code: 0 });
    expect(sim!.stats().attempts).toBe(1); // the refused request never reached the upstream
  }, 60_000);

  it('a second SIGTERM cuts the slow request and the process still exits 0 promptly', async () => {
    // An upstream slower than the test and a long grace: only the second signal can end this.
    const url = await start(60_000, { CONSOLE_SHUTDOWN_GRACE_SECONDS: '120' });
    const proc = p!;
    const slow = chat(url).then(
      async (res) => `status ${res.status} ${await res.text().catch(() => '(body cut)')}`,
      (err: unknown) => `error ${(err as Error).message}`,
    );
    await waitUntil(() => sim!.stats().inFlight === 1, 10_000, 'the slow request to reach the upstream');
    proc.child.kill('SIGTERM');
    await waitUntil(() => logMessages(proc).some((m) => m.startsWith('draining, up to 120 s')), 10_000, 'the draining log line');
    const secondAt = Date.now();
    proc.child.kill('SIGTERM');
    const code = await proc.exited;
    const took = Date.now() - secondAt;
    expect({ code, stderr: proc.stderr().slice(-2000) }).toMatchObject({ code: 0 });
    expect(await slow).not.toMatch(/^status 200 /);
    expect(logMessages(proc)).toContain('second signal: aborting work in flight');
    // "Promptly": far inside the 60 s upstream latency and the 120 s grace (a slow CI box included).
    expect(took).toBeLessThan(15_000);
  }, 60_000);
});
