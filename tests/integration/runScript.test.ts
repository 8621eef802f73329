import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { waitFor } from '../helpers/wait.js';

async function runScript(c: TestConsole, source: string): Promise<{ status: number; text: string }> {
  const form = new FormData();
  form.append('script', new Blob([source], { type: 'text/javascript' }), 'script.mjs');
  const res = await fetch(`${c.url}/run_script`, { method: 'POST', body: form, headers: c.admin });
  return { status: res.status, text: await res.text() };
}

describe('POST /run_script when enabled', () => {
  let c: TestConsole;
  beforeAll(async () => {
    c = await startConsole({ config: { ops: { runScript: { enabled: true, timeoutSeconds: 3, memoryMb: 96 } } } });
  });
  afterAll(async () => {
    await c.close();
  });

  it('returns the result a script exports', async () => {
    const r = await runScript(c, 'export const result = [1, 2, 3].map((x) => x * 2).join(",");');
    expect(r).toEqual({ status: 200, text: '2,4,6' });
  });

  it('returns an object or array result as JSON, not [object Object]', async () => {
    const form = new FormData();
    form.append('script', new Blob(['export const result = { ok: true, items: [1, 2], big: 10n };'], { type: 'text/javascript' }), 'script.mjs');
    const res = await fetch(`${c.url}/run_script`, { method: 'POST', body: form, headers: c.admin });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/json');
    expect(await res.json()).toEqual({ ok: true, items: [1, 2], big: '10' });
    expect(await runScript(c, 'globalThis.result = Promise.resolve([{ a: 1 }]);')).toEqual({ status: 200, text: '[{"a":1}]' });
    expect(await runScript(c, 'export const result = 42;')).toEqual({ status: 200, text: '42' });
  });

  it('says so when the script sets no result', async () => {
    expect(await runScript(c, 'const x = 1 + 1;')).toEqual({ status: 200, text: 'Script executed successfully' });
  });

  it('reaches the console only over HTTP with a run-scoped token', async () => {
    const r = await runScript(
      c,
      `const res = await fetch(process.env.CONSOLE_URL + '/health');
       export const result = res.status + ' ' + (typeof process.env.CONSOLE_RUN_TOKEN) + ' ' + (process.env.CONSOLE_RUN_TOKEN !== ${JSON.stringify(c.adminToken)});`,
    );
    expect(r).toEqual({ status: 200, text: '200 string true' });
  });

  it('reports a failing script with 500, its message and exit code', async () => {
    const r = await runScript(c, 'throw new Error("boom from script");');
    expect(r.status).toBe(500);
    expect(r.text).toMatch(/^Error executing script: .*boom from script/);
    expect(r.text).toMatch(/exit code: 1/);
  });

  it('400 when no script file is sent', async () => {
    const form = new FormData();
    form.append('other', 'x');
    const res = await fetch(`${c.url}/run_script`, { method: 'POST', body: form, headers: c.admin });
    expect(res.status).toBe(400);
    expect(await res.text()).toBe('No script file provided');
  });

  it('kills a script that loops forever at its wall-time limit while the core keeps serving', async () => {
    const pending = runScript(c, 'while (true) {}');
    // the core answers while the script spins in its own process
    const t0 = performance.now();
    const health = await fetch(`${c.url}/health`);
    expect(health.status).toBe(200);
    expect(performance.now() - t0).toBeLessThan(1000);
    // /threads lists the script's process while it runs, and no longer once it was killed
    const threads = await waitFor(
      async () => {
        const text = await (await fetch(`${c.url}/threads?name=run_script`, { headers: c.admin })).text();
        return text.includes('[child-process]') ? text : undefined;
      },
      5000,
      '/threads to list the running script',
      20,
    );
    expect(threads).toMatch(/Process \d+: run_script \[child-process\]/);
    expect(threads).toContain('kind: run_script');
    expect(threads).toContain('state: running');
    const r = await pending;
    expect(r.status).toBe(408);
    expect(await (await fetch(`${c.url}/threads?name=run_script`, { headers: c.admin })).text()).toContain('matching: 0 of');
    expect(r.text).toMatch(/wall-time limit/);
  });

  it('kills a script that allocates 2 GiB at its memory limit', async () => {
    const r = await runScript(
      c,
      `const chunks = [];
       for (let i = 0; i < 2048; i++) { const b = Buffer.alloc(1024 * 1024, 1); chunks.push(b); }
       export const result = 'allocated ' + chunks.length;`,
    );
    expect(r.status).toBe(500);
    expect(r.text).toMatch(/memory limit/i);
    expect((await fetch(`${c.url}/health`)).status).toBe(200);
  });
});
