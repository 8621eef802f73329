import { AppError, ErrorCode } from './errors.js';

/** Something that holds resources and releases them when disposed. */
export interface Disposable {
  dispose(): void | Promise<void>;
}

/** How a service winds down when it is closed (drained) rather than destroyed (aborted). */
export interface CloseOptions {
  /**
   * Fires when the grace period is over: work still in flight is then aborted as by destroy().
   * The composition root builds it from the injected clock; absent, the drain waits as long as the
   * work in flight takes.
   */
  readonly deadline?: AbortSignal;
}

/**
 * Every service has an explicit lifecycle; every call is safe to make twice.
 * - `close()` drains: new work is refused at once (503 UNAVAILABLE, "… is stopping"), work in
 *   flight may finish until `deadline` fires, then what is left is aborted and resources released.
 * - `destroy()` aborts: work in flight is cancelled now and resources released.
 * - `stop()` is `destroy()` (kept as the short name every caller and test uses).
 */
export interface Service {
  readonly name: string;
  start(): Promise<void>;
  /** Starts a drain (new work refused at once) without waiting; close() finishes it. */
  beginDrain(options?: CloseOptions): void;
  close(options?: CloseOptions): Promise<void>;
  destroy(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Collects resources (timers, sockets, child processes, native objects) and releases them in
 * reverse order of registration. Modelled on VS Code's DisposableStore.
 */
export class DisposableStore implements Disposable {
  private items: Disposable[] = [];
  private disposedValue = false;

  /** True once dispose() has been called; the store is then spent (make a new one to start again). */
  get disposed(): boolean {
    return this.disposedValue;
  }

  /** Registers `item`; after dispose() it is disposed at once instead (a late resource is not leaked). */
  add<T extends Disposable>(item: T): T {
    if (this.disposedValue) {
      try {
        void Promise.resolve(item.dispose()).catch(() => undefined);
      } catch {
        // the store is spent; a failing late disposal has nobody to report to
      }
      return item;
    }
    this.items.push(item);
    return item;
  }
  /** Registers a plain cleanup function. */
  defer(fn: () => void | Promise<void>): void {
    this.add({ dispose: fn });
  }
  /** Disposes everything in reverse order of registration; safe to call twice. */
  async dispose(): Promise<void> {
    this.disposedValue = true;
    const items = this.items.reverse();
    this.items = [];
    const errors: unknown[] = [];
    for (const item of items) {
      try {
        await item.dispose();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'errors while disposing resources');
  }
}

/**
 * Guards a service's start/stop so each is idempotent and they never overlap.
 * Subclasses implement onStart/onStop and register resources in `this.disposables`: a fresh store
 * each start (a stop disposes it for good).
 */
export abstract class BaseService implements Service {
  abstract readonly name: string;
  protected disposables = new DisposableStore();
  private state: 'stopped' | 'starting' | 'running' | 'draining' | 'stopping' = 'stopped';
  private pending: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;
  /** Aborted by destroy() during a drain, so onDrain() returns at once whatever the deadline. */
  private drainAbort: AbortController | null = null;
  /** The drain beginDrain() started (onDrain, settled either way). */
  private drained: Promise<void> | null = null;

  /** True while the service accepts new work (false while it drains, stops or is stopped). */
  get running(): boolean {
    return this.state === 'running';
  }

  /** True while close() lets work in flight finish (new work is already refused). */
  get draining(): boolean {
    return this.state === 'draining';
  }

  /**
   * Why new work is refused now, or null while the service runs: 503 UNAVAILABLE "`subject` is
   * stopping" while it drains, "`subject` is not running" otherwise (e.g. subject "The limiter").
   */
  protected refusal(subject: string): AppError | null {
    if (this.state === 'running') return null;
    return new AppError(ErrorCode.UNAVAILABLE, `${subject} is ${this.state === 'draining' ? 'stopping' : 'not running'}`);
  }

  /** Re-reads the state after an await (defeats TypeScript's narrowing). */
  private isRunning(): boolean {
    return this.state === 'running';
  }

  async start(): Promise<void> {
    if (this.state === 'running') return;
    // A start while a close/destroy is under way waits for it, then starts afresh.
    if (this.state === 'draining' && !this.closing) await this.close().catch(() => undefined);
    if (this.closing) await this.closing.catch(() => undefined);
    if (this.stopping) await this.stopping.catch(() => undefined);
    if (this.pending) await this.pending;
    if (this.isRunning()) return;
    this.state = 'starting';
    this.disposables = new DisposableStore();
    this.pending = this.onStart().then(
      () => {
        this.state = 'running';
      },
      async (err: unknown) => {
        await this.disposables.dispose().catch(() => undefined);
        this.state = 'stopped';
        throw err;
      },
    );
    try {
      await this.pending;
    } finally {
      this.pending = null;
    }
  }

  /**
   * Starts a drain without waiting for it: new work is refused at once and onDrain() runs until
   * `deadline` (or a destroy()). close() then waits for it and stops. The console begins every
   * service's drain at once, so queued work is refused while the listeners still finish requests.
   */
  beginDrain(options: CloseOptions = {}): void {
    if (this.state !== 'running' || this.pending) return;
    this.state = 'draining';
    const abort = new AbortController();
    this.drainAbort = abort;
    const deadline = options.deadline ? AbortSignal.any([options.deadline, abort.signal]) : abort.signal;
    this.drained = this.onDrain(deadline)
      .catch(() => undefined) // a drain that fails ends early; what is left is aborted by destroy()
      .finally(() => {
        this.drainAbort = null;
      });
  }

  /**
   * Drains (see Service): refuses new work, waits for onDrain() until `deadline` (or a destroy()),
   * then stops. A second call joins the first; a call while destroy() runs waits for it.
   */
  async close(options: CloseOptions = {}): Promise<void> {
    if (this.pending) await this.pending.catch(() => undefined);
    if (this.closing) return this.closing;
    if (this.stopping) return this.stopping;
    this.beginDrain(options);
    if (this.state !== 'draining') return;
    const drained = this.drained ?? Promise.resolve();
    this.closing = (async () => {
      await drained;
      await this.destroy();
    })();
    try {
      await this.closing;
    } finally {
      this.closing = null;
      this.drained = null;
    }
  }

  /**
   * Aborts (see Service): cancels work in flight now and releases every resource. During a drain
   * it cuts the drain short (onDrain's signal fires) and aborts what is left.
   */
  async destroy(): Promise<void> {
    if (this.pending) await this.pending.catch(() => undefined);
    if (this.stopping) return this.stopping;
    if (this.state !== 'running' && this.state !== 'draining') return;
    this.drainAbort?.abort();
    this.state = 'stopping';
    const drained = this.drained;
    this.stopping = (async () => {
      try {
        // onDrain returns promptly once its signal fires; onStop starts when it has.
        if (drained) await drained;
        await this.onStop();
      } finally {
        await this.disposables.dispose();
        this.drained = null;
        this.state = 'stopped';
      }
    })();
    try {
      await this.stopping;
    } finally {
      this.stopping = null;
    }
  }

  /** The same as destroy(). */
  stop(): Promise<void> {
    return this.destroy();
  }

  protected abstract onStart(): Promise<void>;

  /**
   * Waits until the work in flight has finished, or until `deadline` fires (then it should return
   * promptly; onStop aborts what is left). New work is already refused: `running` is false.
   * Default: nothing to wait for.
   */
  protected async onDrain(_deadline: AbortSignal): Promise<void> {
    // default: no work of its own in flight
  }

  /** Aborts work in flight and releases what onStart() did not register in `disposables`. */
  protected async onStop(): Promise<void> {
    // default: only the disposables are released
  }
}

/**
 * For onDrain(): waits until `work` settles or `deadline` fires, whichever comes first. Resolves
 * true when the work settled (a rejection counts: it is over), false when the deadline cut it.
 */
export async function drainUntil(deadline: AbortSignal, work: Promise<unknown>): Promise<boolean> {
  if (deadline.aborted) return false;
  let onAbort: () => void = () => undefined;
  const fired = new Promise<false>((resolve) => {
    onAbort = () => resolve(false);
    deadline.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work.then(() => true as const, () => true as const), fired]);
  } finally {
    deadline.removeEventListener('abort', onAbort);
  }
}
