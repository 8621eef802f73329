import { Counter, Gauge } from 'prom-client';
import type { MetricsRegistry } from '../../base/metrics.js';

/** The runtime supervisor's Prometheus metrics (restart policy activity and the gateway's state). */
export class RuntimeMetrics {
  readonly restarts: Counter<'process'>;
  readonly gatewayUp: Gauge;

  constructor(metrics: MetricsRegistry, live: { gatewayUp: () => boolean }) {
    const registers = [metrics.registry];
    this.restarts = new Counter({
      name: 'console_runtime_restarts_total',
      help: 'Restarts done by the runtime restart policy, by configured process name',
      labelNames: ['process'],
      registers,
    });
    this.gatewayUp = new Gauge({
      name: 'console_gateway_up',
      help: '1 when the supervised gateway process is running',
      registers,
      collect() {
        this.set(live.gatewayUp() ? 1 : 0);
      },
    });
  }
}
