import type { Logger } from 'pino';
import { createClient } from 'redis';
import { AppError, ErrorCode } from './errors.js';

export type RedisClient = ReturnType<typeof createClient>;

export interface RedisConnectionOptions {
  /** `redis://host:port[/db]` or `rediss://...`. */
  url: string;
  logger: Logger;
  /** Longest wait for one command; past it the operation fails (closed) with 503. */
  commandTimeoutMs: number;
  /** Longest wait for the first connection at start. */
  connectTimeoutMs?: number;
}

/** Why a start failed: Redis named by `cluster.redisUrl` could not be reached. */
export class ClusterStartError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ClusterStartError';
  }
}

/** Redis URL without a password (for logs, errors and health). */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(malformed URL)';
  }
}

/**
 * The one Redis connection of a console in a cluster. Start-up fails if Redis cannot be reached;
 * later, while Redis is away, every command fails at once (no offline queue: a queued acquire that
 * ran minutes later would be a surprise) with a 503 `UNAVAILABLE`, and the client reconnects by
 * itself (every ≤ 1 s).
 */
export class RedisConnection {
  private client: RedisClient | null = null;
  private connectedOnce = false;
  private lastError: string | null = null;
  private downSinceWall: number | null = null;
  private closed = false;
  private users = 0;
  private connecting: Promise<void> | null = null;
  private readonly reconnectListeners = new Set<() => void>();
  /** A second connection for pub/sub (a subscribed client cannot send commands), opened on first use. */
  private subscriber: RedisClient | null = null;
  private readonly channels = new Map<string, Set<(message: string) => void>>();
  readonly redactedUrl: string;

  constructor(private readonly o: RedisConnectionOptions) {
    this.redactedUrl = redactRedisUrl(o.url);
  }

  /**
   * For each service that uses the connection (GPU locks, provider budgets): connects on the first
   * use, and the returned release closes it when the last user is done. Either service may stop and
   * start again on its own.
   */
  async open(): Promise<() => Promise<void>> {
    this.users++;
    try {
      this.connecting ??= this.connect().finally(() => {
        this.connecting = null;
      });
      await this.connecting;
    } catch (err) {
      this.users--;
      throw err;
    }
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      this.users--;
      if (this.users === 0) await this.close();
    };
  }

  async connect(): Promise<void> {
    if (this.client) return;
    this.closed = false;
    this.connectedOnce = false;
    let client: RedisClient;
    try {
      client = createClient({
        url: this.o.url,
        disableOfflineQueue: true,
        socket: {
          connectTimeout: this.o.connectTimeoutMs ?? 5000,
          // At start: fail (the console does not start); later: keep trying.
          reconnectStrategy: (retries: number, cause: Error) => (this.connectedOnce && !this.closed ? Math.min(100 + retries * 100, 1000) : cause),
        },
      });
    } catch (err) {
      throw new ClusterStartError(`cluster.redisUrl is not a valid Redis URL (${this.redactedUrl}): ${(err as Error).message}`, { cause: err });
    }
    client.on('error', (err: Error) => {
      const text = err.message || String(err);
      if (this.lastError !== text) this.o.logger.warn({ err: text }, 'redis connection error');
      this.lastError = text;
    });
    client.on('ready', () => {
      const wasDown = this.connectedOnce;
      if (this.downSinceWall !== null) this.o.logger.info({ url: this.redactedUrl }, 'redis connection restored');
      this.downSinceWall = null;
      this.lastError = null;
      if (wasDown) for (const l of this.reconnectListeners) l();
    });
    client.on('end', () => {
      this.downSinceWall ??= Date.now();
    });
    client.on('reconnecting', () => {
      this.downSinceWall ??= Date.now();
    });
    try {
      await client.connect();
      this.connectedOnce = true;
    } catch (err) {
      await client.disconnect().catch(() => undefined);
      throw new ClusterStartError(`Cannot reach Redis at ${this.redactedUrl} (cluster.redisUrl / CONSOLE_REDIS_URL): ${(err as Error).message || String(err)}`, { cause: err });
    }
    this.client = client;
  }

  /** Called after the connection came back (not at the first connect). */
  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  /** True while commands can be sent. */
  get ready(): boolean {
    return this.client?.isReady === true;
  }

  /** For /api/v1/health/details. */
  state(): { connected: boolean; url: string; lastError: string | null; downSinceWall: number | null } {
    return { connected: this.ready, url: this.redactedUrl, lastError: this.ready ? null : this.lastError, downSinceWall: this.ready ? null : this.downSinceWall };
  }

  /**
   * Runs commands; any failure (Redis away, timeout, script error) is a 503 `UNAVAILABLE`. A timed
   * out command may still run in Redis: callers treat it as "unknown", never as granted.
   */
  async run<T>(what: string, fn: (client: RedisClient) => Promise<T>): Promise<T> {
    const client = this.client;
    if (!client || this.closed) throw this.unavailable(what, 'not connected');
    if (!client.isReady) throw this.unavailable(what, this.lastError ?? 'connection lost');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.o.commandTimeoutMs} ms`)), this.o.commandTimeoutMs);
    });
    try {
      return await Promise.race([fn(client), timeout]);
    } catch (err) {
      if (err instanceof AppError) throw err;
      throw this.unavailable(what, (err as Error).message || String(err), err);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Subscribes to a channel on the shared subscriber connection (opened on first use; it reconnects
   * and re-subscribes by itself). Messages lost while Redis is away are not replayed: callers keep
   * their own state fresh from command replies too. Returns the unsubscribe function.
   */
  async subscribe(channel: string, listener: (message: string) => void): Promise<() => Promise<void>> {
    const client = this.client;
    if (!client || this.closed) throw this.unavailable(`subscribe ${channel}`, 'not connected');
    if (!this.subscriber) {
      const sub = client.duplicate();
      sub.on('error', () => undefined); // the main client logs connection errors once
      await this.run(`subscribe ${channel}`, () => sub.connect().then(() => undefined));
      this.subscriber = sub;
    }
    const sub = this.subscriber;
    let set = this.channels.get(channel);
    if (!set) {
      const fresh = new Set<(message: string) => void>();
      set = fresh;
      this.channels.set(channel, fresh);
      await this.run(`subscribe ${channel}`, () =>
        sub.subscribe(channel, (message: string) => {
          for (const l of fresh) l(message);
        }),
      );
    }
    set.add(listener);
    return async () => {
      set.delete(listener);
      if (set.size > 0 || this.channels.get(channel) !== set) return;
      this.channels.delete(channel);
      if (sub.isReady) await sub.unsubscribe(channel).catch(() => undefined);
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const sub = this.subscriber;
    this.subscriber = null;
    this.channels.clear();
    if (sub?.isOpen) await sub.disconnect().catch(() => undefined);
    const client = this.client;
    this.client = null;
    if (!client) return;
    // Redis away (reconnecting): drop the socket at once; a QUIT would wait for a server that is not there.
    if (!client.isReady) {
      if (client.isOpen) await client.disconnect().catch(() => undefined);
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([client.quit(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('quit timed out')), this.o.commandTimeoutMs)))]);
    } catch {
      if (client.isOpen) await client.disconnect().catch(() => undefined);
    } finally {
      clearTimeout(timer);
    }
  }

  private unavailable(what: string, why: string, cause?: unknown): AppError {
    return new AppError(ErrorCode.UNAVAILABLE, `Cluster store unavailable (${what}): Redis at ${this.redactedUrl}: ${why}. Fail-closed: no GPU lock and no shared provider budget token is granted while Redis is away; retry later.`, {
      cause,
      details: [{ type: 'cluster_unavailable', field: 'cluster.redisUrl', description: why }],
    });
  }
}
