import { createStore } from 'zustand/vanilla';
import type { LimiterStatus } from '../../../../shared/client/apiTypes.js';
import type { ConsoleClient } from '../../../../shared/client/consoleClient.js';
import { RingSeries } from '../../lib/series.js';
import { classify, type Availability } from '../../lib/resource.js';
import { errorText } from '../../lib/format.js';

type ProviderStatus = Omit<LimiterStatus, 'providers' | 'uptime_seconds'>;

/** Live history of one provider's limiter. */
export interface ProviderHistory {
  tokens: RingSeries;
  rpm: RingSeries;
  ratio429: RingSeries;
  queueDepth: RingSeries;
  /** Retreat state changes, oldest first (bounded). */
  timeline: Array<{ time: number; state: string; rpm: number }>;
}

export interface LimiterState {
  availability: Availability;
  error: string | null;
  status: LimiterStatus | null;
  providers: Record<string, ProviderStatus>;
  history: Record<string, ProviderHistory>;
  tick: number;
  /** Feeds one status (from the snapshot or a poll) taken at `time` (ms). */
  ingest(status: LimiterStatus, time: number): void;
  /** Polls `GET /api/limiter/status` (used when the snapshot has no limiter section). */
  refresh(time: number): Promise<void>;
  /** Admin: reset the retreat state to the base rate. */
  reset(): Promise<string | null>;
}

const TIMELINE_MAX = 500;

/** Looks like §6.7 status (what the limiter's snapshot provider is expected to return). */
export function isLimiterStatus(v: unknown): v is LimiterStatus {
  return !!v && typeof v === 'object' && 'token_bucket' in v && 'retreat' in v && 'queue' in v;
}

export function providersOf(status: LimiterStatus): Record<string, ProviderStatus> {
  if (status.providers && Object.keys(status.providers).length > 0) return status.providers;
  return { nvidia: status };
}

export function queueDepth(p: ProviderStatus): number {
  const by = p.queue.depth_by_priority ?? p.queue.per_priority;
  if (by) return Object.values(by).reduce((a, b) => a + b, 0);
  return p.queue.current_size;
}

export function createLimiterStore(client: ConsoleClient, options: { capacity?: number } = {}) {
  const cap = options.capacity ?? 8 * 3600;
  const newHistory = (): ProviderHistory => ({ tokens: new RingSeries(cap), rpm: new RingSeries(cap), ratio429: new RingSeries(cap), queueDepth: new RingSeries(cap), timeline: [] });
  return createStore<LimiterState>()((set, get) => ({
    availability: 'unknown',
    error: null,
    status: null,
    providers: {},
    history: {},
    tick: 0,
    ingest(status, time) {
      const providers = providersOf(status);
      const history = get().history;
      for (const [name, p] of Object.entries(providers)) {
        const h = (history[name] ??= newHistory());
        h.tokens.push(time, p.token_bucket.tokens);
        h.rpm.push(time, p.retreat.effective_rpm);
        h.ratio429.push(time, p.retreat.upstream_429_rate * 100);
        h.queueDepth.push(time, queueDepth(p));
        const last = h.timeline[h.timeline.length - 1];
        if (!last || last.state !== p.retreat.state) {
          h.timeline.push({ time, state: p.retreat.state, rpm: p.retreat.effective_rpm });
          if (h.timeline.length > TIMELINE_MAX) h.timeline.shift();
        }
      }
      set({ availability: 'ok', error: null, status, providers, history: { ...history }, tick: get().tick + 1 });
    },
    async refresh(time) {
      try {
        get().ingest(await client.limiterStatus(), time);
      } catch (err) {
        set(classify(err));
      }
    },
    async reset() {
      try {
        await client.limiterReset();
        return null;
      } catch (err) {
        return errorText(err);
      }
    },
  }));
}
export type LimiterStore = ReturnType<typeof createLimiterStore>;
