import type { Logger } from 'pino';
import { LIMIT_KEYS, type LimitSettings, type LimiterConfig } from '../../../../shared/contracts/config/limiter.js';
import type {
  LimiterConfigPatch,
  LimiterProviderStatus,
  LimiterSnapshot,
  LimiterStatus,
  LimiterTransitionEvent,
  PriorityDepths,
} from '../../../../shared/contracts/limiter.js';
import { maskSecret } from '../../../../shared/mask.js';
import type { Priority } from '../../../../shared/contracts/priority.js';
import type { Clock, TimerHandle } from '../../base/clock.js';
import { ConfigError, type ConfigIssue, type ConfigStore } from '../../base/config.js';
import { AppError, ErrorCode } from '../../base/errors.js';
import type { ComponentHealth, ReadinessPart } from '../../base/health.js';
import { BaseService, drainUntil } from '../../base/lifecycle.js';
import type { MetricsRegistry } from '../../base/metrics.js';
import type { LearnedRate, LearnedRateStore } from './learnedRateStore.js';
import type { BudgetStore } from './sharedBudget.js';
import { LimiterMetrics, PRIORITY_LABEL } from './limiterMetrics.js';
import { fullPolicy, ProviderLimiter, retreatParams, type Outcome } from './providerLimiter.js';
import type { RetreatTransition } from './retreatController.js';
import { forwardableHeaders, mapUpstreamError, readUpstreamBody, UpstreamClient, type UpstreamResponse } from './upstreamClient.js';

export interface LimiterServiceOptions {
  config: ConfigStore;
  clock: Clock;
  logger: Logger;
  metrics: MetricsRegistry;
  /** The learned rate per provider survives a restart. */
  rates: LearnedRateStore;
  /** Environment for `api_key_env` lookups (process.env in production). */
  env: NodeJS.ProcessEnv;
  /**
   * Cluster mode (`cluster.redisUrl`): each provider key's budget (bucket, 429 window, retreat
   * state) is shared with every console using the same provider name and key, through Redis.
   */
  budgets?: BudgetStore;
}

/** A configured provider after merging its entry over the section defaults. */
export interface ResolvedProvider {
  name: string;
  aliases: string[];
  upstreamUrl: string;
  apiKey: string;
  probe: boolean;
  limits: LimitSettings;
}

/** Where a model id goes (see README "Routing"). */
export type Route = { kind: 'provider'; provider: string } | { kind: 'unknown-provider'; prefix: string } | { kind: 'local' };

/** One proxied call, already stripped of anything Fastify-specific by the HTTP adapter. */
export interface ProxyCall {
  provider: string;
  method: 'GET' | 'POST';
  /** Path below the upstream base URL, e.g. `/chat/completions`. */
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body?: Buffer | string;
  priority: Priority;
  /** True when X-Priority was present but invalid (counted, served as NORMAL). */
  priorityInvalid: boolean;
  /** Aborted when the client goes away: leaves the queue, or cancels the upstream call. */
  signal: AbortSignal;
  requestId: string;
  /** For logs only (never a metric label). */
  modelId?: string;
}

export type LimiterEvent = { type: 'transition'; event: LimiterTransitionEvent };

const DEFAULT_PROVIDER = 'nvidia';
const round = (n: number, digits: number) => Math.round(n * 10 ** digits) / 10 ** digits;
/** A provider-looking model id: `<prefix>/<org>/<model>` with a plain-name prefix (README "Routing"). */
const PROVIDER_LIKE = /^([a-z0-9][a-z0-9._-]*)\/[^/]+\/.+$/;

/** Merges the section defaults, each provider entry, and resolves keys; throws ConfigError on conflicts. */
export function resolveProviders(cfg: LimiterConfig, env: NodeJS.ProcessEnv): ResolvedProvider[] {
  const defaults = Object.fromEntries(LIMIT_KEYS.map((k) => [k, cfg[k]])) as LimitSettings;
  const out: ResolvedProvider[] = [
    {
      name: DEFAULT_PROVIDER,
      aliases: cfg.nvidia_aliases.map((a) => a.toLowerCase()),
      upstreamUrl: cfg.upstream_url,
      apiKey: cfg.upstream_api_key,
      probe: cfg.probe_upstream ?? cfg.upstream_api_key !== '',
      limits: defaults,
    },
  ];
  for (const p of cfg.providers) {
    const limits = { ...defaults } as Record<string, unknown>;
    for (const k of LIMIT_KEYS) if (p[k] !== undefined) limits[k] = p[k];
    const apiKey = (p.api_key_env ? env[p.api_key_env] : undefined) ?? p.upstream_api_key ?? '';
    out.push({ name: p.name, aliases: p.aliases, upstreamUrl: p.upstream_url, apiKey, probe: p.probe ?? apiKey !== '', limits: limits as LimitSettings });
  }
  const issues: ConfigIssue[] = [];
  const names = new Set<string>();
  const aliases = new Map<string, string>();
  out.forEach((p, i) => {
    const path = i === 0 ? 'limiter' : `limiter.providers.${i - 1}`;
    if (names.has(p.name)) issues.push({ path: `${path}.name`, expected: 'a unique provider name', got: JSON.stringify(p.name), source: 'config' });
    names.add(p.name);
    for (const a of p.aliases) {
      const owner = aliases.get(a);
      if (owner !== undefined && owner !== p.name) issues.push({ path: `${path}.aliases`, expected: `aliases not used by another provider (${owner})`, got: JSON.stringify(a), source: 'config' });
      aliases.set(a, p.name);
    }
  });
  if (cfg.listen_port !== 0 && cfg.listen_port === cfg.metrics_port) {
    issues.push({ path: 'limiter.metrics_port', expected: 'a port different from listen_port', got: String(cfg.metrics_port), source: 'config' });
  }
  if (issues.length > 0) throw new ConfigError('Invalid limiter settings:', issues);
  return out;
}

interface ProviderEntry {
  resolved: ResolvedProvider;
  limiter: ProviderLimiter;
  client: UpstreamClient;
  probe: { at: number; ok: boolean; pending: Promise<boolean> | null };
}

/**
 * The limiter service (contract §6): per configured provider a priority queue and an adaptive
 * token bucket in front of an undici keep-alive pool. The HTTP adapter hands it `ProxyCall`s;
 * dashboards read one shared snapshot, rebuilt at most once per second.
 */
export class LimiterService extends BaseService {
  readonly name = 'limiter';
  private readonly entries = new Map<string, ProviderEntry>();
  private readonly aliasIndex = new Map<string, string>();
  private readonly metrics: LimiterMetrics;
  private readonly listeners = new Set<(e: LimiterEvent) => void>();
  private readonly recent: LimiterTransitionEvent[] = [];
  private localRequests = 0;
  private startedMono: number;
  private cached: { at: number; snapshot: LimiterSnapshot } | null = null;
  private unsubscribeConfig: (() => void) | null = null;
  /** Learned rates not yet written (rate steps inside one state), written together at most once per second. */
  private readonly unsaved = new Map<string, { rate: LearnedRate; at: number }>();
  private saveTimer: TimerHandle | null = null;
  /** Calls between their arrival and the end of their relayed answer (a drain waits for them). */
  private inFlight = 0;
  private readonly idleWaiters: Array<() => void> = [];
  private readonly callEnded = (): void => {
    if (--this.inFlight === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
  };

  constructor(private readonly options: LimiterServiceOptions) {
    super();
    this.startedMono = options.clock.monotonic();
    // Validate now so a bad provider list is a start-up error (exit code 2), like any bad field.
    const resolved = resolveProviders(options.config.get().limiter, options.env);
    this.metrics = new LimiterMetrics(options.metrics.registry, () => [...this.entries.values()].map((e) => e.limiter), () => this.uptimeSeconds());
    for (const r of resolved) this.addProvider(r);
  }

  /** Configured providers with their aliases (for messages and the dashboard). */
  providers(): Array<{ name: string; aliases: string[] }> {
    return [...this.entries.values()].map((e) => ({ name: e.resolved.name, aliases: e.resolved.aliases }));
  }

  /** Which way a model id goes: a configured provider prefix, an unknown provider-looking prefix, or local. */
  route(modelId: string): Route {
    const slash = modelId.indexOf('/');
    if (slash > 0) {
      const prefix = modelId.slice(0, slash).trim().toLowerCase();
      const provider = this.aliasIndex.get(prefix);
      if (provider) return { kind: 'provider', provider };
    }
    const m = PROVIDER_LIKE.exec(modelId.trim().toLowerCase());
    if (m) return { kind: 'unknown-provider', prefix: m[1]! };
    return { kind: 'local' };
  }

  /** The 404 for a provider-looking id whose prefix is not configured. */
  unknownProviderError(prefix: string, modelId: string): AppError {
    const list = this.providers()
      .map((p) => `${p.name} (${p.aliases.join(', ')})`)
      .join('; ');
    return new AppError(ErrorCode.MODEL_NOT_FOUND, `Unknown provider '${prefix}' in model '${modelId}'. Configured providers: ${list}`, { type: 'invalid_request_error' });
  }

  /** Counts a `/v1/*` request the local engine served (contract §6.7 `requests.passthrough`). */
  countLocalRequest(): void {
    this.localRequests++;
  }

  /**
   * Waits for a token of the call's provider, forwards the call, feeds the answer into the retreat
   * machine and returns the upstream response with its body still streaming. Rejects with the
   * contract's errors (§6.9). The slot is released when the client aborts, at any stage.
   */
  async proxy(call: ProxyCall): Promise<UpstreamResponse> {
    const entry = this.entries.get(call.provider);
    if (!entry) throw new AppError(ErrorCode.MODEL_NOT_FOUND, `Provider '${call.provider}' is not configured`);
    const refused = this.refusal('The limiter');
    if (refused) throw refused;
    const { limiter, client } = entry;
    this.inFlight++; // a counter, not a promise per call: this is the proxy's hot path
    let handedOver = false;
    const provider = entry.resolved.name;
    const log = this.options.logger;
    if (call.priorityInvalid) this.metrics.invalidPriority.inc({ provider });
    const t0 = this.options.clock.monotonic();
    let outcome: Outcome = 'error';
    try {
      const grant = await limiter.acquire(call.priority, call.signal);
      this.metrics.queueLatency.observe({ provider, priority: PRIORITY_LABEL[call.priority] }, grant.waitedMs / 1000);
      if (grant.passthrough) this.metrics.passthrough.inc({ provider });
      const t1 = this.options.clock.monotonic();
      let res: UpstreamResponse;
      try {
        res = await client.request({
          method: call.method,
          path: call.path,
          headers: forwardableHeaders(call.headers),
          body: call.body,
          signal: call.signal,
          timeoutMs: limiter.limits.request_timeout * 1000,
        });
      } catch (err) {
        this.transportFailed(entry, err, 'request');
        throw err;
      }
      const t2 = this.options.clock.monotonic();
      this.metrics.upstreamLatency.observe({ provider }, (t2 - t1) / 1000);
      limiter.recordResponse(res.status, res.retryAfterSeconds);
      if (res.status < 200 || res.status >= 300) this.metrics.upstreamErrors.inc({ provider, status_code: String(res.status) });
      outcome = res.status === 429 ? 'ratelimited' : res.status < 400 ? 'success' : 'error';
      const finished = () =>
        log.info(
          {
            request_id: call.requestId,
            provider,
            model_id: call.modelId,
            status: res.status,
            queue_latency: round(grant.waitedMs / 1000, 4),
            upstream_latency: round((t2 - t1) / 1000, 4),
            total_latency: round((this.options.clock.monotonic() - t0) / 1000, 4),
            retreat_state: limiter.view().state,
            effective_rpm: round(limiter.view().rpm, 1),
          },
          'request_completed',
        );
      // Built only when it will be written (`request_completed` is info; the log level may be above).
      if (log.isLevelEnabled('info')) res.body.once('close', finished);
      res.body.once('close', this.callEnded); // the call is over once its answer has been relayed (or cut)
      handedOver = true;
      // A failure after the headers (reset mid-stream, body timeout) is a transport error too.
      res.body.once('error', (err) => this.transportFailed(entry, mapUpstreamError(err, limiter.limits.request_timeout * 1000), 'body', call.requestId));
      return res;
    } catch (err) {
      if (err instanceof AppError && err.code === ErrorCode.RATE_LIMITED) outcome = 'ratelimited';
      log.info({ request_id: call.requestId, provider, model_id: call.modelId, error: (err as Error).message }, 'request_failed');
      throw err;
    } finally {
      if (!handedOver) this.callEnded();
      this.metrics.outcome(provider, call.priority, outcome);
    }
  }

  /** Passes a GET of the model list through the limiter (contract §3.4 `provider=` query). */
  async listModels(provider: string, signal: AbortSignal, requestId: string): Promise<unknown> {
    const res = await this.proxy({ provider, method: 'GET', path: '/models', headers: { accept: 'application/json' }, priority: 'normal', priorityInvalid: false, signal, requestId });
    const text = (await this.readBody(provider, res)).toString('utf8');
    if (res.status >= 400) throw new AppError(ErrorCode.UPSTREAM_ERROR, `Bad Gateway — 上游返回错误状态 ${res.status}`, { type: 'HTTPStatusError' });
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new AppError(ErrorCode.UPSTREAM_ERROR, 'Bad Gateway — upstream model list is not JSON', { type: 'HTTPStatusError' });
    }
  }

  /** Reads a whole (small) proxied body; a failure mid-body is the §6.9 502/504 (already counted). */
  readBody(provider: string, res: UpstreamResponse): Promise<Buffer> {
    const timeoutS = this.entries.get(provider)?.limiter.limits.request_timeout ?? 60;
    return readUpstreamBody(res.body, timeoutS * 1000);
  }

  /**
   * Counts a transport failure (contract §6.9): `upstream_errors`, `sidecar_upstream_errors_total{status_code="transport"}`,
   * `sidecar_health_status` 0 until the next upstream response, and a fresh readiness probe. A client
   * that went away is not an upstream failure, and neither is a 500 (an error of ours).
   */
  private transportFailed(entry: ProviderEntry, err: unknown, stage: 'request' | 'body', requestId?: string): void {
    const mapped = mapUpstreamError(err, entry.limiter.limits.request_timeout * 1000);
    if (mapped.status !== 502 && mapped.status !== 504) return;
    const provider = entry.resolved.name;
    entry.limiter.recordTransportError();
    entry.probe.at = Number.NEGATIVE_INFINITY;
    this.metrics.upstreamErrors.inc({ provider, status_code: 'transport' });
    this.cached = null;
    this.options.logger.warn({ provider, request_id: requestId, stage, status: mapped.status, error: mapped.message }, 'upstream_transport_error');
  }

  /** Subscribes to transitions (the dashboard stream pushes them at once). */
  onEvent(listener: (e: LimiterEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** `/api/limiter/status` (contract §6.7). */
  status(): LimiterStatus {
    const providers = Object.fromEntries([...this.entries.values()].map((e) => [e.resolved.name, this.providerStatus(e)]));
    const main = providers[DEFAULT_PROVIDER] ?? Object.values(providers)[0]!;
    const remote = Object.values(providers).reduce((n, p) => n + p.requests.total, 0);
    const passthrough = Object.values(providers).reduce((n, p) => n + p.requests.passthrough, 0);
    const ratelimited = Object.values(providers).reduce((n, p) => n + p.requests.ratelimited, 0);
    return {
      requests: { total: remote + this.localRequests, nvidia: remote, passthrough: passthrough + this.localRequests, ratelimited },
      errors: {
        queue_full_rejects: Object.values(providers).reduce((n, p) => n + p.errors.queue_full_rejects, 0),
        upstream_errors: Object.values(providers).reduce((n, p) => n + p.errors.upstream_errors, 0),
      },
      queue: main.queue,
      token_bucket: main.token_bucket,
      retreat: main.retreat,
      uptime_seconds: Math.floor(this.uptimeSeconds()),
      providers,
    };
  }

  /**
   * The dashboard snapshot (contract §6.7), shared by every viewer: rebuilt at most once per second
   * of the injected clock, whatever the number of SSE/WebSocket clients.
   */
  snapshot(): LimiterSnapshot {
    const now = this.options.clock.monotonic();
    if (this.cached && now - this.cached.at < 1000) return this.cached.snapshot;
    const s = this.status();
    const { depth_by_priority, ...queue } = s.queue;
    const snapshot: LimiterSnapshot = {
      timestamp: this.options.clock.now() / 1000,
      uptime_seconds: s.uptime_seconds,
      token_bucket: s.token_bucket,
      queue: { ...queue, per_priority: depth_by_priority },
      retreat: s.retreat,
      requests: s.requests,
      errors: s.errors,
      providers: s.providers,
      recent_transitions: [...this.recent],
    };
    this.cached = { at: now, snapshot };
    return snapshot;
  }

  /** `GET /api/admin/config` (contract §6.8): the default provider, key masked, `rate_rpm` effective. */
  adminConfig(): Record<string, unknown> {
    const cfg = this.options.config.get().limiter;
    const main = this.entries.get(DEFAULT_PROVIDER)!;
    const limits = Object.fromEntries(LIMIT_KEYS.map((k) => [k, main.limiter.limits[k]]));
    return {
      listen_host: cfg.listen_host,
      listen_port: cfg.listen_port,
      metrics_port: cfg.metrics_port,
      upstream_url: cfg.upstream_url,
      upstream_api_key: maskSecret(main.resolved.apiKey),
      ...limits,
      rate_rpm: round(main.limiter.view().rpm, 1),
      base_rpm: main.limiter.retreat.baseRpm,
      queue_full_policy: main.limiter.policy,
      log_level: cfg.log_level,
      providers: [...this.entries.values()]
        .filter((e) => e.resolved.name !== DEFAULT_PROVIDER)
        .map((e) => ({ name: e.resolved.name, aliases: e.resolved.aliases, upstream_url: e.resolved.upstreamUrl, upstream_api_key: maskSecret(e.resolved.apiKey) })),
    };
  }

  /**
   * `POST /api/admin/config`: validated by the HTTP adapter's schema; refuses to shrink the queue
   * below its depth and fields pinned by env; writes config.json through the ConfigStore (which
   * re-validates the whole config and changes nothing on error). Returns the changed fields.
   */
  applyAdminPatch(patch: LimiterConfigPatch): string[] {
    const main = this.entries.get(DEFAULT_PROVIDER)!;
    if (patch.queue_max_size !== undefined && patch.queue_max_size < main.limiter.queueSize) {
      throw new AppError(ErrorCode.INVALID_REQUEST, `拒绝缩小:新上限 ${patch.queue_max_size} < 当前排队数 ${main.limiter.queueSize},需要先排空或提升上限`);
    }
    const pinned = Object.keys(patch).filter((k) => this.options.config.overriddenPaths().includes(`limiter.${k}`));
    if (pinned.length > 0) {
      throw new AppError(ErrorCode.CONFLICT, `Set by environment variables, so a config change would not apply: ${pinned.join(', ')}`);
    }
    const current = this.options.config.get().limiter as unknown as Record<string, unknown>;
    const changed = Object.entries(patch)
      .filter(([k, v]) => v !== undefined && current[k] !== v)
      .map(([k]) => k);
    if (changed.length === 0) return [];
    const result = this.options.config.update({ limiter: patch });
    if (!result.ok) {
      throw new AppError(ErrorCode.INVALID_REQUEST, `Invalid config; nothing was changed: ${result.issues.map((i) => `${i.path}: expected ${i.expected}, got ${i.got}`).join('; ')}`);
    }
    return changed;
  }

  /** `POST /api/limiter/admin/reset`: rate = base, NORMAL, window cleared (one provider or all). */
  async reset(provider?: string): Promise<LimiterStatus['retreat']> {
    const targets = provider === undefined ? [...this.entries.values()] : [this.entries.get(provider)].filter((e): e is ProviderEntry => e !== undefined);
    if (targets.length === 0) throw new AppError(ErrorCode.NOT_FOUND, `Provider '${provider}' is not configured; configured: ${[...this.entries.keys()].join(', ')}`);
    for (const e of targets) await e.limiter.resetShared();
    const main = targets[0]!;
    return this.providerStatus(main).retreat;
  }

  /**
   * Readiness part (contract §6.7/§9): `upstream_reachable`, `queue_healthy` and
   * `token_bucket_healthy` over every provider, and `ready` only when all three hold. A provider with
   * a key (or `probe: true`) is probed (`GET {upstream_url}/models`, 5 s, reachable if < 500; cached
   * 10 s, re-probed after a transport error). A provider without a key is not probed (the console
   * works offline): its reachability is what its own traffic showed (false after a transport error
   * until the next upstream response), it is reported but does not block readiness.
   */
  async readiness(): Promise<ReadinessPart> {
    const entries = [...this.entries.values()];
    const reachable = await Promise.all(entries.map((e) => (e.resolved.probe ? this.probe(e) : Promise.resolve(e.limiter.healthy))));
    const upstreamReachable = reachable.every(Boolean);
    const probedReachable = entries.every((e, i) => !e.resolved.probe || reachable[i] === true);
    const queueHealthy = entries.every((e) => e.limiter.queueSize < 0.9 * e.limiter.limits.queue_max_size);
    const bucketHealthy = entries.every((e) => e.limiter.view().tokens > 0.05 * e.limiter.limits.bucket_capacity);
    return {
      ready: this.running && entries.length > 0 && probedReachable && queueHealthy && bucketHealthy,
      fields: {
        upstream_reachable: upstreamReachable,
        upstream_probed: entries.some((e) => e.resolved.probe),
        queue_healthy: queueHealthy,
        token_bucket_healthy: bucketHealthy,
      },
    };
  }

  /** Component for `/api/v1/health` (contract §9). */
  component(): ComponentHealth {
    const main = this.entries.get(DEFAULT_PROVIDER)!;
    const view = main.limiter.view();
    // Shared budgets: DOWN while Redis is away (every token is refused with 503 then).
    const budgetsDown = this.options.budgets !== undefined && !this.options.budgets.available;
    const unavailable = budgetsDown ? [...this.entries.keys()] : [];
    const lastError = [...this.entries.values()].map((e) => e.limiter.sharedUnavailable).find((m) => m !== null) ?? null;
    return {
      status: this.running && main.limiter.healthy && unavailable.length === 0 ? 'UP' : 'DOWN',
      details: {
        state: view.state,
        effective_rpm: round(view.rpm, 1),
        queue: { pendingTasks: main.limiter.queueSize, maxSize: main.limiter.limits.queue_max_size },
        budget: this.options.budgets ? 'shared (cluster Redis)' : 'local',
        ...(this.options.budgets
          ? { budget_unavailable: unavailable, budget_error: budgetsDown ? `requests get 503 until Redis answers${lastError ? `: ${lastError}` : ''}` : null }
          : {}),
      },
    };
  }

  protected async onStart(): Promise<void> {
    this.startedMono = this.options.clock.monotonic();
    await this.options.budgets?.start();
    // After a stop() the providers were released; a restart builds them again (from the current config).
    if (this.entries.size === 0) for (const r of resolveProviders(this.options.config.get().limiter, this.options.env)) this.addProvider(r);
    this.unsubscribeConfig = this.options.config.onChange((next, prev) => {
      if (next.limiter !== prev.limiter) this.reconfigure(next.limiter);
    });
    this.options.logger.info({ providers: this.providers() }, 'limiter started');
  }

  /** Refuses the calls waiting for a token (503, stopping) and lets those already upstream finish (new ones get 503 "The limiter is stopping"). */
  protected override async onDrain(deadline: AbortSignal): Promise<void> {
    // What waits for a token has not started: refused now (503 "… is stopping") so its client can
    // retry elsewhere at once (a token may be further away than the grace), as the engine does.
    for (const e of this.entries.values()) e.limiter.stop();
    if (this.inFlight === 0) return;
    const log = this.options.logger;
    log.info({ in_flight: this.inFlight }, 'limiter draining: waiting for the calls in flight');
    const finished = await drainUntil(deadline, new Promise<void>((resolve) => this.idleWaiters.push(resolve)));
    if (!finished) log.warn({ in_flight: this.inFlight }, 'limiter drain deadline reached: aborting the calls still in flight');
  }

  protected override async onStop(): Promise<void> {
    this.unsubscribeConfig?.();
    this.unsubscribeConfig = null;
    this.flushRates();
    const entries = [...this.entries.values()];
    for (const e of entries) e.limiter.stop();
    await Promise.all(entries.map((e) => e.client.close()));
    this.entries.clear();
    this.aliasIndex.clear();
    this.cached = null;
    await this.options.budgets?.close();
  }

  private uptimeSeconds(): number {
    return (this.options.clock.monotonic() - this.startedMono) / 1000;
  }

  private addProvider(r: ResolvedProvider): void {
    const budgets = this.options.budgets;
    // Shared: the cluster's state in Redis is the learned rate; this node's saved one does not apply.
    const saved = budgets ? undefined : this.options.rates.load(r.name);
    const initial = saved && saved.baseRpm === r.limits.rate_rpm && saved.rpm !== r.limits.rate_rpm ? { rpm: saved.rpm, state: saved.state } : undefined;
    if (budgets && r.limits.recover_mode === 'probe') {
      this.options.logger.warn({ provider: r.name }, "recover_mode 'probe' is not available for a budget shared through Redis; the cluster uses the seed's step recovery");
    }
    if (initial) this.options.logger.warn({ provider: r.name, rpm: initial.rpm, state: initial.state }, 'limiter resumes the learned rate from before the restart');
    const limiter = new ProviderLimiter(
      r.name,
      r.limits,
      this.options.clock,
      {
        onTransition: (t) => this.onTransition(r.name, t),
        onRejected: (_p, reason) => this.metrics.drops.inc({ provider: r.name, reason }),
        onSharedError: (err) => this.options.logger.warn({ provider: r.name, err: err.message }, 'shared provider budget unavailable'),
      },
      initial,
      undefined,
      budgets?.open(r.name, r.apiKey !== '' ? r.apiKey : r.upstreamUrl, retreatParams(r.limits), r.limits.bucket_capacity, (t) => this.onTransition(r.name, t)),
    );
    const client = new UpstreamClient({ baseUrl: r.upstreamUrl, apiKey: () => this.entries.get(r.name)?.resolved.apiKey ?? '', connectTimeoutMs: r.limits.connect_timeout * 1000, now: () => this.options.clock.now() });
    this.entries.set(r.name, { resolved: r, limiter, client, probe: { at: -Infinity, ok: false, pending: null } });
    for (const a of r.aliases) this.aliasIndex.set(a, r.name);
  }

  private reconfigure(cfg: LimiterConfig): void {
    let resolved: ResolvedProvider[];
    try {
      resolved = resolveProviders(cfg, this.options.env);
    } catch (err) {
      this.options.logger.error({ err: (err as Error).message }, 'limiter config change ignored');
      return;
    }
    this.aliasIndex.clear();
    const keep = new Set(resolved.map((r) => r.name));
    for (const [name, e] of this.entries) {
      if (keep.has(name)) continue;
      e.limiter.stop();
      void e.client.close();
      this.entries.delete(name);
    }
    for (const r of resolved) {
      const e = this.entries.get(r.name);
      if (!e || e.resolved.upstreamUrl !== r.upstreamUrl) {
        if (e) {
          e.limiter.stop();
          void e.client.close();
          this.entries.delete(r.name);
        }
        this.addProvider(r);
        continue;
      }
      e.resolved = r;
      e.limiter.updateSettings(r.limits);
      for (const a of r.aliases) this.aliasIndex.set(a, r.name);
    }
    this.cached = null;
    this.options.logger.info({ providers: this.providers() }, 'limiter reconfigured');
  }

  private onTransition(provider: string, t: RetreatTransition): void {
    const event: LimiterTransitionEvent = {
      provider,
      from: t.from,
      to: t.to,
      previous_rpm: round(t.previousRpm, 2),
      rpm: round(t.rpm, 2),
      ratio: round(t.ratio, 4),
      reason: t.reason,
      timestamp: t.at / 1000,
    };
    this.metrics.transitions.inc({ provider, from: t.from, to: t.to });
    const level = t.to === 'retreat' ? 'warn' : 'info';
    this.options.logger[level]({ ...event }, 'retreat_transition');
    this.recent.push(event);
    if (this.recent.length > 20) this.recent.shift();
    this.cached = null;
    const entry = this.entries.get(provider);
    const rate: LearnedRate = { rpm: t.rpm, state: t.to, baseRpm: entry?.limiter.limits.rate_rpm ?? t.rpm };
    // A change of state, a reset or a new base rate is written at once; a rate step inside one state
    // (step-mode recovery raises the rate on every response) is written at most once per second, so
    // recovery does not cost a synchronous SQLite write per response.
    if (t.from !== t.to || t.reason === 'reset' || t.reason === 'rate_changed') {
      this.unsaved.delete(provider);
      this.saveRate(provider, rate, this.options.clock.now());
    } else {
      this.unsaved.set(provider, { rate, at: this.options.clock.now() });
      this.saveTimer ??= this.options.clock.setTimeout(() => this.flushRates(), 1000);
    }
    for (const l of this.listeners) {
      try {
        l({ type: 'transition', event });
      } catch (err) {
        this.options.logger.error({ err: (err as Error).message }, 'limiter event listener failed');
      }
    }
  }

  /** Writes the rate steps still waiting for the once-per-second write (also on stop). */
  private flushRates(): void {
    this.saveTimer?.cancel();
    this.saveTimer = null;
    for (const [provider, { rate, at }] of this.unsaved) this.saveRate(provider, rate, at);
    this.unsaved.clear();
  }

  private saveRate(provider: string, rate: LearnedRate, at: number): void {
    try {
      this.options.rates.save(provider, rate, at);
    } catch (err) {
      this.options.logger.error({ err: (err as Error).message }, 'could not persist the limiter rate');
    }
  }

  private providerStatus(e: ProviderEntry): LimiterProviderStatus {
    const l = e.limiter;
    const c = l.counters;
    const view = l.view();
    const tokens = view.tokens;
    const cap = l.limits.bucket_capacity;
    const depths = l.depths();
    const byLabel = Object.fromEntries(Object.entries(depths).map(([p, n]) => [PRIORITY_LABEL[p as Priority], n])) as PriorityDepths;
    return {
      provider: e.resolved.name,
      aliases: e.resolved.aliases,
      upstream_url: e.resolved.upstreamUrl,
      healthy: l.healthy,
      requests: { total: c.total, passthrough: c.passthrough, ratelimited: c.ratelimited },
      errors: { queue_full_rejects: c.queueFullRejects, upstream_errors: c.upstreamErrors },
      queue: {
        max_size: l.limits.queue_max_size,
        current_size: l.queueSize,
        total_enqueued: c.totalEnqueued,
        total_dequeued: c.totalDequeued,
        total_dropped: c.totalDropped,
        depth_by_priority: byLabel,
        full_policy: fullPolicy(l.limits),
        utilization: round(l.queueSize / l.limits.queue_max_size, 4),
      },
      token_bucket: {
        tokens: round(tokens, 2),
        capacity: cap,
        rate_per_minute: round(l.isShared ? view.rpm : l.bucket.ratePerMinute, 1),
        utilization: round((cap - tokens) / cap, 4),
        paused_seconds: round(view.pauseLeftMs / 1000, 1),
      },
      retreat: {
        state: view.state,
        effective_rpm: round(view.rpm, 1),
        base_rpm: round(l.retreat.baseRpm, 1),
        ceiling_rpm: round(l.retreat.ceiling(), 1),
        upstream_429_rate: round(view.ratio, 4),
      },
    };
  }

  private probe(e: ProviderEntry): Promise<boolean> {
    const now = this.options.clock.monotonic();
    if (now - e.probe.at < 10_000) return Promise.resolve(e.probe.ok);
    if (e.probe.pending) return e.probe.pending;
    e.probe.pending = e.client.probe(5000).then((ok) => {
      e.probe = { at: this.options.clock.monotonic(), ok, pending: null };
      // A probe that gets an answer is as good as a response: the transport error is over.
      if (ok) e.limiter.healthy = true;
      return ok;
    });
    return e.probe.pending;
  }
}
