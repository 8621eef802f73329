import { Counter, Gauge, Histogram } from 'prom-client';
import { PRIORITIES, type Priority } from '../../../../shared/contracts/priority.js';
import type { MetricsRegistry } from '../../base/metrics.js';

/**
 * Which surface a request came through: the metrics' `route` label. A fixed set, so the label stays
 * low-cardinality. Model ids are never a label (they are unbounded: every download adds one);
 * per-model figures are in the engine's status endpoint and the logs instead.
 */
export type EngineRoute = 'v1_chat' | 'v1_completions' | 'v1_embeddings' | 'api_inference' | 'api_stream' | 'grpc_stream_predict' | 'grpc_predict';

export type RequestOutcome = 'success' | 'error' | 'cancelled' | 'rejected';

/** The engine's Prometheus metrics (contract §11.2 `console_inference_requests_total` plus engine detail). */
export class EngineMetrics {
  readonly requests: Counter<'surface' | 'status'>;
  readonly tokens: Counter<'route' | 'priority' | 'direction'>;
  readonly ttft: Histogram<'route' | 'priority'>;
  readonly tokensPerSecond: Histogram<'route' | 'priority'>;
  readonly queueWait: Histogram<'priority'>;
  readonly queueDepth: Gauge<'priority'>;
  readonly activeSequences: Gauge;
  readonly loadedModels: Gauge;

  constructor(metrics: MetricsRegistry, live: { depth: () => Record<Priority, number>; active: () => number; loaded: () => number }) {
    const registers = [metrics.registry];
    this.requests = new Counter({ name: 'console_inference_requests_total', help: 'Inference requests by surface and outcome', labelNames: ['surface', 'status'], registers });
    this.tokens = new Counter({ name: 'console_engine_tokens_total', help: 'Prompt (in) and generated (out) tokens by route and priority', labelNames: ['route', 'priority', 'direction'], registers });
    this.ttft = new Histogram({
      name: 'console_engine_ttft_seconds',
      help: 'Time from a request getting its sequence to its first generated token',
      labelNames: ['route', 'priority'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.tokensPerSecond = new Histogram({
      name: 'console_engine_tokens_per_second',
      help: 'Generation speed of each request (tokens after the first / seconds after the first)',
      labelNames: ['route', 'priority'],
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
      registers,
    });
    this.queueWait = new Histogram({
      name: 'console_engine_queue_wait_seconds',
      help: 'Time a request waited for a context sequence',
      labelNames: ['priority'],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120],
      registers,
    });
    this.queueDepth = new Gauge({
      name: 'console_engine_queue_depth',
      help: 'Requests waiting for a context sequence, by priority',
      labelNames: ['priority'],
      registers,
      collect() {
        const d = live.depth();
        for (const p of PRIORITIES) this.set({ priority: p }, d[p]);
      },
    });
    this.activeSequences = new Gauge({
      name: 'console_engine_active_sequences',
      help: 'Context sequences generating right now (all models)',
      registers,
      collect() {
        this.set(live.active());
      },
    });
    this.loadedModels = new Gauge({
      name: 'console_engine_loaded_models',
      help: 'Models loaded in memory',
      registers,
      collect() {
        this.set(live.loaded());
      },
    });
  }
}
