import { describe, expect, it } from 'vitest';
import { BaseService, DisposableStore } from '../../../electron/core/base/lifecycle.js';
import { waitUntil } from '../../helpers/wait.js';

describe('DisposableStore', () => {
  it('disposes in reverse order, marks itself disposed and disposes late additions at once', async () => {
    const order: string[] = [];
    const store = new DisposableStore();
    store.defer(() => void order.push('a'));
    store.defer(() => void order.push('b'));
    expect(store.disposed).toBe(false);
    await store.dispose();
    expect(order).toEqual(['b', 'a']);
    expect(store.disposed).toBe(true);
    store.defer(() => void order.push('late'));
    expect(order).toEqual(['b', 'a', 'late']);
    await store.dispose();
    expect(order).toEqual(['b', 'a', 'late']);
  });

  it('reports every failing item after disposing the rest', async () => {
    const store = new DisposableStore();
    let ran = false;
    store.defer(() => {
      throw new Error('one');
    });
    store.defer(() => void (ran = true));
    store.defer(() => Promise.reject(new Error('two')));
    const err = (await store.dispose().catch((e: unknown) => e)) as AggregateError;
    expect(err).toBeInstanceOf(AggregateError);
    expect(err.errors.map((e: Error) => e.message)).toEqual(['two', 'one']);
    expect(ran).toBe(true);
  });
});

class Counter extends BaseService {
  readonly name = 'counter';
  ticks = 0;
  released = 0;
  protected async onStart(): Promise<void> {
    const timer = setInterval(() => this.ticks++, 5);
    this.disposables.defer(() => {
      clearInterval(timer);
      this.released++;
    });
  }
  /** A resource that arrives after stop (e.g. an async callback) is released at once. */
  late(): boolean {
    let released = false;
    this.disposables.defer(() => void (released = true));
    return released;
  }
}

describe('BaseService', () => {
  it('gets a fresh disposable store on every start, so stop → start → stop releases each run', async () => {
    const svc = new Counter();
    await svc.start();
    expect(svc.late()).toBe(false);
    await svc.stop();
    expect(svc.released).toBe(1);
    expect(svc.late()).toBe(true);
    await svc.start();
    expect(svc.running).toBe(true);
    await waitUntil(() => svc.ticks > 0, 5000, 'the restarted service to tick');
    await svc.stop();
    expect(svc.released).toBe(2);
    const ticks = svc.ticks;
    // A fixed wait on purpose: after stop() nothing may tick, and there is no event to wait for;
    // 30 ms is six of its 5 ms tick intervals.
    await new Promise((r) => setTimeout(r, 30));
    expect(svc.ticks).toBe(ticks);
  });
});

/** A service with jobs in flight: onDrain waits for them (or the deadline); onStop aborts the rest. */
class Worker extends BaseService {
  readonly name = 'worker';
  readonly events: string[] = [];
  private jobs = new Set<{ finish: () => void; abort: () => void; done: Promise<'finished' | 'aborted'> }>();
  drainSignal: AbortSignal | null = null;

  protected async onStart(): Promise<void> {
    this.events.push('start');
  }

  /** Starts a job that ends when finish() is called (or aborted by a stop); refused unless running. */
  submit(): { finish: () => void; done: Promise<'finished' | 'aborted'> } {
    if (!this.running) throw new Error(`${this.name} is stopping`);
    let finish!: () => void;
    let abort!: () => void;
    const done = new Promise<'finished' | 'aborted'>((resolve) => {
      finish = () => resolve('finished');
      abort = () => resolve('aborted');
    });
    const job = { finish, abort, done };
    this.jobs.add(job);
    void done.then(() => this.jobs.delete(job));
    return { finish, done };
  }

  protected override async onDrain(deadline: AbortSignal): Promise<void> {
    this.drainSignal = deadline;
    this.events.push('drain');
    const fired = new Promise<void>((resolve) => {
      if (deadline.aborted) resolve();
      deadline.addEventListener('abort', () => resolve(), { once: true });
    });
    await Promise.race([Promise.all([...this.jobs].map((j) => j.done)), fired]);
    this.events.push(deadline.aborted ? 'drain cut' : 'drained');
  }

  protected override async onStop(): Promise<void> {
    this.events.push('stop');
    for (const j of this.jobs) j.abort();
  }
}

describe('BaseService close (drain) and destroy (abort)', () => {
  it('close refuses new work at once, waits for the work in flight, then stops', async () => {
    const svc = new Worker();
    await svc.start();
    const job = svc.submit();
    let closed = false;
    const closing = svc.close().then(() => (closed = true));
    expect(svc.running).toBe(false);
    expect(svc.draining).toBe(true);
    expect(() => svc.submit()).toThrow('worker is stopping');
    await waitUntil(() => svc.events.includes('drain'), 5000, 'onDrain to be called');
    expect(closed).toBe(false);
    job.finish();
    await closing;
    expect(await job.done).toBe('finished');
    expect(svc.events).toEqual(['start', 'drain', 'drained', 'stop']);
    expect(svc.running).toBe(false);
    expect(svc.draining).toBe(false);
  });

  it('beginDrain refuses new work at once without waiting; a later close finishes that same drain', async () => {
    const svc = new Worker();
    await svc.start();
    const job = svc.submit();
    const deadline = new AbortController();
    svc.beginDrain({ deadline: deadline.signal });
    expect(svc.draining).toBe(true);
    expect(() => svc.submit()).toThrow('worker is stopping');
    svc.beginDrain(); // a second begin changes nothing
    let closed = false;
    const closing = svc.close().then(() => (closed = true));
    await waitUntil(() => svc.events.includes('drain'), 5000, 'onDrain to be called');
    expect(closed).toBe(false);
    deadline.abort(); // the deadline beginDrain was given still counts
    await closing;
    expect(await job.done).toBe('aborted');
    expect(svc.events).toEqual(['start', 'drain', 'drain cut', 'stop']);
  });

  it('destroy after beginDrain aborts the drain; a close afterwards does nothing', async () => {
    const svc = new Worker();
    await svc.start();
    const job = svc.submit();
    svc.beginDrain();
    await waitUntil(() => svc.events.includes('drain'), 5000, 'onDrain to be called');
    await svc.destroy();
    expect(await job.done).toBe('aborted');
    await svc.close();
    expect(svc.events).toEqual(['start', 'drain', 'drain cut', 'stop']);
    await svc.start(); // and it starts afresh
    expect(svc.running).toBe(true);
    await svc.stop();
  });

  it('proceeds when the deadline fires: what is left is aborted', async () => {
    const svc = new Worker();
    await svc.start();
    const job = svc.submit();
    const deadline = new AbortController();
    const closing = svc.close({ deadline: deadline.signal });
    await waitUntil(() => svc.events.includes('drain'), 5000, 'onDrain to be called');
    expect(svc.draining).toBe(true);
    deadline.abort();
    await closing;
    expect(await job.done).toBe('aborted');
    expect(svc.events).toEqual(['start', 'drain', 'drain cut', 'stop']);
    expect(svc.draining).toBe(false);
  });

  it('an already fired deadline drains nothing and stops at once', async () => {
    const svc = new Worker();
    await svc.start();
    const job = svc.submit();
    await svc.close({ deadline: AbortSignal.abort() });
    expect(await job.done).toBe('aborted');
    expect(svc.events).toEqual(['start', 'drain', 'drain cut', 'stop']);
  });

  it('destroy during a drain aborts: the drain signal fires, both calls resolve once stopped', async () => {
    const svc = new Worker();
    await svc.start();
    const job = svc.submit();
    const closing = svc.close(); // no deadline: only the destroy can end this drain
    await waitUntil(() => svc.events.includes('drain'), 5000, 'onDrain to be called');
    expect(svc.drainSignal?.aborted).toBe(false);
    await svc.destroy();
    expect(svc.drainSignal?.aborted).toBe(true);
    expect(await job.done).toBe('aborted');
    await closing;
    expect(svc.events.filter((e) => e === 'stop')).toHaveLength(1);
    expect(svc.events).toContain('drain cut');
    expect(svc.running).toBe(false);
    expect(svc.draining).toBe(false);
  });

  it('is safe to call twice: a second close joins the first, close/destroy after stop do nothing', async () => {
    const svc = new Worker();
    await svc.start();
    const job = svc.submit();
    const a = svc.close();
    const b = svc.close();
    await waitUntil(() => svc.events.includes('drain'), 5000, 'onDrain to be called');
    job.finish();
    await Promise.all([a, b]);
    await svc.close();
    await svc.destroy();
    await svc.stop();
    expect(svc.events).toEqual(['start', 'drain', 'drained', 'stop']);
  });

  it('two destroys at once stop once and both wait until stopped; close during a destroy waits for it', async () => {
    const svc = new Worker();
    await svc.start();
    const a = svc.destroy();
    const b = svc.destroy();
    const c = svc.close();
    await Promise.all([a, b, c]);
    expect(svc.events).toEqual(['start', 'stop']);
    expect(svc.running).toBe(false);
  });

  it('start during a drain waits for it to end, then starts afresh', async () => {
    const svc = new Worker();
    await svc.start();
    const job = svc.submit();
    const closing = svc.close();
    const starting = svc.start();
    await waitUntil(() => svc.events.includes('drain'), 5000, 'onDrain to be called');
    expect(svc.running).toBe(false);
    job.finish();
    await Promise.all([closing, starting]);
    expect(svc.running).toBe(true);
    expect(svc.events).toEqual(['start', 'drain', 'drained', 'stop', 'start']);
    await svc.stop();
  });

  it('close on a service that never started does nothing', async () => {
    const svc = new Worker();
    await svc.close();
    await svc.destroy();
    expect(svc.events).toEqual([]);
  });
});
