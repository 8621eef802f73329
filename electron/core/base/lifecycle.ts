/** Something that holds resources and releases them when disposed. */
export interface Disposable {
  dispose(): void | Promise<void>;
}

/** Every service has an explicit lifecycle; both calls are safe to make twice. */
export interface Service {
  readonly name: string;
  start(): Promise<void>;
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
  private state: 'stopped' | 'starting' | 'running' | 'stopping' = 'stopped';
  private pending: Promise<void> | null = null;

  get running(): boolean {
    return this.state === 'running';
  }

  /** Re-reads the state after an await (defeats TypeScript's narrowing). */
  private isRunning(): boolean {
    return this.state === 'running';
  }

  async start(): Promise<void> {
    if (this.state === 'running') return;
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

  async stop(): Promise<void> {
    if (this.pending) await this.pending.catch(() => undefined);
    if (this.state !== 'running') return;
    this.state = 'stopping';
    try {
      await this.onStop();
    } finally {
      await this.disposables.dispose();
      this.state = 'stopped';
    }
  }

  protected abstract onStart(): Promise<void>;
  protected async onStop(): Promise<void> {
    // default: only the disposables are released
  }
}
