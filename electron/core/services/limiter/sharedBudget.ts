import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { RedisConnection } from '../../base/redisConnection.js';
import type { RetreatParams, RetreatState, RetreatTransition } from './retreatController.js';

/**
 * A provider budget shared by every console of a cluster (issue 15): the token bucket, the 429
 * sample window and the NORMAL/RETREAT/RECOVER state of one provider key live in Redis and change
 * only inside Lua scripts that read the time from Redis (`TIME`), never from a node's clock.
 * Each node keeps its own priority queue over this one budget (see docs/cluster.md).
 */

/** What a node last learned about the shared budget (a read cache for status, metrics and health). */
export interface BudgetView {
  state: RetreatState;
  rpm: number;
  tokens: number;
  /** 429 share of the retreat window. */
  ratio: number;
  /** Milliseconds of Retry-After pause left when last read. */
  pauseLeftMs: number;
}

export type TakeResult = { granted: true } | { granted: false; waitMs: number };

/** The seam the provider limiter takes tokens from and reports upstream answers to, when shared. */
export interface SharedBudget {
  /** Last known shared state (updated from every reply and from transition messages). */
  readonly view: BudgetView;
  /** Takes one token, or says how long until one is due. Rejects (503) while Redis is away. */
  take(): Promise<TakeResult>;
  /** Feeds one upstream response into the shared window and state machine. */
  record(is429: boolean, saturated: boolean, retryAfterMs: number): Promise<void>;
  /** Admin reset (contract §6.8) for the whole cluster. */
  reset(): Promise<void>;
  /** New settings of this node (the last node to write its settings wins for everyone). */
  setParams(params: RetreatParams, capacity: number): void;
  close(): Promise<void>;
}

/** Creates shared budgets; one per provider key. */
export interface BudgetStore {
  /** Starts listening for transitions made by any node (call before traffic flows). */
  start(): Promise<void>;
  /** False while the shared state cannot be reached (tokens are refused with 503). */
  readonly available: boolean;
  /** The budget of a provider key; `credential` (API key, or the upstream URL without one) is only hashed. */
  open(provider: string, credential: string, params: RetreatParams, capacity: number, onTransition: (t: RetreatTransition) => void): SharedBudget;
  close(): Promise<void>;
}

/** First 16 hex digits of sha256: names a key in Redis without ever storing it. */
export function fingerprint(credential: string): string {
  return createHash('sha256').update(credential).digest('hex').slice(0, 16);
}

/** Published on `limiter:transitions` (JSON); `key` is the budget key, so several providers share the channel. */
interface TransitionMessage extends RetreatTransition {
  key: string;
}

export const TRANSITION_CHANNEL = 'limiter:transitions';
/** A budget nobody used for a day is forgotten. */
const TTL_MS = 86_400_000;

/*
 * Hash fields: tokens, last (Redis ms of the last refill), paused (Redis ms until which no token is
 * handed out), state, rpm, base, t_change (Redis ms), seq. Samples: two sorted sets scored by Redis
 * ms (all responses, and the 429s among them), pruned to the longer of the two windows.
 * ARGV common to all scripts: capacity, base, ceiling, floor, retreat window s, retreat threshold,
 * factor, recover window s, recover threshold, increment.
 */
const PRELUDE = `
local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cap, base, ceil, floor = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local h = redis.call('HMGET', KEYS[1], 'tokens', 'last', 'paused', 'state', 'rpm', 'base', 't_change')
local tokens, last, paused, state, rpm, hbase, tchange = tonumber(h[1]), tonumber(h[2]), tonumber(h[3]) or 0, h[4], tonumber(h[5]), tonumber(h[6]), tonumber(h[7])
local transition = false
local function publish(from, to, prev, ratio, reason)
  transition = cjson.encode({ key = KEYS[1], from = from, to = to, previousRpm = prev, rpm = rpm, ratio = ratio, reason = reason, at = math.floor(now) })
  redis.call('PUBLISH', '${TRANSITION_CHANNEL}', transition)
end
if not tokens or not state then
  tokens, last, state, rpm, tchange, paused = cap, now, 'normal', base, now, 0
elseif hbase ~= base then
  -- a new base (config change) resets to it, like the local machine's setParams
  local from, prev = state, rpm
  state, rpm, tchange = 'normal', base, now
  redis.call('DEL', KEYS[2], KEYS[3])
  publish(from, 'normal', prev, 0, 'rate_changed')
end
if rpm > ceil then rpm = ceil end
local from_t = math.max(last, paused)
if now > from_t then tokens = math.min(cap, tokens + (now - from_t) * rpm / 60000) end
if now > last then last = now end
if tokens > cap then tokens = cap end
local function save()
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'last', tostring(last), 'paused', tostring(paused), 'state', state, 'rpm', tostring(rpm), 'base', tostring(base), 't_change', tostring(tchange))
  redis.call('PEXPIRE', KEYS[1], ${TTL_MS})
end
local function ratios()
  local rw, vw = tonumber(ARGV[5]) * 1000, tonumber(ARGV[8]) * 1000
  local rt, r4 = redis.call('ZCOUNT', KEYS[2], now - rw, '+inf'), redis.call('ZCOUNT', KEYS[3], now - rw, '+inf')
  local vt, v4 = redis.call('ZCOUNT', KEYS[2], now - vw, '+inf'), redis.call('ZCOUNT', KEYS[3], now - vw, '+inf')
  return (rt == 0) and 0 or r4 / rt, (vt == 0) and 0 or v4 / vt
end
`;

/** Returns {granted 0/1, wait ms, tokens, rpm, state, ratio, pause left, transition json or ''}. */
const TAKE = `${PRELUDE}
local granted, wait = 0, 0
if now < paused then
  wait = paused - now
elseif tokens >= 1 then
  tokens = tokens - 1
  granted = 1
else
  wait = (1 - tokens) * 60000 / rpm
end
save()
local rr = ratios()
return { granted, tostring(wait), tostring(tokens), tostring(rpm), state, tostring(rr), tostring(math.max(0, paused - now)), transition or '' }`;

/**
 * The step-mode machine of contract §6.6 (the same rules as RetreatController): ARGV[11] is429,
 * ARGV[12] saturated, ARGV[13] Retry-After ms.
 */
const RECORD = `${PRELUDE}
local is429, saturated, retryMs = ARGV[11] == '1', ARGV[12] == '1', tonumber(ARGV[13])
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local member = tostring(now) .. ':' .. seq
redis.call('ZADD', KEYS[2], now, member)
if is429 then
  redis.call('ZADD', KEYS[3], now, member)
  if retryMs > 0 then paused = math.max(paused, now + retryMs) end
  tokens = math.min(tokens, 1)
end
local keep = math.max(tonumber(ARGV[5]), tonumber(ARGV[8])) * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. tostring(now - keep))
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. tostring(now - keep))
redis.call('PEXPIRE', KEYS[2], ${TTL_MS})
redis.call('PEXPIRE', KEYS[3], ${TTL_MS})
local rr, vr = ratios()
local thr, factor, rthr, inc, vws = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[8])
local since = (now - tchange) / 1000
local from, prev = state, rpm
local can_raise = rpm < ceil and (saturated or rpm < base)
local quiet = vr < rthr and since >= vws
local to, reason = nil, nil
local function cut() rpm = math.max(floor, rpm * factor) end
local function raise() rpm = math.min(ceil, rpm + inc) end
if state == 'normal' then
  if is429 and rr >= thr then cut(); to, reason = 'retreat', 'retreat'
  elseif can_raise and quiet then raise(); to, reason = (rpm >= ceil) and 'normal' or 'recover', 'recover_step' end
elseif state == 'retreat' then
  if rr >= thr * 2 then
    if is429 and rpm > floor then cut(); to, reason = 'retreat', 'retreat_again' end
  elseif rpm >= ceil and quiet then rpm = ceil; to, reason = 'normal', 'recovered'
  elseif quiet and can_raise then raise(); to, reason = 'recover', 'recover_start' end
else
  if is429 and rr >= thr then cut(); to, reason = 'retreat', 'retreat'
  elseif rpm >= ceil then rpm = ceil; to, reason = 'normal', 'recovered'
  elseif can_raise then raise(); to, reason = 'recover', 'recover_step' end
end
if to then
  -- entering a state (or a step out of NORMAL) restarts its clock; a further cut or step inside does not
  if not (reason == 'retreat_again' or (reason == 'recover_step' and from == 'recover')) then tchange = now end
  state = to
  if to ~= from or rpm ~= prev then publish(from, to, prev, rr, reason) end
end
save()
return { '1', '0', tostring(tokens), tostring(rpm), state, tostring(rr), tostring(math.max(0, paused - now)), transition or '' }`;

const RESET = `${PRELUDE}
local from, prev = state, rpm
local rr = ratios()
state, rpm, tchange, paused = 'normal', base, now, 0
redis.call('DEL', KEYS[2], KEYS[3])
publish(from, 'normal', prev, rr, 'reset')
save()
return { '1', '0', tostring(tokens), tostring(rpm), state, '0', '0', transition }`;

type Reply = [number | string, string, string, string, RetreatState, string, string, string];

export interface RedisBudgetStoreOptions {
  redis: RedisConnection;
  logger: Logger;
}

/** Shared budgets in Redis: `limiter:<provider>:<fingerprint>` (+ `:samples`, `:429s`). */
export class RedisBudgetStore implements BudgetStore {
  private readonly budgets = new Map<string, RedisBudget>();
  private unsubscribe: (() => Promise<void>) | null = null;
  private release: (() => Promise<void>) | null = null;

  constructor(private readonly o: RedisBudgetStoreOptions) {}

  get available(): boolean {
    return this.o.redis.ready;
  }

  async start(): Promise<void> {
    if (this.release) return;
    const release = await this.o.redis.open();
    try {
      this.unsubscribe = await this.o.redis.subscribe(TRANSITION_CHANNEL, (m) => this.onMessage(m));
    } catch (err) {
      await release();
      throw err;
    }
    this.release = release;
  }

  open(provider: string, credential: string, params: RetreatParams, capacity: number, onTransition: (t: RetreatTransition) => void): SharedBudget {
    const key = `limiter:${provider}:${fingerprint(credential)}`;
    const budget = new RedisBudget(this.o.redis, key, params, capacity, onTransition, () => this.budgets.delete(key));
    this.budgets.set(key, budget);
    return budget;
  }

  /** Stops listening for transitions (the budgets themselves live on in Redis). */
  async close(): Promise<void> {
    const u = this.unsubscribe;
    const r = this.release;
    this.unsubscribe = null;
    this.release = null;
    await u?.();
    await r?.();
  }

  private onMessage(message: string): void {
    let m: TransitionMessage;
    try {
      m = JSON.parse(message) as TransitionMessage;
    } catch {
      this.o.logger.warn({ message }, 'malformed limiter transition message');
      return;
    }
    this.budgets.get(m.key)?.applyTransition(m);
  }
}

class RedisBudget implements SharedBudget {
  readonly view: BudgetView;
  private readonly keys: string[];
  private args: string[];

  constructor(
    private readonly redis: RedisConnection,
    private readonly key: string,
    params: RetreatParams,
    capacity: number,
    private readonly onTransition: (t: RetreatTransition) => void,
    private readonly forget: () => void,
  ) {
    this.keys = [key, `${key}:samples`, `${key}:429s`];
    this.args = RedisBudget.argsOf(params, capacity);
    this.view = { state: 'normal', rpm: params.baseRpm, tokens: capacity, ratio: 0, pauseLeftMs: 0 };
  }

  private static argsOf(p: RetreatParams, capacity: number): string[] {
    const ceiling = Math.max(p.ceilingRpm, p.baseRpm);
    const floor = Math.min(p.retreatMinRpm, p.baseRpm);
    return [capacity, p.baseRpm, ceiling, floor, p.retreatWindowSeconds, p.retreat429Threshold, p.retreatFactor, p.recoverWindowSeconds, p.recover429Threshold, p.recoverIncrementRpm].map(String);
  }

  setParams(params: RetreatParams, capacity: number): void {
    this.args = RedisBudget.argsOf(params, capacity);
  }

  async take(): Promise<TakeResult> {
    const r = await this.eval('take a provider token', TAKE, []);
    return Number(r[0]) === 1 ? { granted: true } : { granted: false, waitMs: Math.max(1, Number(r[1])) };
  }

  async record(is429: boolean, saturated: boolean, retryAfterMs: number): Promise<void> {
    await this.eval('record an upstream response', RECORD, [is429 ? '1' : '0', saturated ? '1' : '0', String(Math.max(0, retryAfterMs))]);
  }

  async reset(): Promise<void> {
    await this.eval('reset the provider budget', RESET, []);
  }

  async close(): Promise<void> {
    this.forget();
  }

  /** A transition any node made (pub/sub), this one included. */
  applyTransition(m: TransitionMessage): void {
    this.view.state = m.to;
    this.view.rpm = m.rpm;
    this.view.ratio = m.ratio;
    const { key: _key, ...t } = m;
    this.onTransition(t);
  }

  private async eval(what: string, script: string, extra: string[]): Promise<Reply> {
    const r = (await this.redis.run(`${what} (${this.key})`, (c) => c.eval(script, { keys: this.keys, arguments: [...this.args, ...extra] }))) as Reply;
    this.view.tokens = Number(r[2]);
    this.view.rpm = Number(r[3]);
    this.view.state = r[4];
    this.view.ratio = Number(r[5]);
    this.view.pauseLeftMs = Number(r[6]);
    return r;
  }
}
