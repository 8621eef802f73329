import { execFile } from 'node:child_process';

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
