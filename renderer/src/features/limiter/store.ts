import { createStore } from 'zustand/vanilla';
import type { LimiterStatus } from '../../../../shared/client/apiTypes.js';
import type { ConsoleClient } from '../../../../shared/client/consoleClient.js';
import type { LimiterProviderStatus, PriorityDepths } from '../../../../shared/contracts/limiter.js';
import { RingSeries } from '../../lib/series.js';
import { classify, type Availability } from '../../lib/resource.js';
import { errorText } from '../../lib/format.js';

/** What the top level (the default provider) and each `providers` entry of §6.7 have in common. */
type ProviderStatus = Pick<LimiterProviderStatus, 'requests' | 'errors' | 'queue' | 'token_bucket' | 'retreat'>;

/** Live history of one provider's limiter. */
export interface ProviderHistory {
  tokens: RingSeries;
  rpm: RingSeries;
  ratio429: RingSeries;
  queueDepth: RingSeries;
  /** Retreat state changes, oldest first (bounded). */
  timeline: Transition[];
}

/** One upstream request as the limiter logged it (`request_completed` / `request_failed`). */
export interface RecentRequest {
  time: number;
  provider: string;
  status: number | null;
  error?: string;
  queueLatency?: number;
  totalLatency?: number;
  retreatState?: string;
}

/** A retreat transition (from the limiter's `recent_transitions`, or seen between two statuses). */
export interface Transition {
  time: number;
  state: string;
  rpm: number;
  reason?: string;
}

export interface LimiterState {
  availability: Availability;
  error: string | null;
  status: LimiterStatus | null;
  providers: Record<string, ProviderStatus>;
  history: Record<string, ProviderHistory>;
  tick: number;
  /** Recent upstream requests per provider (from the limiter's request log; admin only). */
  recent: Record<string, RecentRequest[]>;
  /** Reads the recent requests from the log ring (`GET /api/console/logs?module=limiter`). */
  refreshRecent(): Promise<void>;
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

/** Queue depth per priority: `depth_by_priority` in a status, `per_priority` in a dashboard-stream frame (contract §6.7). */
export function depthsOf(p: ProviderStatus): Partial<PriorityDepths> | undefined {
  const queue: Partial<Pick<LimiterProviderStatus['queue'], 'depth_by_priority'>> & { per_priority?: PriorityDepths } = p.queue;
  return queue.depth_by_priority ?? queue.per_priority;
}

export function queueDepth(p: ProviderStatus): number {
  const by = depthsOf(p);
  if (by) return Object.values(by).reduce((a, b) => a + b, 0);
  return p.queue.current_size;
}

interface TransitionEvent {
  provider: string;
  to: string;
  rpm: number;
  reason?: string;
  /** Unix seconds. */
  timestamp: number;
}

function transitionsOf(status: LimiterStatus): TransitionEvent[] | null {
  const t = (status as { recent_transitions?: unknown }).recent_transitions;
  return Array.isArray(t) ? (t as TransitionEvent[]) : null;
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
    recent: {},
    async refreshRecent() {
      try {
        const { records } = await client.logs({ module: 'limiter', limit: 1000 });
        const recent: Record<string, RecentRequest[]> = {};
        for (const r of records) {
          if (r.msg !== 'request_completed' && r.msg !== 'request_failed') continue;
          const provider = typeof r.provider === 'string' ? r.provider : 'nvidia';
          (recent[provider] ??= []).push({
            time: r.time,
            provider,
            status: typeof r.status === 'number' ? r.status : null,
            error: typeof r.error === 'string' ? r.error : undefined,
            queueLatency: typeof r.queue_latency === 'number' ? r.queue_latency : undefined,
            totalLatency: typeof r.total_latency === 'number' ? r.total_latency : undefined,
            retreatState: typeof r.retreat_state === 'string' ? r.retreat_state : undefined,
          });
        }
        for (const k of Object.keys(recent)) recent[k] = (recent[k] as RecentRequest[]).slice(-20);
        set({ recent });
      } catch {
        // not admin, or no log access: the page says how to see them
      }
    },
    ingest(status, time) {
      const providers = providersOf(status);
      const history = get().history;
      const transitions = transitionsOf(status);
      for (const [name, p] of Object.entries(providers)) {
        const h = (history[name] ??= newHistory());
        h.tokens.push(time, p.token_bucket.tokens);
        h.rpm.push(time, p.retreat.effective_rpm);
        h.ratio429.push(time, p.retreat.upstream_429_rate * 100);
        h.queueDepth.push(time, queueDepth(p));
        if (h.timeline.length === 0) h.timeline.push({ time, state: p.retreat.state, rpm: p.retreat.effective_rpm, reason: 'first seen' });
        const lastTime = h.timeline[h.timeline.length - 1]?.time ?? 0;
        // The limiter's own transition log is exact; fall back to comparing states between ticks.
        const own = transitions?.filter((t) => t.provider === name && t.timestamp * 1000 > lastTime) ?? [];
        for (const t of own) h.timeline.push({ time: t.timestamp * 1000, state: t.to, rpm: t.rpm, reason: t.reason });
        const last = h.timeline[h.timeline.length - 1];
        if (last && last.state !== p.retreat.state && own.length === 0) h.timeline.push({ time, state: p.retreat.state, rpm: p.retreat.effective_rpm });
        while (h.timeline.length > TIMELINE_MAX) h.timeline.shift();
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
