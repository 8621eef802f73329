import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SystemClock, type Clock } from '../../base/clock.js';
import { cudaDriverRemedy } from '../../base/gpuErrors.js';
import { ManagedProcess, type ChildProcessRegistry } from '../../base/managedProcess.js';
import { writeTinyModel } from './tinyGguf.js';

/** A backend node-llama-cpp can be asked for; `false` is the CPU. */
export type BackendChoice = 'cuda' | 'vulkan' | 'metal' | false;

export interface SelfTestResult {
  backend: 'cuda' | 'vulkan' | 'metal' | 'cpu';
  ok: boolean;
  /** Why it failed: the native error line when there is one (e.g. a CUDA error), else how the probe ended. */
  reason?: string;
  /** Device names the backend reported. */
  devices?: string[];
  /** What the operator can do about a known failure. */
  hint?: string;
  ms: number;
}


export interface SelfTestOptions {
  /** Default 90 s: a first CUDA run may JIT-compile kernels. */
  timeoutMs?: number;
  /** node-llama-cpp's module URL (default: resolved from this module). */
  moduleUrl?: string;
  /** Times the limit (default: the system clock). */
  clock?: Clock;
  /** Where /threads lists the probe while it runs. */
  children?: ChildProcessRegistry;
}

const backendName = (b: BackendChoice): SelfTestResult['backend'] => (b === false ? 'cpu' : b);

/**
 * The probe, run in a child process: load the backend, put a tiny model fully on it and generate a
 * few tokens. A broken GPU build (e.g. a prebuilt CUDA binary whose PTX the installed driver cannot
 * JIT) aborts the process inside llama.cpp; in a child that costs nothing, in the console it would
 * take the whole process down.
 */
const PROBE = `
const [url, backend, modelPath] = process.argv.slice(2);
const { getLlama, LlamaCompletion, LlamaLogLevel } = await import(url);
const gpu = backend === 'cpu' ? false : backend;
const llama = await getLlama({ gpu, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error });
if (llama.gpu !== gpu) {
  process.stdout.write(JSON.stringify({ ok: false, reason: 'node-llama-cpp started ' + (llama.gpu || 'cpu') + ' instead' }) + '\\n');
  process.exit(0);
}
const devices = gpu === false ? [] : await llama.getGpuDeviceNames();
const model = await llama.loadModel({ modelPath, gpuLayers: 'max' });
const context = await model.createContext({ contextSize: 128, threads: 1 });
const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
const text = await completion.generateCompletion('the cat sat', { maxTokens: 4, temperature: 0 });
process.stdout.write(JSON.stringify({ ok: text.length > 0, devices, reason: text.length > 0 ? undefined : 'generated nothing' }) + '\\n');
process.exit(0);
`;

/** The most telling line of a crashed probe's stderr: the native error, not the backtrace. */
export function probeFailureReason(stderr: string, code: number | null, signal: NodeJS.Signals | null): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.replace(/^\[node-llama-cpp\]\s*/, '').trim())
    .filter((l) => l !== '');
  const notFrame = (l: string) => !/^at /.test(l);
  const error =
    lines.find((l) => notFrame(l) && /\berror:\s*\S/i.test(l)) ?? // "CUDA error: the provided PTX was compiled with ..."
    lines.find((l) => notFrame(l) && /\b(CUDA|Vulkan|Metal|ggml)\b.*\berror\b/i.test(l)) ??
    lines.find((l) => notFrame(l) && /Error\b/.test(l));
  const how = signal ? `killed by ${signal}` : `exited with code ${code}`;
  return error ? `${error} (probe ${how})` : `probe ${how}`;
}

/** Runs the probe for one backend in a child process (Electron's binary runs it as Node). */
export async function selfTestBackend(backend: BackendChoice, options: SelfTestOptions = {}): Promise<SelfTestResult> {
  const started = performance.now();
  const dir = mkdtempSync(join(tmpdir(), 'console-selftest-'));
  const result = (r: Omit<SelfTestResult, 'backend' | 'ms'>): SelfTestResult => ({ backend: backendName(backend), ...r, ms: Math.round(performance.now() - started) });
  try {
    const modelPath = writeTinyModel(join(dir, 'probe.gguf'), { seed: 1 });
    const url = options.moduleUrl ?? pathToFileURL(createRequire(import.meta.url).resolve('node-llama-cpp')).href;
    // A file, not \`-e\`: node-llama-cpp forks its own binary test with this process's execArgv.
    const probePath = join(dir, 'probe.mjs');
    writeFileSync(probePath, PROBE);
    const clock = options.clock ?? new SystemClock();
    let stdout = '';
    let stderr = '';
    // Its own process group: a timeout also ends what the probe forked (node-llama-cpp's binary test).
    const child = ManagedProcess.spawn({
      command: process.execPath,
      args: [probePath, url, backendName(backend), modelPath],
      env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
      clock,
      onOutput: (stream, text) => {
        if (stream === 'stdout') stdout += text;
        else stderr = (stderr + text).slice(-20_000);
      },
      ...(options.children ? { registry: { registry: options.children, name: `self-test ${backendName(backend)}`, kind: 'self-test' as const } } : {}),
    });
    const timeoutMs = options.timeoutMs ?? 90_000;
    let timedOut = false;
    const timer = clock.setTimeout(() => {
      timedOut = true;
      child.destroy();
    }, timeoutMs);
    const exit = await child.exited;
    timer.cancel();
    const ended = { ...exit, timedOut };
    if (ended.error) return result({ ok: false, reason: `could not start the probe: ${ended.error.message}` });
    if (ended.timedOut) return result({ ok: false, reason: `probe did not finish within ${timeoutMs} ms` });
    const line = stdout.trim().split('\n').pop() ?? '';
    if (ended.code === 0 && line.startsWith('{')) {
      const parsed = JSON.parse(line) as { ok: boolean; reason?: string; devices?: string[] };
      return result({ ok: parsed.ok, ...(parsed.reason ? { reason: parsed.reason } : {}), ...(parsed.devices ? { devices: parsed.devices } : {}) });
    }
    const reason = probeFailureReason(stderr, ended.code, ended.signal);
    const hint = backend === 'cuda' ? cudaDriverRemedy(reason) : undefined;
    return result({ ok: false, reason, ...(hint ? { hint } : {}) });
  } catch (err) {
    return result({ ok: false, reason: (err as Error).message });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * `auto`: the first of the machine's GPU backends (node-llama-cpp's order: CUDA, Vulkan, Metal)
 * whose self-test passes, else the CPU. Returns the choice and every test run, for health.
 */
export async function chooseBackend(
  candidates: readonly BackendChoice[],
  test: (backend: BackendChoice) => Promise<SelfTestResult>,
): Promise<{ choice: BackendChoice; tests: SelfTestResult[] }> {
  const tests: SelfTestResult[] = [];
  for (const c of candidates) {
    if (c === false) continue;
    const r = await test(c);
    tests.push(r);
    if (r.ok) return { choice: c, tests };
  }
  return { choice: false, tests };
}
