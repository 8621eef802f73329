import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../../electron/core/base/clock.js';
import { LoggerRegistry } from '../../../electron/core/base/logger.js';
import { ChildProcessRegistry } from '../../../electron/core/base/managedProcess.js';
import { MetricsRegistry } from '../../../electron/core/base/metrics.js';
import { PeriodicTaskRegistry } from '../../../electron/core/base/periodic.js';
import { GpuTelemetry } from '../../../electron/core/services/monitoring/gpuTelemetry.js';
import { NvidiaSmiParseError, parseNvidiaSmi } from '../../../electron/core/services/monitoring/nvidiaSmi.js';
import { TelemetryMetrics } from '../../../electron/core/services/monitoring/monitoringMetrics.js';
import { waitUntil } from '../../helpers/wait.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/nvidia-smi');
const recorded = readFileSync(join(fixtures, 'query-gpu-2x.csv'), 'utf8');

function telemetry(nvidiaSmiPath: string, nvidiaSmiLoop = false) {
  const clock = new FakeClock();
  const logs = new LoggerRegistry({ level: 'silent', destination: new Writable({ write: (_c, _e, cb) => cb() }) });
  const metrics = new MetricsRegistry();
  const periodic = new PeriodicTaskRegistry(clock, logs.get('periodic'));
  const children = new ChildProcessRegistry();
  const t = new GpuTelemetry({
    clock,
    children,
    logger: logs.get('telemetry'),
    metrics: new TelemetryMetrics(metrics),
    periodic,
    settings: () => ({ enabled: true, intervalSeconds: 0.2, historySize: 3, nvidiaSmiPath, nvidiaSmiTimeoutMs: 10_000, nvidiaSmiLoop }),
  });
  return { t, metrics, periodic, clock, children };
}

describe('nvidia-smi parser', () => {
  it('parses recorded --format=csv,noheader,nounits output, [N/A] as null', () => {
    const gpus = parseNvidiaSmi(recorded);
    expect(gpus).toHaveLength(2);
    expect(gpus[0]).toEqual({
      index: 0,
      uuid: 'GPU-8f3c2d1a-6b7e-4c59-a0d2-3e4f5a6b7c8d',
      name: 'NVIDIA GeForce RTX 4090',
      utilizationGpu: 97,
      utilizationMemory: 41,
      memoryTotalMiB: 24564,
      memoryUsedMiB: 21873,
      memoryFreeMiB: 2299,
      temperatureC: 71,
      powerDrawW: 398.27,
      powerLimitW: 450,
    });
    expect(gpus[1]).toMatchObject({ index: 1, name: 'NVIDIA GeForce RTX 3060', powerDrawW: null, powerLimitW: 170 });
  });

  it('parses a real capture (NVIDIA H200, driver 580, during the engine benchmark)', () => {
    const [gpu, ...rest] = parseNvidiaSmi(readFileSync(join(fixtures, 'query-gpu-h200.csv'), 'utf8'));
    expect(rest).toEqual([]);
    expect(gpu).toEqual({
      index: 0,
      uuid: 'GPU-b94dbc67-f5d4-ec9c-f6a3-d0e8a28e86a2',
      name: 'NVIDIA H200',
      utilizationGpu: 78,
      utilizationMemory: 25,
      memoryTotalMiB: 143771,
      memoryUsedMiB: 6233,
      memoryFreeMiB: 136924,
      temperatureC: 42,
      powerDrawW: 315.65,
      powerLimitW: 700,
    });
  });

  it('accepts CRLF and blank lines, rejects lines it would misread', () => {
    expect(parseNvidiaSmi(`${recorded.replace(/\n/g, '\r\n')}\r\n\r\n`)).toHaveLength(2);
    expect(parseNvidiaSmi('')).toEqual([]);
    expect(() => parseNvidiaSmi('0, GPU-x, NVIDIA A100, 5')).toThrow(NvidiaSmiParseError);
    expect(() => parseNvidiaSmi('x, GPU-x, n, 1, 1, 1, 1, 1, 1, 1, 1')).toThrow(/bad GPU index/);
  });
});

describe('GpuTelemetry', () => {
  it('samples through a fake nvidia-smi end to end: ring buffer, GPU ids, metrics', async () => {
    const { t, metrics } = telemetry(join(fixtures, 'fake-nvidia-smi.mjs'));
    for (let i = 0; i < 4; i++) await t.sample();
    expect(t.history()).toHaveLength(3); // ring buffer of historySize
    const s = t.latest()!;
    expect(s.gpus.map((g) => g.name)).toEqual(['NVIDIA GeForce RTX 4090', 'NVIDIA GeForce RTX 3060']);
    expect(s.cpu.loadPercent).toBeGreaterThanOrEqual(0);
    expect(s.memory.totalBytes).toBeGreaterThan(0);
    expect(t.gpuIndices()).toEqual([0, 1]);
    expect(t.status().nvidia).toMatchObject({ available: true, reason: null });
    const text = await metrics.text();
    expect(text).toContain('console_gpu_temperature_celsius{gpu="0"} 71');
    expect(text).toContain(`console_gpu_memory_used_bytes{gpu="0"} ${21873 * 1024 * 1024}`);
    expect(text).toContain('console_gpu_power_watts{gpu="0"} 398.27');
    expect(text).not.toContain('console_gpu_power_watts{gpu="1"}');
  });

  it('loop mode: one long-running nvidia-smi feeds the samples, and stop() ends it', async () => {
    const started = telemetry(join(fixtures, 'fake-nvidia-smi.mjs'), true);
    started.t.start(); // the loop only runs while telemetry is started; the FakeClock never ticks, samples are taken by hand
    try {
      await started.t.sample(); // one-shot: detects the GPU, starts the loop
      const pid = started.t.streamPid();
      expect(pid).toBeGreaterThan(0);
      await waitUntil(async () => (await started.t.sample()).gpus.length > 0, 5000, 'the streaming nvidia-smi to report the GPUs', 50);
      const s = await started.t.sample();
      expect(s.gpus.map((g) => g.index)).toEqual([0, 1]);
      expect(started.t.streamPid()).toBe(pid); // the same process, not one per sample
      // /threads' registry lists the loop (one-shots come and go)
      expect(started.children.list().filter((c) => c.name === 'nvidia-smi --loop-ms')).toEqual([expect.objectContaining({ kind: 'nvidia-smi', pid, state: 'running' })]);
      await started.t.stop();
      expect(started.t.streamPid()).toBeUndefined();
      expect(started.children.list()).toEqual([]);
      expect(() => process.kill(pid!, 0)).toThrow(/ESRCH/);
    } finally {
      await started.t.stop();
    }
  });

  it('with no nvidia-smi, says so plainly and still samples CPU and memory', async () => {
    const { t } = telemetry('/nonexistent/nvidia-smi');
    const s = await t.sample();
    expect(s.gpus).toEqual([]);
    expect(s.memory.totalBytes).toBeGreaterThan(0);
    expect(t.status().nvidia).toEqual({ available: false, reason: '/nonexistent/nvidia-smi not found', path: '/nonexistent/nvidia-smi' });
  });

  it('reports an nvidia-smi that fails, with its message', async () => {
    const { t } = telemetry('/bin/false');
    await t.sample();
    expect(t.status().nvidia.available).toBe(false);
    expect(t.status().nvidia.reason).toMatch(/\/bin\/false failed/);
  });

  it('start/stop drive the periodic task; stop leaves no timer', async () => {
    const { t, periodic, clock } = telemetry('/nonexistent/nvidia-smi');
    t.start();
    expect(periodic.get('monitoring-telemetry')?.is_running).toBe(true);
    await t.stop();
    expect(periodic.get('monitoring-telemetry')?.is_running).toBe(false);
    expect(clock.pendingTimers()).toBe(0);
  });
});
