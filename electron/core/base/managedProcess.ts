import { spawn, type ChildProcess } from 'node:child_process';
import type { Clock, TimerHandle } from './clock.js';
import { groupExists, signalGroup } from './processUtil.js';

const isWindows = process.platform === 'win32';

/** Default cap on one output line; a longer line is cut into pieces of this length. */
export const DEFAULT_MAX_LINE = 64 * 1024;
/** How long output may keep flowing after the process exited (a stray outside its group holding the pipe). */
const DRAIN_AFTER_EXIT_MS = 2000;

/** Splits a text stream into lines (`\n` or `\r\n`); a line longer than `maxLine` is cut into pieces. */
export class LineSplitter {
  private partial = '';

  constructor(
    private readonly onLine: (line: string) => void,
    private readonly maxLine = DEFAULT_MAX_LINE,
  ) {}

  push(chunk: string): void {
    let text = this.partial + chunk;
    let nl = text.indexOf('\n');
    while (nl !== -1) {
      this.onLine(text.slice(0, nl).replace(/\r$/, ''));
      text = text.slice(nl + 1);
      nl = text.indexOf('\n');
    }
    while (text.length > this.maxLine) {
      this.onLine(text.slice(0, this.maxLine));
      text = text.slice(this.maxLine);
    }
    this.partial = text;
  }

  /** Emits what is left (output that did not end with a newline). */
  flush(): void {
    if (this.partial !== '') this.onLine(this.partial.replace(/\r$/, ''));
    this.partial = '';
  }
}

/** What the console runs children for (shown by /threads). */
export type ChildKind = 'runtime' | 'trainer' | 'run_script' | 'self-test' | 'nvidia-smi';
export type ChildState = 'running' | 'stopping' | 'exited';

/** One child process as /threads lists it. */
export interface ChildInfo {
  name: string;
  kind: ChildKind;
  pid: number;
  state: ChildState;
  /** Unix ms. */
  startedAt: number;
  /** The executable (arguments left out: they may carry secrets). */
  command: string;
  /** Lines its owner adds (restarts, job id, ...). */
  detail: string[];
}

/**
 * The child processes the console runs now. One instance is made by the composition root and given
 * to every service that spawns; a {@link ManagedProcess} adds itself while it runs.
 */
export class ChildProcessRegistry {
  private readonly entries = new Set<() => ChildInfo>();

  /** Adds a live entry (read on every `list()`); returns its remover. */
  add(info: () => ChildInfo): () => void {
    this.entries.add(info);
    return () => {
      this.entries.delete(info);
    };
  }

  /** Every registered child, oldest first. */
  list(): ChildInfo[] {
    return [...this.entries].map((f) => f()).sort((a, b) => a.startedAt - b.startedAt || a.pid - b.pid);
  }
}

/** How a managed process ended. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started (ENOENT, EACCES, ...). */
  error?: Error;
  /** True when processes of its group were still there when it exited (they were killed). */
  strays: boolean;
}

export type OutputStream = 'stdout' | 'stderr';

export interface ManagedProcessOptions {
  command: string;
  args?: readonly string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Times the close() grace period. */
  clock: Clock;
  /** Called for every complete line (the partial last line is flushed at exit). */
  onLine?: (stream: OutputStream, line: string) => void;
  /** Called with the raw text of every chunk (logs, capped captures), before it is split into lines. */
  onOutput?: (stream: OutputStream, text: string) => void;
  /** Longest line passed to `onLine`; a longer one is cut into pieces. Default 64 KiB. */
  maxLineLength?: number;
  /** Where /threads finds it while it runs, with its name and kind. */
  registry?: { registry: ChildProcessRegistry; name: string; kind: ChildKind; detail?: () => string[] };
}

/**
 * One child process of the console: spawned in its own process group (detached on POSIX, so a
 * signal reaches its workers too), output as lines, an `exited` promise, `close(grace)` (SIGTERM to
 * the group, SIGKILL after the grace) apart from `destroy()` (SIGKILL now), and disposal. When the
 * main process exits, whatever it left in its group is killed: no orphans.
 */
export class ManagedProcess implements AsyncDisposable {
  readonly pid: number | undefined;
  readonly startedAt: number;
  /** Resolves once the process has exited and its output has been read (never rejects). */
  readonly exited: Promise<ProcessExit>;
  private readonly child: ChildProcess;
  private exitInfo: ProcessExit | null = null;
  private exitedNow = false;
  private stateValue: ChildState = 'running';
  private closing: Promise<ProcessExit> | null = null;
  private unregister: () => void = () => undefined;
  private readonly iterators = new Set<LineQueue>();

  private constructor(private readonly options: ManagedProcessOptions) {
    const { clock } = options;
    this.startedAt = clock.now();
    this.child = spawn(options.command, options.args ?? [], {
      cwd: options.cwd,
      env: options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: !isWindows,
      windowsHide: true,
    });
    this.pid = this.child.pid;
    const child = this.child;
    const maxLine = options.maxLineLength ?? DEFAULT_MAX_LINE;
    const splitters: LineSplitter[] = [];
    const streamsClosed: Array<Promise<void>> = [];
    for (const [name, source] of [['stdout', child.stdout], ['stderr', child.stderr]] as const) {
      if (!source) continue;
      const splitter = new LineSplitter((line) => this.emitLine(name, line), maxLine);
      splitters.push(splitter);
      source.setEncoding('utf8');
      source.on('data', (text: string) => {
        options.onOutput?.(name, text);
        splitter.push(text);
      });
      streamsClosed.push(new Promise<void>((resolve) => source.once('close', () => resolve())));
    }
    this.exited = new Promise<ProcessExit>((resolve) => {
      const finish = (exit: ProcessExit) => {
        if (this.exitInfo) return;
        for (const s of splitters) s.flush();
        this.exitInfo = exit;
        this.stateValue = 'exited';
        this.unregister();
        for (const q of this.iterators) q.end();
        resolve(exit);
      };
      child.on('error', (error) => {
        // Without a pid the spawn failed and no 'exit' will come; later errors (a failed kill) are ignored.
        if (this.pid === undefined) finish({ code: null, signal: null, error, strays: false });
      });
      child.once('exit', (code, signal) => {
        this.exitedNow = true;
        const strays = !isWindows && this.pid !== undefined && groupExists(this.pid);
        if (strays && this.pid !== undefined) signalGroup(this.pid, 'SIGKILL');
        // Let the output drain; a stray outside the group holding the pipe only delays this a little.
        // (A real timer: this bounds I/O, it is not time the console's behaviour is defined in.)
        let timer: NodeJS.Timeout | undefined;
        const drained = Promise.all(streamsClosed).then(() => 'drained' as const);
        const late = new Promise<'late'>((r) => {
          timer = setTimeout(() => r('late'), DRAIN_AFTER_EXIT_MS);
          timer.unref();
        });
        void Promise.race([drained, late]).then((how) => {
          clearTimeout(timer);
          if (how === 'late') {
            child.stdout?.destroy();
            child.stderr?.destroy();
          }
          finish({ code, signal, strays });
        });
      });
    });
    if (this.pid !== undefined && options.registry) {
      const { registry, name, kind, detail } = options.registry;
      const pid = this.pid;
      const command = options.command;
      this.unregister = registry.add(() => ({ name, kind, pid, state: this.stateValue, startedAt: this.startedAt, command, detail: detail?.() ?? [] }));
    }
  }

  /** Starts `options.command`. A spawn failure is not thrown: `pid` is undefined and `exited` carries the error. */
  static spawn(options: ManagedProcessOptions): ManagedProcess {
    return new ManagedProcess(options);
  }

  /** True once the main process has exited (its output may still be draining). */
  get hasExited(): boolean {
    return this.exitedNow || this.exitInfo !== null;
  }

  get state(): ChildState {
    return this.stateValue;
  }

  /** The exit, once known. */
  get exit(): ProcessExit | null {
    return this.exitInfo;
  }

  /** Sends `signal` to the process group (the process alone on Windows). False when nothing was there. */
  signal(signal: NodeJS.Signals): boolean {
    // Once it has exited its pid may be reused: never signal it again.
    if (this.pid === undefined || this.hasExited) return false;
    if (isWindows) return this.child.kill(signal);
    return signalGroup(this.pid, signal);
  }

  /**
   * Graceful stop: SIGTERM to the group, SIGKILL to the group when it has not exited after
   * `grace` (milliseconds, or until an AbortSignal fires: a drain's deadline); `onEscalate` is
   * called just before. Resolves with the exit; safe to call twice.
   */
  close(grace: number | AbortSignal, onEscalate?: () => void): Promise<ProcessExit> {
    if (this.exitInfo) return Promise.resolve(this.exitInfo);
    this.closing ??= (async () => {
      this.stateValue = 'stopping';
      if (!this.hasExited) this.signal('SIGTERM');
      let timer: TimerHandle | undefined;
      let onAbort: (() => void) | undefined;
      const graceOver = new Promise<'grace'>((resolve) => {
        if (typeof grace === 'number') {
          timer = this.options.clock.setTimeout(() => resolve('grace'), grace);
        } else if (grace.aborted) {
          resolve('grace');
        } else {
          onAbort = () => resolve('grace');
          grace.addEventListener('abort', onAbort, { once: true });
        }
      });
      const how = await Promise.race([this.exited.then(() => 'exited' as const), graceOver]);
      timer?.cancel();
      if (onAbort && typeof grace !== 'number') grace.removeEventListener('abort', onAbort);
      if (how === 'grace' && !this.hasExited) {
        onEscalate?.();
        this.signal('SIGKILL');
      }
      return this.exited;
    })();
    return this.closing;
  }

  /** Abort: SIGKILL to the group now. Does not wait (await `exited` for that). */
  destroy(): void {
    if (this.exitInfo) return;
    this.stateValue = 'stopping';
    this.signal('SIGKILL');
  }

  /** Kills the group and waits until the process is gone. */
  async dispose(): Promise<void> {
    this.destroy();
    await this.exited;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }

  /**
   * The lines of one stream from now on, as an async iterable that ends when the process has
   * exited. Lines arriving while nobody reads are queued.
   */
  lines(stream: OutputStream): AsyncIterable<string> {
    const queue: LineQueue = new LineQueue(stream, () => this.iterators.delete(queue));
    if (this.exitInfo) queue.end();
    else this.iterators.add(queue);
    return queue;
  }

  private emitLine(stream: OutputStream, line: string): void {
    this.options.onLine?.(stream, line);
    for (const q of this.iterators) if (q.stream === stream) q.push(line);
  }
}

/** A queue of lines read as an async iterable. */
class LineQueue implements AsyncIterable<string> {
  private readonly buffered: string[] = [];
  private waiting: ((r: IteratorResult<string>) => void) | null = null;
  private ended = false;

  constructor(
    readonly stream: OutputStream,
    private readonly onReturn: () => void,
  ) {}

  push(line: string): void {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w({ value: line, done: false });
    } else this.buffered.push(line);
  }

  end(): void {
    this.ended = true;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w({ value: undefined, done: true });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<string> {
    return {
      next: () => {
        const line = this.buffered.shift();
        if (line !== undefined) return Promise.resolve({ value: line, done: false });
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => (this.waiting = resolve));
      },
      return: () => {
        // The reader stopped (break): stop queueing for it.
        this.onReturn();
        this.buffered.length = 0;
        this.end();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
