import { Counter, Gauge } from 'prom-client';
import type { MetricsRegistry } from '../../base/metrics.js';

const JOB_STATUSES = ['queued', 'running', 'paused', 'completed', 'failed', 'cancelled'] as const;

/** Training's Prometheus metrics (jobs by status, optimizer steps, the current job's losses). */
export class TrainingMetrics {
  readonly jobs: Gauge<'status'>;
  readonly steps: Counter;
  readonly loss: Gauge;
  readonly validationLoss: Gauge;

  constructor(metrics: MetricsRegistry, live: { countByStatus: () => Record<string, number> }) {
    const registers = [metrics.registry];
    this.jobs = new Gauge({
      name: 'console_training_jobs',
      help: 'Training jobs by status',
      labelNames: ['status'],
      registers,
      collect() {
        const counts = live.countByStatus();
        for (const s of JOB_STATUSES) this.set({ status: s }, counts[s] ?? 0);
      },
    });
    this.steps = new Counter({ name: 'console_training_steps_total', help: 'Optimizer steps done by training jobs', registers });
    this.loss = new Gauge({ name: 'console_training_loss', help: 'Training loss of the running (or last) job', registers });
    this.validationLoss = new Gauge({ name: 'console_training_validation_loss', help: 'Validation loss of the running (or last) job', registers });
  }
}
