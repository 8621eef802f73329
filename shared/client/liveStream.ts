import type { ConsoleLogRecord, ConsoleSnapshot, LogFilter, StreamClientMessage, StreamServerMessage } from '../contracts/console.js';

/** The part of the WebSocket API the stream uses (the browser's WebSocket fits). */
export interface SocketLike {
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(): void;
}
/** The part of the EventSource API the SSE fallback uses. */
export interface EventSourceLike {
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  close(): void;
}

export type StreamStatus = 'connecting' | 'open' | 'disconnected' | 'stopped';

/** Timers, injectable so tests drive reconnects without sleeping. */
export interface StreamTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  now(): number;
}

export interface LiveStreamOptions {
  /** Base URL of the core (http...); '' = the page's origin. */
  baseUrl: string;
  /** Page origin, used when baseUrl is '' (e.g. location.origin). */
  origin?: string;
  token?: string | null;
  /** Creates a WebSocket; omit where there is none (SSE is used then). */
  createSocket?: (url: string) => SocketLike;
  /** Creates an EventSource for the SSE fallback. */
  createEventSource?: (url: string) => EventSourceLike;
  timers?: StreamTimers;
  /** No message for this long → the connection is treated as dead and reopened (ms). */
  staleAfterMs?: number;
  /** Reconnect back-off: first delay and cap (ms). */
  backoffMs?: { first: number; max: number };
}

const defaultTimers: StreamTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
  now: () => Date.now(),
};

/**
 * The dashboard's one live connection: snapshots at 1 Hz (and log records when subscribed) over a
 * WebSocket, falling back to SSE. Reconnects with back-off after the core restarts; a silent
 * connection (no frame for `staleAfterMs`) counts as dead.
 */
export class LiveStream {
  private status: StreamStatus = 'stopped';
  private socket: SocketLike | null = null;
  private source: EventSourceLike | null = null;
  private retryTimer: unknown = null;
  private staleTimer: unknown = null;
  private attempts = 0;
  private failuresWithoutOpen = 0;
  private transport: 'ws' | 'sse';
  private logFilter: LogFilter | null = null;
  private token: string | null;
  private readonly timers: StreamTimers;
  private readonly snapshotListeners = new Set<(s: ConsoleSnapshot) => void>();
  private readonly logListeners = new Set<(r: ConsoleLogRecord[], backlog: boolean) => void>();
  private readonly statusListeners = new Set<(s: StreamStatus) => void>();
  /** Time (timers.now()) of the last frame received. */
  lastMessageAt = 0;

  constructor(private readonly options: LiveStreamOptions) {
    this.timers = options.timers ?? defaultTimers;
    this.token = options.token ?? null;
    this.transport = options.createSocket ? 'ws' : 'sse';
  }

  getStatus(): StreamStatus {
    return this.status;
  }
  getTransport(): 'ws' | 'sse' {
    return this.transport;
  }

  onSnapshot(fn: (s: ConsoleSnapshot) => void): () => void {
    this.snapshotListeners.add(fn);
    return () => this.snapshotListeners.delete(fn);
  }
  /** Log records; `backlog` is true for the batch sent on (re)subscribing, which replaces earlier ones. */
  onLogs(fn: (r: ConsoleLogRecord[], backlog: boolean) => void): () => void {
    this.logListeners.add(fn);
    return () => this.logListeners.delete(fn);
  }
  onStatus(fn: (s: StreamStatus) => void): () => void {
    this.statusListeners.add(fn);
    return () => this.statusListeners.delete(fn);
  }

  start(): void {
    if (this.status !== 'stopped') return;
    this.open();
  }

  stop(): void {
    this.closeTransport();
    this.clearTimer('retry');
    this.setStatus('stopped');
  }

  /** Changes the token (reconnects so the server sees it). */
  setToken(token: string | null): void {
    this.token = token;
    if (this.status !== 'stopped') this.reopen();
  }

  /** Subscribes to log records with a filter (null = unsubscribe). Needs the admin token. */
  subscribeLogs(filter: LogFilter | null): void {
    this.logFilter = filter;
    if (this.transport === 'ws' && this.socket && this.status === 'open') this.sendFilter();
    else if (this.transport === 'sse' && this.status !== 'stopped') this.reopen();
  }

  private url(kind: 'ws' | 'sse'): string {
    const base = this.options.baseUrl || this.options.origin || '';
    const params = new URLSearchParams();
    if (this.token) params.set('token', this.token);
    if (kind === 'sse' && this.logFilter) {
      params.set('logs', 'true');
      if (this.logFilter.module) params.set('module', this.logFilter.module);
      if (this.logFilter.level) params.set('level', this.logFilter.level);
    }
    const qs = params.toString();
    if (kind === 'ws') return `${base.replace(/^http/, 'ws')}/api/console/stream${qs ? `?${qs}` : ''}`;
    return `${base}/api/console/stream/sse${qs ? `?${qs}` : ''}`;
  }

  private open(): void {
    this.setStatus(this.status === 'disconnected' ? 'disconnected' : 'connecting');
    const onOpen = () => {
      this.attempts = 0;
      this.failuresWithoutOpen = 0;
      this.lastMessageAt = this.timers.now();
      this.armStale();
      this.setStatus('open');
      if (this.transport === 'ws') this.sendFilter();
    };
    const onMessage = (ev: { data: unknown }) => this.handle(ev.data);
    const onClosed = () => this.lost();
    if (this.transport === 'ws' && this.options.createSocket) {
      let socket: SocketLike;
      try {
        socket = this.options.createSocket(this.url('ws'));
      } catch {
        this.lost();
        return;
      }
      this.socket = socket;
      socket.onopen = onOpen;
      socket.onmessage = onMessage;
      socket.onclose = onClosed;
      socket.onerror = () => undefined;
    } else if (this.options.createEventSource) {
      const source = this.options.createEventSource(this.url('sse'));
      this.source = source;
      source.onopen = onOpen;
      source.onmessage = onMessage;
      // EventSource reconnects by itself; we manage reconnects so the banner and back-off agree.
      source.onerror = onClosed;
    } else {
      this.setStatus('disconnected');
    }
  }

  private handle(data: unknown): void {
    if (typeof data !== 'string') return;
    let msg: StreamServerMessage;
    try {
      msg = JSON.parse(data) as StreamServerMessage;
    } catch {
      return;
    }
    this.lastMessageAt = this.timers.now();
    this.armStale();
    if (this.status !== 'open') this.setStatus('open');
    if (msg.type === 'snapshot') for (const fn of this.snapshotListeners) fn(msg.data);
    else if (msg.type === 'logs') for (const fn of this.logListeners) fn(msg.records, msg.backlog === true);
  }

  private sendFilter(): void {
    if (!this.socket) return;
    const msg: StreamClientMessage = this.logFilter ? { type: 'logs', filter: this.logFilter } : { type: 'logs-off' };
    try {
      this.socket.send(JSON.stringify(msg));
    } catch {
      // the close handler reconnects
    }
  }

  private lost(): void {
    if (this.status === 'stopped') return;
    const wasOpen = this.status === 'open';
    this.closeTransport();
    if (!wasOpen) this.failuresWithoutOpen += 1;
    // A WebSocket that never opens (a proxy that strips upgrades) → try SSE.
    if (this.transport === 'ws' && this.failuresWithoutOpen >= 3 && this.options.createEventSource) {
      this.transport = 'sse';
      this.failuresWithoutOpen = 0;
    }
    this.setStatus('disconnected');
    const { first, max } = this.options.backoffMs ?? { first: 500, max: 5000 };
    const delay = Math.min(max, first * 2 ** this.attempts);
    this.attempts += 1;
    this.clearTimer('retry');
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = null;
      if (this.status !== 'stopped') this.open();
    }, delay);
  }

  private reopen(): void {
    this.closeTransport();
    this.clearTimer('retry');
    this.open();
  }

  private armStale(): void {
    this.clearTimer('stale');
    this.staleTimer = this.timers.setTimeout(() => {
      this.staleTimer = null;
      this.lost();
    }, this.options.staleAfterMs ?? 5000);
  }

  private closeTransport(): void {
    this.clearTimer('stale');
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try {
        socket.close();
      } catch {
        // already closed
      }
    }
    const source = this.source;
    this.source = null;
    if (source) {
      source.onopen = source.onmessage = source.onerror = null;
      source.close();
    }
  }

  private clearTimer(which: 'retry' | 'stale'): void {
    const key = which === 'retry' ? 'retryTimer' : 'staleTimer';
    if (this[key] !== null) {
      this.timers.clearTimeout(this[key]);
      this[key] = null;
    }
  }

  private setStatus(s: StreamStatus): void {
    if (this.status === s) return;
    this.status = s;
    for (const fn of this.statusListeners) fn(s);
  }
}
