import { createStore } from 'zustand/vanilla';
import type { GpuLockStatus, HeartbeatsAll } from '../../../../shared/client/apiTypes.js';
import type { ConsoleClient } from '../../../../shared/client/consoleClient.js';
import { classify, type Availability } from '../../lib/resource.js';
import { errorText } from '../../lib/format.js';

export interface GpuState {
  availability: Availability;
  error: string | null;
  lock: GpuLockStatus | null;
  /** Monotonic ms when `lock` was received (the TTL countdown runs from here). */
  lockReceivedAt: number;
  heartbeats: HeartbeatsAll | null;
  lockKey: string;
  refresh(): Promise<void>;
  /** Admin: force-release the lock (after the user confirmed). Returns the server's message. */
  forceRelease(): Promise<{ ok: boolean; message: string }>;
}

/** Seconds of TTL left at monotonic time `nowMs`, counting down locally between refreshes. */
export function ttlLeft(lock: GpuLockStatus | null, receivedAt: number, nowMs: number): number | null {
  if (!lock || !lock.is_locked || lock.ttl_seconds === null || lock.ttl_seconds === undefined) return null;
  return Math.max(0, lock.ttl_seconds - (nowMs - receivedAt) / 1000);
}

export function createGpuStore(client: ConsoleClient, options: { now?: () => number } = {}) {
  const now = options.now ?? (() => performance.now());
  return createStore<GpuState>()((set, get) => ({
    availability: 'unknown',
    error: null,
    lock: null,
    lockReceivedAt: 0,
    heartbeats: null,
    lockKey: 'gpu_lock:0',
    async refresh() {
      try {
        const [lock, heartbeats] = await Promise.all([client.gpuLock(get().lockKey), client.heartbeats()]);
        set({ availability: 'ok', error: null, lock, heartbeats, lockReceivedAt: now() });
      } catch (err) {
        set(classify(err));
      }
    },
    async forceRelease() {
      try {
        const r = await client.releaseLock(get().lockKey);
        await get().refresh();
        return { ok: r.success, message: r.message };
      } catch (err) {
        return { ok: false, message: errorText(err) };
      }
    },
  }));
}
export type GpuStore = ReturnType<typeof createGpuStore>;
