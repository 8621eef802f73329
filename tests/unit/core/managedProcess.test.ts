import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SystemClock } from '../../../electron/core/base/clock.js';
import { ChildProcessRegistry, LineSplitter, ManagedProcess } from '../../../electron/core/base/managedProcess.js';
import { isProcessAlive } from '../../../electron/core/base/processUtil.js';
import { waitUntil } from '../../helpers/wait.js';

const clock = new SystemClock();
let dir: string;

/** A parent that ignores SIGTERM and starts a grandchild that ignores it too; prints both pids. */
const STUBBORN = `
import { spawn } from 'node:child_process';
process.on('SIGTERM', () => {});
const grandchild = spawn(process.execPath, ['-e', "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)"], { stdio: 'ignore' });
console.log(JSON.stringify({ parent: process.pid, grandchild: grandchild.pid }));
setInterval(() => {}, 1000);
`;

async function firstLine(p: ManagedProcess): Promise<string> {
  for await (const line of p.lines('stdout')) return line;
  throw new Error('no output');
}

/** Waits (bounded) for process `pid` to be gone; `what` names it in the error. */
async function gone(pid: number, what: string): Promise<void> {
  await waitUntil(() => !isProcessAlive(pid), 5000, `${what} (pid ${pid}) to exit`);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'managed-process-'));
  writeFileSync(join(dir, 'stubborn.mjs'), STUBBORN);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('LineSplitter', () => {
  it('joins lines split across chunks, strips \\r and flushes the partial last line', () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l), 8);
    s.push('ab');
    s.push('c\r\nde\nfg');
    s.push('hijklmnopq');
    expect(lines).toEqual(['abc', 'de', 'fghijklm']);
    s.flush();
    expect(lines).toEqual(['abc', 'de', 'fghijklm', 'nopq']);
  });
});

describe.skipIf(process.platform === 'win32')('ManagedProcess', () => {
  it('reports lines written in pieces, the unterminated last line and the exit code', async () => {
    const script = `process.stdout.write('one\\ntw'); setTimeout(() => { process.stdout.write('o\\nthr'); process.stderr.write('oops\\n'); setTimeout(() => { process.stdout.write('ee'); process.exit(3); }, 30); }, 30);`;
    const seen: string[] = [];
    const p = ManagedProcess.spawn({ command: process.execPath, args: ['-e', script], clock, onLine: (stream, line) => seen.push(`${stream}:${line}`) });
    const stdout: string[] = [];
    for await (const line of p.lines('stdout')) stdout.push(line);
    const exit = await p.exited;
    expect(stdout).toEqual(['one', 'two', 'three']);
    expect(seen).toEqual(['stdout:one', 'stdout:two', 'stderr:oops', 'stdout:three']);
    expect(exit).toMatchObject({ code: 3, signal: null, strays: false });
    expect(p.state).toBe('exited');
  });

  it('cuts an endless line at maxLineLength', async () => {
    const lines: string[] = [];
    const p = ManagedProcess.spawn({ command: process.execPath, args: ['-e', `process.stdout.write('x'.repeat(25))`], clock, maxLineLength: 10, onLine: (_s, l) => lines.push(l) });
    await p.exited;
    expect(lines).toEqual(['x'.repeat(10), 'x'.repeat(10), 'x'.repeat(5)]);
  });

  it('close(): SIGTERM, then SIGKILL to the whole group after the grace; the grandchild dies too', async () => {
    let escalated = false;
    const p = ManagedProcess.spawn({ command: process.execPath, args: [join(dir, 'stubborn.mjs')], clock });
    const { parent, grandchild } = JSON.parse(await firstLine(p)) as { parent: number; grandchild: number };
    expect(parent).toBe(p.pid);
    const started = performance.now();
    const exit = await p.close(300, () => (escalated = true));
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
    expect(escalated).toBe(true);
    expect(exit.signal).toBe('SIGKILL');
    await gone(grandchild, 'the grandchild');
    expect(await p.close(300)).toBe(exit);
  });

  it('close(deadline): SIGTERM now, SIGKILL to the group only when the AbortSignal fires', async () => {
    let escalated = false;
    const p = ManagedProcess.spawn({ command: process.execPath, args: [join(dir, 'stubborn.mjs')], clock });
    const { grandchild } = JSON.parse(await firstLine(p)) as { grandchild: number };
    const deadline = new AbortController();
    const closing = p.close(deadline.signal, () => (escalated = true));
    // A fixed wait on purpose: before the deadline nothing may escalate; there is no event to wait for.
    await new Promise((r) => setTimeout(r, 300));
    expect(escalated).toBe(false);
    expect(p.state).toBe('stopping');
    deadline.abort();
    const exit = await closing;
    expect(escalated).toBe(true);
    expect(exit.signal).toBe('SIGKILL');
    await gone(grandchild, 'the grandchild');
    expect(await p.close(AbortSignal.abort())).toBe(exit);
  });

  it('close() of a process that stops on SIGTERM does not escalate', async () => {
    let escalated = false;
    const p = ManagedProcess.spawn({ command: process.execPath, args: ['-e', `console.log('up'); setInterval(() => {}, 1000)`], clock });
    await firstLine(p);
    const exit = await p.close(10_000, () => (escalated = true));
    expect(exit.signal).toBe('SIGTERM');
    expect(escalated).toBe(false);
  });

  it('destroy() kills the group at once; dispose waits for the exit', async () => {
    const p = ManagedProcess.spawn({ command: process.execPath, args: [join(dir, 'stubborn.mjs')], clock });
    const { grandchild } = JSON.parse(await firstLine(p)) as { grandchild: number };
    {
      await using owned = p;
      expect(owned.state).toBe('running');
    }
    expect(p.exit?.signal).toBe('SIGKILL');
    await gone(grandchild, 'the grandchild');
  });

  it('kills what the process left in its group when it exits by itself', async () => {
    const pidFile = join(dir, 'left.pid');
    const script = `const { spawn } = await import('node:child_process'); const { writeFileSync } = await import('node:fs');
      const c = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' }); writeFileSync(${JSON.stringify(pidFile)}, String(c.pid)); process.exit(0);`;
    const p = ManagedProcess.spawn({ command: process.execPath, args: ['--input-type=module', '-e', script], clock });
    const exit = await p.exited;
    expect(exit).toMatchObject({ code: 0, strays: true });
    await gone(Number(readFileSync(pidFile, 'utf8')), 'the process in the pid file');
  });

  it('a spawn failure resolves exited with the error', async () => {
    const p = ManagedProcess.spawn({ command: join(dir, 'no-such-program'), clock });
    expect(p.pid).toBeUndefined();
    const exit = await p.exited;
    expect(exit.error?.message).toMatch(/ENOENT/);
    expect(exit.code).toBeNull();
  });

  it('is listed in the registry with name, kind, pid, state and start time while it runs', async () => {
    const registry = new ChildProcessRegistry();
    const p = ManagedProcess.spawn({ command: process.execPath, args: ['-e', `console.log('up'); setInterval(() => {}, 1000)`], clock, registry: { registry, name: 'probe', kind: 'self-test' } });
    await firstLine(p);
    expect(registry.list()).toEqual([{ name: 'probe', kind: 'self-test', pid: p.pid, state: 'running', startedAt: p.startedAt, command: process.execPath, detail: [] }]);
    const closing = p.close(5000);
    expect(registry.list()[0]?.state).toBe('stopping');
    await closing;
    expect(registry.list()).toEqual([]);
  });
});
