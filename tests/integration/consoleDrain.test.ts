import { afterEach, describe, expect, it } from 'vitest';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { waitUntil } from '../helpers/wait.js';

/** Console.close() (drain) vs destroy() (abort), in process, with run_script as the work in flight. */
describe('Console close (drain) and destroy (abort)', () => {
  let c: TestConsole | undefined;
  afterEach(async () => {
    await c?.close();
    c = undefined;
  });

  const start = () => startConsole({ config: { ops: { runScript: { enabled: true, timeoutSeconds: 120, memoryMb: 96 } } } });
  /** A script that answers after `ms`. */
  const sleeper = (ms: number) => `await new Promise((r) => setTimeout(r, ${ms})); export const result = 'slept ${ms}';`;
  const runScript = (tc: TestConsole, source: string) => {
    const form = new FormData();
    form.append('script', new Blob([source], { type: 'text/javascript' }), 'script.mjs');
    return fetch(`${tc.url}/run_script`, { method: 'POST', body: form, headers: tc.admin }).then(
      async (res) => `${res.status} ${await res.text()}`,
      (err: unknown) => `error ${(err as Error).message}`,
    );
  };
  /** How many run_script children /threads lists. */
  const countRunScripts = async (tc: TestConsole) => {
    const res = await fetch(`${tc.url}/threads`, { headers: tc.admin });
    return (await res.text()).split('\n').filter((l) => l.trim() === 'kind: run_script').length;
  };

  it('close() lets a run_script in flight finish (200) while new connections are refused, then stops', async () => {
    c = await start();
    const tc = c;
    const run = runScript(tc, sleeper(1500));
    await waitUntil(async () => (await countRunScripts(tc)) > 0, 10_000, 'the script to be running');
    const closing = tc.console.close({ graceMs: 30_000 });
    await waitUntil(() => tc.logs.some((l) => l.includes('"msg":"draining"')), 5000, 'the draining log line');
    const late = await fetch(`${tc.url}/health`).then((r) => `status ${r.status}`, (e: unknown) => `error ${((e as { cause?: { code?: string } }).cause?.code) ?? (e as Error).message}`);
    // refused at the socket (a pooled idle socket is closed under it: reset), or 503 — never served
    expect(late).toMatch(/^(error (ECONNREFUSED|ECONNRESET|UND_ERR_SOCKET)|status 503)$/);
    expect(await run).toBe('200 slept 1500');
    await closing;
    expect(tc.console.serviceControls().every((s) => !s.running())).toBe(true);
  }, 60_000);

  it('stopping ops from the tray drains it: the script in flight finishes, a new one gets 503 meanwhile', async () => {
    c = await start();
    const tc = c;
    const ops = tc.console.serviceControls().find((s) => s.name === 'ops')!;
    const run = runScript(tc, sleeper(1500));
    await waitUntil(async () => (await countRunScripts(tc)) > 0, 10_000, 'the script to be running');
    const stopping = ops.stop();
    expect(ops.running()).toBe(false);
    const refused = await runScript(tc, sleeper(1));
    expect(refused).toMatch(/^503 /);
    expect(await run).toBe('200 slept 1500');
    expect(await stopping).toEqual(['ops']);
    expect(await runScript(tc, sleeper(1))).toMatch(/^503 .*not running/);
    expect(await ops.start()).toEqual(['ops']);
    expect(await runScript(tc, sleeper(1))).toBe('200 slept 1');
  }, 60_000);

  it('destroy() during close() aborts at once: the long script is cut, both calls resolve', async () => {
    c = await start();
    const tc = c;
    const run = runScript(tc, sleeper(120_000));
    await waitUntil(async () => (await countRunScripts(tc)) > 0, 10_000, 'the script to be running');
    const closing = tc.console.close({ graceMs: 120_000 });
    await waitUntil(() => tc.logs.some((l) => l.includes('"msg":"draining"')), 5000, 'the draining log line');
    const t0 = Date.now();
    await tc.console.destroy();
    await closing;
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(await run).not.toMatch(/^200 /);
    expect(tc.logs.some((l) => l.includes('aborting what is left'))).toBe(true);
  }, 60_000);

  it('close() does not wait for watch streams (the dashboard SSE): they end at once, the drain finishes', async () => {
    c = await start();
    const tc = c;
    const res = await fetch(`${tc.url}/api/console/stream/sse`, { headers: tc.admin });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain('retry:');
    const ended = (async () => {
      try {
        for (;;) if ((await reader.read()).done) return 'ended';
      } catch {
        return 'cut';
      }
    })();
    const t0 = Date.now();
    await tc.console.close({ graceMs: 60_000 });
    // Far inside the 60 s grace: the open stream did not hold the drain up.
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(['ended', 'cut']).toContain(await ended);
  }, 60_000);
});
