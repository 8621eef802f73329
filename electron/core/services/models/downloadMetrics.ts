import { Counter, Gauge } from 'prom-client';
import type { MetricsRegistry } from '../../base/metrics.js';

/** The model downloads' Prometheus metrics (outcomes, bytes received, downloads in progress). */
export class DownloadMetrics {
  readonly outcomes: Counter<'outcome'>;
  readonly bytes: Counter;
  readonly active: Gauge;

  constructor(metrics: MetricsRegistry, live: { active: () => number }) {
    const registers = [metrics.registry];
    this.outcomes = new Counter({ name: 'console_model_downloads_total', help: 'Model downloads finished, by outcome', labelNames: ['outcome'], registers });
    this.bytes = new Counter({ name: 'console_model_download_bytes_total', help: 'Bytes received by model downloads', registers });
    this.active = new Gauge({
      name: 'console_model_downloads_active',
      help: 'Model downloads queued or running',
      registers,
      collect() {
        this.set(live.active());
      },
    });
  }
}
