import { describe, expect, it } from 'vitest';
import { AppError } from '../../../electron/core/base/errors.js';
import { WaitQueue, type QueuePosition } from '../../../electron/core/services/engine/waitQueue.js';

function queue(maxSize = 10, now = () => 0) {
  return new WaitQueue({ maxSize: () => maxSize, estimate: (_key, position) => position * 1000, now });
}

describe('WaitQueue', () => {
  it('grants waiters by priority, then in arrival order, per model', async () => {
    const q = queue();
    const order: string[] = [];
    const wait = (id: string, key: string, p: 'urgent' | 'high' | 'normal' | 'low') => q.wait(id, key, p, undefined).then(() => order.push(id));
    const all = [wait('low1', 'a', 'low'), wait('norm1', 'a', 'normal'), wait('urg1', 'a', 'urgent'), wait('norm2', 'a', 'normal'), wait('other', 'b', 'urgent')];
    expect(q.depthByPriority()).toEqual({ urgent: 2, high: 0, normal: 2, low: 1 });
    while (q.grant('a')) await Promise.resolve();
    await Promise.all(all.slice(0, 4));
    expect(order).toEqual(['urg1', 'norm1', 'norm2', 'low1']);
    expect(q.size).toBe(1);
    expect(q.list()).toEqual([{ id: 'other', modelId: 'b', priority: 'urgent', position: 1, etaMs: 1000, waitedMs: 0 }]);
    expect(q.grant('b')).toBe(true);
    expect(q.grant('b')).toBe(false);
  });

  it('reports each waiter its place and ETA, and updates them as the queue moves', async () => {
    const q = queue();
    const seen: Record<string, QueuePosition[]> = { x: [], y: [] };
    const x = q.wait('x', 'm', 'normal', undefined, (p) => seen.x!.push(p));
    const y = q.wait('y', 'm', 'normal', undefined, (p) => seen.y!.push(p));
    // An urgent request jumps ahead of both.
    const z = q.wait('z', 'm', 'urgent', undefined);
    expect(seen.x).toEqual([{ position: 1, etaMs: 1000 }, { position: 2, etaMs: 2000 }]);
    expect(seen.y).toEqual([{ position: 2, etaMs: 2000 }, { position: 3, etaMs: 3000 }]);
    q.grant('m');
    await z;
    expect(seen.x!.at(-1)).toEqual({ position: 1, etaMs: 1000 });
    expect(seen.y!.at(-1)).toEqual({ position: 2, etaMs: 2000 });
    q.grant('m');
    q.grant('m');
    await Promise.all([x, y]);
  });

  it('refuses a request beyond maxSize with 429 RATE_LIMITED and a Retry-After', async () => {
    const q = queue(2);
    const a = q.wait('a', 'm', 'normal', undefined);
    const b = q.wait('b', 'm', 'normal', undefined);
    let error: unknown;
    try {
      await q.wait('c', 'm', 'urgent', undefined);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).status).toBe(429);
    expect((error as AppError).code).toBe('RATE_LIMITED');
    expect((error as AppError).headers['retry-after']).toBe('3');
    q.rejectAll(new Error('stop'));
    await expect(a).rejects.toThrow('stop');
    await expect(b).rejects.toThrow('stop');
    expect(q.size).toBe(0);
  });

  it('gives up the place at once when the request is aborted while waiting', async () => {
    const q = queue();
    const controller = new AbortController();
    const seen: QueuePosition[] = [];
    const first = q.wait('first', 'm', 'normal', controller.signal);
    const second = q.wait('second', 'm', 'normal', undefined, (p) => seen.push(p));
    controller.abort(new Error('client gone'));
    await expect(first).rejects.toThrow('client gone');
    expect(q.size).toBe(1);
    expect(seen.at(-1)).toEqual({ position: 1, etaMs: 1000 });
    expect(q.grant('m')).toBe(true);
    await second;
  });
});
