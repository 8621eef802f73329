import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { PRIORITIES, type Priority } from '../../../../shared/contracts/priority.js';
import { RETREAT_STATE_CODE } from './retreatController.js';
import type { Outcome, ProviderLimiter } from './providerLimiter.js';

/** Contract labels are upper-case priorities. */
export const PRIORITY_LABEL: Readonly<Record<Priority, string>> = { urgent: 'URGENT', high: 'HIGH', normal: 'NORMAL', low: 'LOW' };

/**
 * The limiter's Prometheus series (contract §11.1: 10 base + 3 retreat, plus transitions, drops
 * and invalid priorities). Every series is labelled by `provider` (a configured name, so bounded),
 * never by model id. Gauges read the live limiters when scraped.
 */
export class LimiterMetrics {
  readonly requests: Counter<'provider' | 'priority' | 'status'>;
  readonly queueLatency: Histogram<'provider' | 'priority'>;
  readonly upstreamLatency: Histogram<'provider'>;
  readonly upstreamErrors: Counter<'provider' | 'status_code'>;
  readonly passthrough: Counter<'provider'>;
  readonly transitions: Counter<'provider' | 'from' | 'to'>;
  readonly drops: Counter<'provider' | 'reason'>;
  readonly invalidPriority: Counter<'provider'>;

  constructor(
    registry: Registry,
    limiters: () => Iterable<ProviderLimiter>,
    uptimeSeconds: () => number,
  ) {
    const reg = [registry];
    const add = <T extends Counter<string> | Gauge<string> | Histogram<string>>(m: T): T => m;
    /** A gauge with one series per provider, read from the live limiters when scraped (a removed provider's series disappear). */
    const perProvider = (name: string, help: string, value: (l: ProviderLimiter) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['provider'],
        registers: reg,
        collect() {
          this.reset();
          for (const l of limiters()) this.set({ provider: l.name }, value(l));
        },
      });
    this.requests = add(
      new Counter({ name: 'sidecar_requests_total', help: 'Limiter requests by provider, priority and outcome', labelNames: ['provider', 'priority', 'status'], registers: reg }),
    );
    perProvider('sidecar_tokens_available', 'Tokens currently in the bucket', (l) => l.view().tokens);
    perProvider('sidecar_tokens_rate', 'Bucket refill rate in tokens per minute', (l) => (l.isShared ? l.view().rpm : l.bucket.ratePerMinute));
    add(
      new Gauge({
        name: 'sidecar_queue_depth',
        help: 'Queued requests by priority',
        labelNames: ['provider', 'priority'],
        registers: reg,
        collect() {
          this.reset(); // a removed provider's series disappear
          for (const l of limiters()) for (const p of PRIORITIES) this.set({ provider: l.name, priority: PRIORITY_LABEL[p] }, l.depth(p));
        },
      }),
    );
    perProvider('sidecar_queue_max_size', 'Queue capacity (queue_max_size): the queue-full alert compares the depth with it', (l) => l.limits.queue_max_size);
    this.queueLatency = add(
      new Histogram({
        name: 'sidecar_queue_latency_seconds',
        help: 'Time spent waiting for a token',
        labelNames: ['provider', 'priority'],
        buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120],
        registers: reg,
      }),
    );
    this.upstreamLatency = add(
      new Histogram({
        name: 'sidecar_upstream_latency_seconds',
        help: 'Upstream time to response headers',
        labelNames: ['provider'],
        buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
        registers: reg,
      }),
    );
    this.upstreamErrors = add(
      new Counter({ name: 'sidecar_upstream_errors_total', help: 'Non-2xx upstream responses and transport failures (status_code "transport")', labelNames: ['provider', 'status_code'], registers: reg }),
    );
    this.passthrough = add(new Counter({ name: 'sidecar_fallback_passthrough_total', help: 'Queue-full passthroughs', labelNames: ['provider'], registers: reg }));
    perProvider('sidecar_health_status', '1 healthy, 0 after an upstream transport error until the next response', (l) => (l.healthy ? 1 : 0));
    add(
      new Gauge({
        name: 'sidecar_uptime_seconds',
        help: 'Seconds since the limiter started',
        registers: reg,
        collect() {
          this.set(uptimeSeconds());
        },
      }),
    );
    perProvider('sidecar_retreat_state', 'Retreat state: 0 NORMAL, 1 RETREAT, 2 RECOVER', (l) => RETREAT_STATE_CODE[l.view().state]);
    perProvider('sidecar_effective_rate_rpm', 'Post-retreat rate in requests per minute', (l) => l.view().rpm);
    perProvider('sidecar_upstream_429_rate', '429 share of upstream responses in the retreat window (0-1)', (l) => l.view().ratio);
    this.transitions = add(
      new Counter({ name: 'sidecar_retreat_transitions_total', help: 'Retreat state changes and rate steps', labelNames: ['provider', 'from', 'to'], registers: reg }),
    );
    this.drops = add(
      new Counter({
        name: 'sidecar_dropped_total',
        help: 'Requests that left the queue without a token (timeout, queue_full, dropped, cancelled, stopped)',
        labelNames: ['provider', 'reason'],
        registers: reg,
      }),
    );
    this.invalidPriority = add(
      new Counter({ name: 'sidecar_invalid_priority_total', help: 'Requests whose X-Priority was not one of the four levels (served as NORMAL)', labelNames: ['provider'], registers: reg }),
    );
  }

  outcome(provider: string, priority: Priority, status: Outcome): void {
    this.requests.inc({ provider, priority: PRIORITY_LABEL[priority], status });
  }
}
