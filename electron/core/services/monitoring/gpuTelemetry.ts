import type { Gauge } from 'prom-client';
import type { Logger } from 'pino';
import si from 'systeminformation';
import type { Clock } from '../../base/clock.js';
import type { ChildProcessRegistry } from '../../base/managedProcess.js';
import type { PeriodicTask, PeriodicTaskRegistry } from '../../base/periodic.js';
import type { TelemetryMetrics } from './monitoringMetrics.js';
import { NvidiaSmiStream, queryNvidiaSmi, type NvidiaGpuReading, type NvidiaSmiResult } from './nvidiaSmi.js';

export interface TelemetrySample {
  /** Unix ms. */
  at: number;
  cpu: { loadPercent: number; cores: number };
  memory: { totalBytes: number; usedBytes: number; availableBytes: number };
  /** NVIDIA readings (empty when there is no NVIDIA GPU). */
  gpus: NvidiaGpuReading[];
}

export interface GpuController {
  vendor: string;
  model: string;
  vramMiB: number | null;
}

export interface TelemetryStatus {
  enabled: boolean;
  intervalSeconds: number;
  /** Whether NVIDIA telemetry works, and in words why not. */
  nvidia: { available: boolean; reason: string | null; path: string };
  /** GPUs systeminformation found (any vendor); null until the first detection finished. */
  controllers: GpuController[] | null;
  samples: number;
  latest: TelemetrySample | null;
}

export interface GpuTelemetryOptions {
  clock: Clock;
  /** Where /threads lists the nvidia-smi children. */
  children?: ChildProcessRegistry;
  logger: Logger;
  metrics: TelemetryMetrics;
  periodic: PeriodicTaskRegistry;
  settings: () => { enabled: boolean; intervalSeconds: number; historySize: number; nvidiaSmiPath: string; nvidiaSmiTimeoutMs: number; nvidiaSmiLoop: boolean };
}

/** After nvidia-smi was found missing, look for it again only every this many samples. */
const MISSING_RECHECK_EVERY = 60;

/**
 * Host and GPU telemetry: CPU load and memory from systeminformation, the GPU list from
 * systeminformation (once at start), and on NVIDIA utilisation, memory, temperature and power from
 * nvidia-smi, sampled on an interval into a ring buffer and into metrics. With no GPU, the status
 * says so and nothing fails.
 */
export class GpuTelemetry {
  private readonly ring: TelemetrySample[] = [];
  private readonly task: PeriodicTask;
  private nvidia: { available: boolean; reason: string | null } = { available: false, reason: 'not sampled yet' };
  private missingSince = 0;
  private controllers: GpuController[] | null = null;
  private detecting: Promise<void> | null = null;
  private running = false;
  private stream: NvidiaSmiStream | null = null;
  private streamKey = '';
  private readonly gauges: TelemetryMetrics;

  constructor(private readonly o: GpuTelemetryOptions) {
    this.gauges = o.metrics;
    this.task = o.periodic.register({ name: 'monitoring-telemetry', level: 'low', intervalSeconds: o.settings().intervalSeconds, run: () => this.sample().then(() => undefined) });
  }

  start(): void {
    if (this.running || !this.o.settings().enabled) return;
    this.running = true;
    this.detecting = this.detect();
    this.task.start();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.task.stop();
    await this.stream?.stop();
    this.stream = null;
    await this.detecting;
  }

  /** The long-running nvidia-smi (`--loop-ms`) feeding the samples, if any: its pid. */
  streamPid(): number | undefined {
    return this.stream?.running ? this.stream.pid : undefined;
  }

  setInterval(seconds: number): void {
    this.task.setInterval(seconds);
    // the loop's own period follows: it restarts on the next sample
    void this.stream?.stop();
  }

  /** Indices of the NVIDIA GPUs seen by the last sample. */
  gpuIndices(): number[] {
    return this.ring.at(-1)?.gpus.map((g) => g.index) ?? [];
  }

  latest(): TelemetrySample | null {
    return this.ring.at(-1) ?? null;
  }

  history(limit?: number): TelemetrySample[] {
    return limit === undefined ? [...this.ring] : this.ring.slice(-limit);
  }

  status(): TelemetryStatus {
    const s = this.o.settings();
    return {
      enabled: s.enabled,
      intervalSeconds: s.intervalSeconds,
      nvidia: { ...this.nvidia, path: s.nvidiaSmiPath },
      controllers: this.controllers,
      samples: this.ring.length,
      latest: this.latest(),
    };
  }

  /** Takes one sample now (the periodic task calls this). */
  async sample(): Promise<TelemetrySample> {
    const s = this.o.settings();
    const [load, mem, smi] = await Promise.all([si.currentLoad(), si.mem(), this.readSmi(s)]);
    const gpus = smi?.ok ? smi.gpus : [];
    const sample: TelemetrySample = {
      at: this.o.clock.now(),
      cpu: { loadPercent: Math.round(load.currentLoad * 10) / 10, cores: load.cpus.length },
      memory: { totalBytes: mem.total, usedBytes: mem.active, availableBytes: mem.available },
      gpus,
    };
    this.ring.push(sample);
    while (this.ring.length > s.historySize) this.ring.shift();
    this.gauges.cpu.set(sample.cpu.loadPercent);
    this.gauges.hostMem.set(sample.memory.usedBytes);
    const MiB = 1024 * 1024;
    for (const g of gpus) {
      const gpu = String(g.index);
      const set = (gauge: Gauge<'gpu'>, v: number | null) => (v === null ? gauge.remove({ gpu }) : gauge.set({ gpu }, v));
      set(this.gauges.util, g.utilizationGpu);
      set(this.gauges.memUsed, g.memoryUsedMiB === null ? null : g.memoryUsedMiB * MiB);
      set(this.gauges.memTotal, g.memoryTotalMiB === null ? null : g.memoryTotalMiB * MiB);
      set(this.gauges.temp, g.temperatureC);
      set(this.gauges.power, g.powerDrawW);
    }
    return sample;
  }

  /** In loop mode, the stream's latest readings; otherwise (or to detect/restart) a one-shot call. */
  private async readSmi(s: ReturnType<GpuTelemetryOptions['settings']>): Promise<NvidiaSmiResult | null> {
    if (this.stream?.running) {
      if (this.stream.fresh(3 * s.intervalSeconds * 1000 + s.nvidiaSmiTimeoutMs)) {
        const gpus = this.stream.latest();
        if (gpus.length > 0) return { ok: true, gpus };
      } else {
        this.o.logger.warn('nvidia-smi loop printed nothing for too long; restarting it');
        void this.stream.stop();
      }
    }
    const result = await this.querySmi(s.nvidiaSmiPath, s.nvidiaSmiTimeoutMs);
    if (s.nvidiaSmiLoop && this.running && result?.ok && result.gpus.length > 0) this.startStream(s.nvidiaSmiPath, s.intervalSeconds * 1000);
    return result;
  }

  private startStream(path: string, intervalMs: number): void {
    const key = `${path}|${intervalMs}`;
    if (this.stream?.running && this.streamKey === key) return;
    void this.stream?.stop();
    this.streamKey = key;
    this.stream = new NvidiaSmiStream({
      clock: this.o.clock,
      ...(this.o.children ? { children: this.o.children } : {}),
      path,
      intervalMs,
      onExit: (reason) => {
        this.o.logger.warn({ reason }, 'nvidia-smi loop ended; falling back to one-shot calls');
      },
    });
    this.stream.start();
  }

  private async querySmi(path: string, timeoutMs: number): Promise<NvidiaSmiResult | null> {
    if (!this.nvidia.available && this.missingSince > 0 && this.missingSince % MISSING_RECHECK_EVERY !== 0) {
      this.missingSince++;
      return null;
    }
    const result = await queryNvidiaSmi(path, timeoutMs, { clock: this.o.clock, ...(this.o.children ? { children: this.o.children } : {}) });
    if (result.ok && result.gpus.length > 0) {
      if (!this.nvidia.available) this.o.logger.info({ gpus: result.gpus.map((g) => g.name) }, 'NVIDIA telemetry available');
      this.nvidia = { available: true, reason: null };
      this.missingSince = 0;
    } else {
      const reason = result.ok ? 'nvidia-smi reports no GPU' : result.error;
      if (this.nvidia.reason !== reason) this.o.logger.info({ reason }, 'NVIDIA telemetry unavailable');
      this.nvidia = { available: false, reason };
      this.missingSince = result.ok || result.missing ? this.missingSince + 1 : 0;
    }
    return result;
  }

  private async detect(): Promise<void> {
    try {
      const g = await si.graphics();
      this.controllers = g.controllers.map((c) => ({ vendor: c.vendor, model: c.model, vramMiB: c.vram }));
    } catch (err) {
      this.o.logger.warn({ err }, 'GPU detection failed');
      this.controllers = [];
    }
  }
}
