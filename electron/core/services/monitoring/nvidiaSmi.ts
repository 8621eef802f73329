import { execFile, spawn, type ChildProcess } from 'node:child_process';

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

/** Runs nvidia-smi once (no shell) and parses its output. */
export function queryNvidiaSmi(path: string, timeoutMs: number): Promise<NvidiaSmiResult> {
  return new Promise((resolve) => {
    execFile(path, NVIDIA_SMI_ARGS, { timeout: timeoutMs, maxBuffer: 1024 * 1024, windowsHide: true }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const missing = code === 'ENOENT' || code === 'EACCES';
        const text = missing ? `${path} not found` : `${path} failed: ${(String(stderr).trim() || String(stdout).trim() || err.message).slice(0, 300)}`;
        resolve({ ok: false, missing, error: text });
        return;
      }
      try {
        resolve({ ok: true, gpus: parseNvidiaSmi(String(stdout)) });
      } catch (e) {
        resolve({ ok: false, missing: false, error: (e as Error).message });
      }
    });
  });
}

export interface NvidiaSmiStreamOptions {
  path: string;
  /** nvidia-smi's own sampling period (`--loop-ms`). */
  intervalMs: number;
  /** Called when the process ends unexpectedly or cannot start. */
  onExit: (reason: string, missing: boolean) => void;
}

/**
 * One long-running `nvidia-smi --query-gpu=... --loop-ms=<interval>`: NVML is initialised once instead
 * of on every sample (a one-shot nvidia-smi costs tens of ms of CPU each time). Each output line is
 * one GPU's reading; `latest()` returns the newest reading of every GPU seen.
 */
export class NvidiaSmiStream {
  private child: ChildProcess | null = null;
  private readonly readings = new Map<number, NvidiaGpuReading>();
  private buffer = '';
  private stderr = '';
  private stopping = false;
  private exited: Promise<void> = Promise.resolve();
  /** Lines received so far (tests and status). */
  lines = 0;
  private lastActivity = 0;

  constructor(private readonly o: NvidiaSmiStreamOptions) {}

  get running(): boolean {
    return this.child !== null;
  }

  /** Process id while running (tests check that stop() leaves no process behind). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Running, and printed something (or started) within `maxAgeMs`: a hung nvidia-smi is not fresh. */
  fresh(maxAgeMs: number): boolean {
    return this.child !== null && performance.now() - this.lastActivity <= maxAgeMs;
  }

  start(): void {
    if (this.child) return;
    this.stopping = false;
    this.buffer = '';
    this.stderr = '';
    this.lastActivity = performance.now();
    const child = spawn(this.o.path, [...NVIDIA_SMI_ARGS, `--loop-ms=${Math.max(100, Math.round(this.o.intervalMs))}`], { stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    this.child = child;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => this.onData(chunk));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => (this.stderr = (this.stderr + chunk).slice(-2000)));
    this.exited = new Promise<void>((resolve) => {
      let done = false;
      const finish = (reason: string, missing: boolean) => {
        if (done) return;
        done = true;
        this.child = null;
        if (!this.stopping) this.o.onExit(reason, missing);
        resolve();
      };
      child.once('error', (err: NodeJS.ErrnoException) => finish(err.code === 'ENOENT' || err.code === 'EACCES' ? `${this.o.path} not found` : `${this.o.path}: ${err.message}`, err.code === 'ENOENT' || err.code === 'EACCES'));
      child.once('close', (code, signal) => finish(`${this.o.path} exited (${code ?? signal})${this.stderr.trim() ? `: ${this.stderr.trim().slice(-300)}` : ''}`, false));
    });
  }

  /** The newest reading of every GPU seen, by index; empty before the first line. */
  latest(): NvidiaGpuReading[] {
    return [...this.readings.values()].sort((a, b) => a.index - b.index);
  }

  /** Stops the process (SIGTERM, then SIGKILL after 2 s); safe to call twice. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.stopping = true;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
    timer.unref();
    await this.exited;
    clearTimeout(timer);
  }

  private onData(chunk: string): void {
    this.lastActivity = performance.now();
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      if (line.trim() === '') continue;
      try {
        for (const r of parseNvidiaSmi(line)) this.readings.set(r.index, r);
        this.lines++;
      } catch {
        // a line that does not parse (e.g. a driver message) is skipped; the next sample replaces it
      }
    }
    if (this.buffer.length > 64 * 1024) this.buffer = '';
  }
}
