import type { Clock } from '../../base/clock.js';
import { ManagedProcess, type ChildProcessRegistry } from '../../base/managedProcess.js';

/** The fields asked from `nvidia-smi --query-gpu=...`, in order. */
export const NVIDIA_SMI_FIELDS = [
  'index',
  'uuid',
  'name',
  'utilization.gpu',
  'utilization.memory',
  'memory.total',
  'memory.used',
  'memory.free',
  'temperature.gpu',
  'power.draw',
  'power.limit',
] as const;

export const NVIDIA_SMI_ARGS = [`--query-gpu=${NVIDIA_SMI_FIELDS.join(',')}`, '--format=csv,noheader,nounits'];

/** One GPU's reading; a value the driver does not report (`[N/A]`, `[Not Supported]`) is null. */
export interface NvidiaGpuReading {
  index: number;
  uuid: string;
  name: string;
  /** Percent 0–100. */
  utilizationGpu: number | null;
  utilizationMemory: number | null;
  /** MiB. */
  memoryTotalMiB: number | null;
  memoryUsedMiB: number | null;
  memoryFreeMiB: number | null;
  temperatureC: number | null;
  powerDrawW: number | null;
  powerLimitW: number | null;
}

export class NvidiaSmiParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NvidiaSmiParseError';
  }
}

function num(raw: string): number | null {
  const v = raw.trim();
  if (v === '' || v.startsWith('[') || /^n\/a$/i.test(v)) return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

/**
 * Parses the output of `nvidia-smi --query-gpu=<NVIDIA_SMI_FIELDS> --format=csv,noheader,nounits`:
 * one line per GPU, comma-separated. GPU names never contain commas in practice; a line with a
 * different field count is rejected rather than misread.
 */
export function parseNvidiaSmi(output: string): NvidiaGpuReading[] {
  const out: NvidiaGpuReading[] = [];
  for (const line of output.split(/\r?\n/)) {
    if (line.trim() === '') continue;
    const f = line.split(',').map((s) => s.trim());
    if (f.length !== NVIDIA_SMI_FIELDS.length) throw new NvidiaSmiParseError(`expected ${NVIDIA_SMI_FIELDS.length} fields, got ${f.length}: ${line.slice(0, 200)}`);
    const index = num(f[0]!);
    if (index === null || !Number.isInteger(index)) throw new NvidiaSmiParseError(`bad GPU index: ${f[0]}`);
    out.push({
      index,
      uuid: f[1]!,
      name: f[2]!,
      utilizationGpu: num(f[3]!),
      utilizationMemory: num(f[4]!),
      memoryTotalMiB: num(f[5]!),
      memoryUsedMiB: num(f[6]!),
      memoryFreeMiB: num(f[7]!),
      temperatureC: num(f[8]!),
      powerDrawW: num(f[9]!),
      powerLimitW: num(f[10]!),
    });
  }
  return out;
}

/** Result of one nvidia-smi call: readings, or why there are none. */
export type NvidiaSmiResult = { ok: true; gpus: NvidiaGpuReading[] } | { ok: false; missing: boolean; error: string };

/** What running nvidia-smi needs: the clock for its time limits, and where /threads lists it. */
export interface NvidiaSmiRunner {
  clock: Clock;
  children?: ChildProcessRegistry;
}

const ONE_SHOT_MAX_OUTPUT = 1024 * 1024;

function notFound(error: Error | undefined): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'EACCES';
}

/** Runs nvidia-smi once (no shell) and parses its output; killed after `timeoutMs`. */
export async function queryNvidiaSmi(path: string, timeoutMs: number, runner: NvidiaSmiRunner): Promise<NvidiaSmiResult> {
  const out = { stdout: '', stderr: '' };
  const proc = ManagedProcess.spawn({
    command: path,
    args: NVIDIA_SMI_ARGS,
    clock: runner.clock,
    onOutput: (stream, text) => {
      if (out[stream].length < ONE_SHOT_MAX_OUTPUT) out[stream] += text;
    },
    ...(runner.children ? { registry: { registry: runner.children, name: 'nvidia-smi (one-shot)', kind: 'nvidia-smi' as const } } : {}),
  });
  let timedOut = false;
  const timer = runner.clock.setTimeout(() => {
    timedOut = true;
    proc.destroy();
  }, timeoutMs);
  const exit = await proc.exited;
  timer.cancel();
  if (exit.error) {
    const missing = notFound(exit.error);
    return { ok: false, missing, error: missing ? `${path} not found` : `${path} failed: ${exit.error.message.slice(0, 300)}` };
  }
  if (timedOut || exit.code !== 0) {
    const how = timedOut ? `timed out after ${timeoutMs} ms` : exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.code}`;
    return { ok: false, missing: false, error: `${path} failed: ${(out.stderr.trim() || out.stdout.trim() || how).slice(0, 300)}` };
  }
  try {
    return { ok: true, gpus: parseNvidiaSmi(out.stdout) };
  } catch (e) {
    return { ok: false, missing: false, error: (e as Error).message };
  }
}

export interface NvidiaSmiStreamOptions extends NvidiaSmiRunner {
  path: string;
  /** nvidia-smi's own sampling period (`--loop-ms`). */
  intervalMs: number;
  /** Called when the process ends unexpectedly or cannot start. */
  onExit: (reason: string, missing: boolean) => void;
}

/** How long a stopping nvidia-smi gets after SIGTERM. */
const STOP_GRACE_MS = 2000;

/**
 * One long-running `nvidia-smi --query-gpu=... --loop-ms=<interval>`: NVML is initialised once instead
 * of on every sample (a one-shot nvidia-smi costs tens of ms of CPU each time). Each output line is
 * one GPU's reading; `latest()` returns the newest reading of every GPU seen.
 */
export class NvidiaSmiStream {
  private proc: ManagedProcess | null = null;
  private readonly readings = new Map<number, NvidiaGpuReading>();
  private stderr = '';
  private stopping = false;
  /** Lines received so far (tests and status). */
  lines = 0;
  private lastActivity = 0;

  constructor(private readonly o: NvidiaSmiStreamOptions) {}

  get running(): boolean {
    return this.proc !== null;
  }

  /** Process id while running (tests check that stop() leaves no process behind). */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Running, and printed something (or started) within `maxAgeMs`: a hung nvidia-smi is not fresh. */
  fresh(maxAgeMs: number): boolean {
    return this.proc !== null && performance.now() - this.lastActivity <= maxAgeMs;
  }

  start(): void {
    if (this.proc) return;
    this.stopping = false;
    this.stderr = '';
    this.lastActivity = performance.now();
    const proc = ManagedProcess.spawn({
      command: this.o.path,
      args: [...NVIDIA_SMI_ARGS, `--loop-ms=${Math.max(100, Math.round(this.o.intervalMs))}`],
      clock: this.o.clock,
      onOutput: (stream, text) => {
        this.lastActivity = performance.now();
        if (stream === 'stderr') this.stderr = (this.stderr + text).slice(-2000);
      },
      onLine: (stream, line) => {
        if (stream === 'stdout') this.onLine(line);
      },
      ...(this.o.children ? { registry: { registry: this.o.children, name: 'nvidia-smi --loop-ms', kind: 'nvidia-smi' as const } } : {}),
    });
    this.proc = proc;
    void proc.exited.then((exit) => {
      if (this.proc === proc) this.proc = null;
      if (this.stopping) return;
      const missing = notFound(exit.error);
      const reason = exit.error
        ? missing
          ? `${this.o.path} not found`
          : `${this.o.path}: ${exit.error.message}`
        : `${this.o.path} exited (${exit.code ?? exit.signal})${this.stderr.trim() ? `: ${this.stderr.trim().slice(-300)}` : ''}`;
      this.o.onExit(reason, missing);
    });
  }

  /** The newest reading of every GPU seen, by index; empty before the first line. */
  latest(): NvidiaGpuReading[] {
    return [...this.readings.values()].sort((a, b) => a.index - b.index);
  }

  /** Stops the process (SIGTERM, then SIGKILL after 2 s); safe to call twice. */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    this.stopping = true;
    await proc.close(STOP_GRACE_MS);
    if (this.proc === proc) this.proc = null;
  }

  private onLine(line: string): void {
    if (line.trim() === '') return;
    try {
      for (const r of parseNvidiaSmi(line)) this.readings.set(r.index, r);
      this.lines++;
    } catch {
      // a line that does not parse (e.g. a driver message) is skipped; the next sample replaces it
    }
  }
}
