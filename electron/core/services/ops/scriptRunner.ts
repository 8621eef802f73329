import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
export class ScriptRunner {
  private readonly running = new Set<{ kill: () => void; pid: number | undefined; startedAt: number }>();

  async run(source: Buffer, env: Record<string, string>, limits: ScriptLimits): Promise<ScriptRunResult> {
    const sha256 = createHash('sha256').update(source).digest('hex');
    const dir = await mkdtemp(join(tmpdir(), 'console-script-'));
    const scriptPath = join(dir, 'script.mjs');
    const runnerPath = join(dir, 'runner.mjs');
    const resultPath = join(dir, 'result.txt');
    await writeFile(scriptPath, source);
    await writeFile(runnerPath, RUNNER);
    const started = performance.now();
    const child = spawn(process.execPath, [`--max-old-space-size=${limits.memoryMb}`, runnerPath, scriptPath, resultPath], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, TMPDIR: dir, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: process.platform !== 'win32',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      if (stdout.length < OUTPUT_CAP) stdout += d.toString('utf8');
    });
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < OUTPUT_CAP) stderr += d.toString('utf8');
    });
    let timedOut = false;
    let memoryExceeded = false;
    const killGroup = () => {
      try {
        if (child.pid !== undefined && process.platform !== 'win32') process.kill(-child.pid, 'SIGKILL');
        else child.kill('SIGKILL');
      } catch {
        // already gone
      }
    };
    const handle = { kill: killGroup, pid: child.pid, startedAt: Date.now() };
    this.running.add(handle);
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, limits.timeoutMs);
    const limitKb = limits.memoryMb * 1024;
    const watchdog =
      process.platform === 'linux'
        ? setInterval(() => {
            if (child.pid === undefined) return;
            void readRssKb(child.pid).then((kb) => {
              if (kb !== null && kb > limitKb) {
                memoryExceeded = true;
                killGroup();
              }
            });
          }, 50)
        : null;
    try {
      const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
        child.once('error', reject);
        child.once('close', (c, s) => resolve({ code: c, signal: s }));
      });
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
      clearTimeout(timer);
      if (watchdog) clearInterval(watchdog);
      this.running.delete(handle);
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** The script processes running now (for /threads). */
  active(): Array<{ pid: number; startedAt: number }> {
    return [...this.running].filter((r): r is typeof r & { pid: number } => r.pid !== undefined).map((r) => ({ pid: r.pid, startedAt: r.startedAt }));
  }

  /** Kills every script still running (console stop). */
  killAll(): void {
    for (const r of this.running) r.kill();
  }
}
