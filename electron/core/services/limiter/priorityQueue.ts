import { PRIORITIES, PRIORITY_RANK, type Priority } from '../../../../shared/contracts/priority.js';

/** Something waiting in a priority queue. */
export interface QueueItem {
  readonly priority: Priority;
  /** Monotonic ms at enqueue (FIFO within a level). */
  readonly enqueuedAt: number;
}

/**
 * Four FIFO levels (contract §6.3: URGENT=1 < HIGH=2 < NORMAL=3 < LOW=4, smaller served first).
 * Anti-starvation by aging: an item's effective rank improves by one level per `agingMs` waited, up
 * to HIGH, so HIGH/NORMAL/LOW never starve each other (a request waits at most about 2 × `agingMs`
 * behind newer HIGH traffic) while URGENT is never overtaken. Ties go to the earlier enqueue (FIFO). Only the head of each level can win, so `peek` is O(4).
 */
export class PriorityQueue<T extends QueueItem> {
  private readonly levels: Record<Priority, T[]> = { urgent: [], high: [], normal: [], low: [] };

  constructor(private agingMs: number) {}

  setAging(ms: number): void {
    this.agingMs = ms;
  }

  get size(): number {
    return this.levels.urgent.length + this.levels.high.length + this.levels.normal.length + this.levels.low.length;
  }

  depth(priority: Priority): number {
    return this.levels[priority].length;
  }

  push(item: T): void {
    this.levels[item.priority].push(item);
  }

  /** The item to serve next at monotonic time `now`, without removing it. */
  peek(now: number): T | undefined {
    let best: T | undefined;
    let bestRank = Infinity;
    for (const p of PRIORITIES) {
      const head = this.levels[p][0];
      if (!head) continue;
      const rank = this.rank(head, now);
      if (rank < bestRank || (rank === bestRank && best && head.enqueuedAt < best.enqueuedAt)) {
        best = head;
        bestRank = rank;
      }
    }
    return best;
  }

  /** Effective rank of `item` at `now` (1 = URGENT ... 4 = LOW), after aging. */
  rank(item: T, now: number): number {
    // Aging lifts a request at most to HIGH: URGENT is never overtaken.
    const p = item.priority;
    return p === 'urgent' ? 1 : Math.max(2, PRIORITY_RANK[p] - Math.floor((now - item.enqueuedAt) / this.agingMs));
  }

  /** Removes a specific item (served, timed out, cancelled or dropped). */
  remove(item: T): boolean {
    const level = this.levels[item.priority];
    const i = level.indexOf(item);
    if (i < 0) return false;
    level.splice(i, 1);
    return true;
  }

  /** The item with the largest `(priority, enqueued_at)`: lowest priority, newest (drop_lowest victim, §6.5). */
  lowest(): T | undefined {
    for (const p of [...PRIORITIES].reverse()) {
      const level = this.levels[p];
      if (level.length > 0) return level[level.length - 1];
    }
    return undefined;
  }

  /** Removes and returns everything (stop). */
  drain(): T[] {
    const all = PRIORITIES.flatMap((p) => this.levels[p]);
    for (const p of PRIORITIES) this.levels[p] = [];
    return all;
  }
}
