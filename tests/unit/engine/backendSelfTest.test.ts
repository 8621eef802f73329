import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ChildProcessRegistry } from '../../../electron/core/base/managedProcess.js';
import { chooseBackend, probeFailureReason, selfTestBackend, type SelfTestResult } from '../../../electron/core/services/engine/backendSelfTest.js';
import { waitUntil } from '../../helpers/wait.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/engine');

describe('GPU backend self-test', () => {
  it('picks the native error line out of a crashed probe (stderr recorded on an H200, driver 580)', () => {
    const stderr = readFileSync(join(fixtures, 'cuda-ptx-abort.stderr.txt'), 'utf8');
    expect(probeFailureReason(stderr, null, 'SIGABRT')).toBe('CUDA error: the provided PTX was compiled with an unsupported toolchain. (probe killed by SIGABRT)');
    expect(probeFailureReason('', 3, null)).toBe('probe exited with code 3');
  });

  it('passes on the CPU: the probe child loads a tiny model and generates', async () => {
    const r = await selfTestBackend(false);
    expect(r).toMatchObject({ backend: 'cpu', ok: true, devices: [] });
  }, 60_000);

  it('a probe that aborts inside the native backend fails the test instead of crashing this process', async () => {
    const r = await selfTestBackend('cuda', { moduleUrl: pathToFileURL(join(fixtures, 'aborting-llama.mjs')).href });
    expect(r.ok).toBe(false);
    expect(r.backend).toBe('cuda');
    expect(r.reason).toBe('CUDA error: the provided PTX was compiled with an unsupported toolchain. (probe killed by SIGABRT)');
    expect(r.hint).toMatch(/Update the driver, or build llama\.cpp for this GPU/);
  }, 60_000);

  it('a probe that hangs is killed at the timeout; /threads\' registry lists it while it runs', async () => {
    const children = new ChildProcessRegistry();
    const pending = selfTestBackend('vulkan', { moduleUrl: 'data:text/javascript,await new Promise(() => setInterval(() => {}, 1000));', timeoutMs: 1500, children });
    await waitUntil(() => children.list().length > 0, 1000, 'the probe to be registered as a child process', 10);
    expect(children.list()).toEqual([expect.objectContaining({ name: 'self-test vulkan', kind: 'self-test', state: 'running' })]);
    const r = await pending;
    expect(r).toMatchObject({ backend: 'vulkan', ok: false, reason: 'probe did not finish within 1500 ms' });
    expect(children.list()).toEqual([]);
  }, 60_000);

  it('auto: the first GPU backend that passes wins; when none does, the CPU, with every failure reported', async () => {
    const seen: string[] = [];
    const fake = (pass: string[]) => async (b: 'cuda' | 'vulkan' | 'metal' | false): Promise<SelfTestResult> => {
      const name = b === false ? 'cpu' : b;
      seen.push(name);
      return { backend: name, ok: pass.includes(name), ms: 1, ...(pass.includes(name) ? {} : { reason: 'boom' }) };
    };
    expect(await chooseBackend(['cuda', 'vulkan', false], fake(['vulkan']))).toMatchObject({ choice: 'vulkan', tests: [{ backend: 'cuda', ok: false }, { backend: 'vulkan', ok: true }] });
    seen.length = 0;
    const none = await chooseBackend(['cuda', 'vulkan', false], fake([]));
    expect(none.choice).toBe(false);
    expect(none.tests.map((t) => t.reason)).toEqual(['boom', 'boom']);
    expect(seen).toEqual(['cuda', 'vulkan']); // the CPU needs no self-test

    // With the real probe on a machine without CUDA: the test fails cleanly and the CPU is chosen.
    const real = await chooseBackend(['cuda', false], (b) => selfTestBackend(b));
    expect(real.choice).toBe(false);
    expect(real.tests[0]).toMatchObject({ backend: 'cuda' });
  }, 60_000);
});
