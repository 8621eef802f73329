import type { LlamaContext, LlamaContextSequence } from 'node-llama-cpp';
import type { Logger } from 'pino';
import type { Priority } from '../../../../shared/contracts/priority.js';
import { WaitQueue, type QueuePosition, type WaitingRequest } from './waitQueue.js';

/** Default estimate of one request's sequence time (ms) before a model has served any. */
export const DEFAULT_ETA_MS = 2000;

/** Who waits: the request's priority, id, abort signal and queue-place callback. */
export interface Waiter {
  priority: Priority;
  requestId: string;
  signal?: AbortSignal;
  onQueued?(position: QueuePosition): void;
}

/** What the scheduler needs of a loaded model: its sequences and their bookkeeping. */
export interface SchedulableModel {
  readonly id: string;
  readonly parallel: number;
  readonly context: LlamaContext;
  /** Requests holding a sequence (or granted one). */
  active: number;
  /** Moving average of a request's sequence time (ms), for queue ETAs. */
  avgRequestMs: number;
  /**
   * Sequences no request is using, kept for the next one. A sequence is reused, never disposed and
   * recreated: node-llama-cpp reclaims a disposed sequence's id only later, so a fresh
   * `getSequence()` right after `dispose()` fails with "No sequences left". Reuse also keeps the KV
   * cache of the previous prompt, which node-llama-cpp shares with the next request's common prefix.
   */
  readonly freeSequences: LlamaContextSequence[];
  /** A request is using the embedding context (others wait in the queue under `<id>#embed`). */
  embeddingBusy: boolean;
  /** A request is about to use the model: its idle timer stops. */
  cancelIdle(): void;
  /** The model was used just now. */
  touch(): void;
}

export interface SequenceSchedulerOptions<M extends SchedulableModel> {
  logger: Logger;
  now: () => number;
  maxQueue: () => number;
  defaultParallel: () => number;
  /** The loaded model `id` (for queue ETAs), if any. */
  model(id: string): M | undefined;
  /** Whether `m` is still the loaded instance of its id (a replaced one gets no new requests). */
  isCurrent(m: M): boolean;
  /** A model's last request ended (its sequences are all free): it may go idle. */
  settled(m: M): void;
}

/** Queue key of the requests waiting for room to load model `id` (model ids never contain ':'). */
const loadKey = (id: string): string => `load:${id}`;
const isLoadKey = (key: string): boolean => key.startsWith('load:');
/** Queue key of the requests waiting for model `id`'s embedding context. */
const embedKey = (id: string): string => `${id}#embed`;

/**
 * Who runs next: one priority wait queue (`WaitQueue`) for a model's context sequences, its
 * embedding context and the room to load a model. A freed slot passes straight to the next waiter,
 * so a request arriving meanwhile cannot jump the queue.
 */
export class SequenceScheduler<M extends SchedulableModel = SchedulableModel> {
  private readonly queue: WaitQueue;
  /** Set by `close`: why no request may wait or take a slot any more (null while open). */
  private closedWith: { reason: unknown } | null = null;

  constructor(private readonly options: SequenceSchedulerOptions<M>) {
    this.queue = new WaitQueue({
      maxSize: options.maxQueue,
      estimate: (key, position) => {
        if (isLoadKey(key)) return position * DEFAULT_ETA_MS;
        const m = options.model(key);
        const parallel = m?.parallel ?? options.defaultParallel();
        return Math.ceil(position / parallel) * (m?.avgRequestMs ?? DEFAULT_ETA_MS);
      },
      now: options.now,
    });
  }

  /** Accepts work again (after `close`). */
  open(): void {
    this.closedWith = null;
  }

  /**
   * Rejects every waiter with `reason`, and every later request for a sequence, the embedding
   * context or room to load; freed slots are no longer handed on. Requests holding a slot keep it
   * until they release it.
   */
  close(reason: unknown): void {
    this.closedWith = { reason };
    this.queue.rejectAll(reason);
  }

  private get closed(): boolean {
    return this.closedWith !== null;
  }

  private assertOpen(): void {
    if (this.closedWith) throw this.closedWith.reason;
  }

  get size(): number {
    return this.queue.size;
  }

  depthByPriority(): Record<Priority, number> {
    return this.queue.depthByPriority();
  }

  waiting(): WaitingRequest[] {
    return this.queue.list();
  }

  /** Requests waiting for a sequence of model `id`. */
  queuedFor(id: string): number {
    return this.queue.sizeFor(id);
  }

  /** Whether any request waits for model `id` (a sequence or its embedding context). */
  hasWaiters(id: string): boolean {
    return this.queue.sizeFor(id) > 0 || this.queue.sizeFor(embedKey(id)) > 0;
  }

  // ------------------------------------------------------------------ sequences

  /** Waits (by priority) for a free sequence of `m`, then takes it. */
  async acquire(m: M, waiter: Waiter): Promise<LlamaContextSequence> {
    this.assertOpen();
    m.cancelIdle();
    if (m.active >= m.parallel || this.queue.sizeFor(m.id) > 0) {
      await this.queue.wait(waiter.requestId, m.id, waiter.priority, waiter.signal, waiter.onQueued);
    } else {
      m.active++;
    }
    try {
      return m.freeSequences.pop() ?? m.context.getSequence();
    } catch (err) {
      this.releaseSlot(m);
      throw err;
    }
  }

  /**
   * Returns the sequence to the model's free list (cleared when its request failed or was aborted,
   * since its state is then unknown), then hands the slot to the next waiter.
   */
  async release(m: M, sequence: LlamaContextSequence, sequenceMs: number, clean: boolean): Promise<void> {
    m.avgRequestMs = m.avgRequestMs * 0.8 + sequenceMs * 0.2;
    m.touch();
    try {
      if (!clean && !sequence.disposed) await sequence.clearHistory();
      if (!sequence.disposed && this.options.isCurrent(m)) m.freeSequences.push(sequence);
    } catch (err) {
      this.options.logger.warn({ err, modelId: m.id }, 'a context sequence could not be cleared; it is dropped');
      if (!sequence.disposed) sequence.dispose();
    }
    this.releaseSlot(m);
  }

  private releaseSlot(m: M): void {
    if (this.options.isCurrent(m) && !this.closed && this.queue.grant(m.id)) return;
    m.active--;
    this.options.settled(m);
  }

  // ------------------------------------------------------------------ embedding context

  /** The embedding context serves one request at a time; others wait by priority under `<id>#embed`. */
  async acquireEmbedding(m: M, waiter: Waiter): Promise<void> {
    this.assertOpen();
    const key = embedKey(m.id);
    if (m.embeddingBusy || this.queue.sizeFor(key) > 0) await this.queue.wait(waiter.requestId, key, waiter.priority, waiter.signal, waiter.onQueued);
    else m.embeddingBusy = true;
  }

  /** The context passes straight to the next waiter, as a sequence does. */
  releaseEmbedding(m: M): void {
    if (this.closed || !this.queue.grant(embedKey(m.id))) m.embeddingBusy = false;
  }

  // ------------------------------------------------------------------ room to load

  /** Waits by priority (under `load:<id>`) until something may let a load of `id` go on (see `loadMayProceed`). */
  async waitToLoad(id: string, waiter: Waiter): Promise<void> {
    this.assertOpen();
    return this.queue.wait(waiter.requestId, loadKey(id), waiter.priority, waiter.signal, waiter.onQueued);
  }

  /** A model went idle, a load ended or the GPU came back: the first waiting load looks again. */
  loadMayProceed(): void {
    this.queue.grantWhere(isLoadKey);
  }

  /** Wakes every waiting load (the GPU came back). */
  wakeAllLoads(): void {
    while (this.queue.grantWhere(isLoadKey));
  }
}
