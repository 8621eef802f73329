import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Clock, TimerHandle } from '../../base/clock.js';
import { ManagedProcess, type ChildProcessRegistry } from '../../base/managedProcess.js';

/** Limits for one script run. */
export interface ScriptLimits {
  timeoutMs: number;
  memoryMb: number;
}

export interface ScriptRunResult {
  /** The result the script set: JSON for an object or array (`resultIsJson`), else `String(result)`. */
  result: string | undefined;
  /** True when `result` is the JSON text of an object or array. */
  resultIsJson: boolean;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  memoryExceeded: boolean;
  durationMs: number;
  sha256: string;
}

const RUNNER = `
import { pathToFileURL } from 'node:url';
import { writeFileSync } from 'node:fs';
const [scriptPath, resultPath] = process.argv.slice(2);
const mod = await import(pathToFileURL(scriptPath).href);
const value = mod.result !== undefined ? mod.result : globalThis.result;
const settled = value instanceof Promise ? await value : value;
if (settled !== undefined) {
  // Objects and arrays as JSON (String() would give "[object Object]"); anything else as String(result).
  let json = false;
  let text;
  if (settled !== null && typeof settled === 'object') {
    try {
      text = JSON.stringify(settled, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
      json = text !== undefined;
    } catch {
      json = false;
    }
  }
  if (!json) text = String(settled);
  writeFileSync(resultPath, JSON.stringify({ json, text }));
}
`;

const OUTPUT_CAP = 64 * 1024;

function readRssKb(pid: number): Promise<number | null> {
  return readFile(`/proc/${pid}/status`, 'utf8').then(
    (text) => {
      const m = /VmRSS:\s+(\d+)\s+kB/.exec(text);
      return m ? Number(m[1]) : null;
    },
    () => null,
  );
}

/**
 * Runs an uploaded ESM script in a separate Node process (never in the console's), in a temp
 * working dir, with a minimal environment, a wall-time limit and a memory limit (V8 heap cap plus
 * a resident-set watchdog on Linux). The whole process group is killed at a limit.
 */
export interface ScriptRunnerOptions {
  clock: Clock;
  /** Where /threads finds the running scripts. */
  children: ChildProcessRegistry;
}

export class ScriptRunner {
  private readonly running = new Set<ManagedProcess>();

  constructor(private readonly options: ScriptRunnerOptions) {}

  async run(source: Buffer, env: Record<string, string>, limits: ScriptLimits): Promise<ScriptRunResult> {
    const { clock, children } = this.options;
    const sha256 = createHash('sha256').update(source).digest('hex');
    const dir = await mkdtemp(join(tmpdir(), 'console-script-'));
    const scriptPath = join(dir, 'script.mjs');
    const runnerPath = join(dir, 'runner.mjs');
    const resultPath = join(dir, 'result.txt');
    await writeFile(scriptPath, source);
    await writeFile(runnerPath, RUNNER);
    const started = performance.now();
    const output = { stdout: '', stderr: '' };
    const child = ManagedProcess.spawn({
      command: process.execPath,
      args: [`--max-old-space-size=${limits.memoryMb}`, runnerPath, scriptPath, resultPath],
      cwd: dir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, TMPDIR: dir, ...env },
      clock,
      onOutput: (stream, text) => {
        if (output[stream].length < OUTPUT_CAP) output[stream] += text;
      },
      registry: { registry: children, name: 'run_script', kind: 'run_script' },
    });
    let timedOut = false;
    let memoryExceeded = false;
    this.running.add(child);
    // Limits end the whole process group at once (no grace: the script is over its budget).
    const timer = clock.setTimeout(() => {
      timedOut = true;
      child.destroy();
    }, limits.timeoutMs);
    const limitKb = limits.memoryMb * 1024;
    const pid = child.pid;
    let watchdog: TimerHandle | null = null;
    if (process.platform === 'linux' && pid !== undefined) {
      watchdog = clock.setInterval(() => {
        void readRssKb(pid).then((kb) => {
          if (kb !== null && kb > limitKb) {
            memoryExceeded = true;
            child.destroy();
          }
        });
      }, 50);
    }
    try {
      const exit = await child.exited;
      if (exit.error) throw exit.error;
      const { code, signal } = exit;
      const { stdout, stderr } = output;
      if (code !== 0 && /heap out of memory|Allocation failed/i.test(stderr)) memoryExceeded = true;
      let result: string | undefined;
      let resultIsJson = false;
      try {
        const saved = JSON.parse(await readFile(resultPath, 'utf8')) as { json: boolean; text: string };
        result = saved.text;
        resultIsJson = saved.json;
      } catch {
        result = undefined;
      }
      return { result, resultIsJson, exitCode: code, signal, stdout, stderr, timedOut, memoryExceeded, durationMs: performance.now() - started, sha256 };
    } finally {
      timer.cancel();
      watchdog?.cancel();
      this.running.delete(child);
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** Kills every script still running and waits for them (console stop). */
  async killAll(): Promise<void> {
    await Promise.all([...this.running].map((p) => p.dispose()));
  }
}
