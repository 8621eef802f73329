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
