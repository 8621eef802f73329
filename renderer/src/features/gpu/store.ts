import { createStore } from 'zustand/vanilla';
import type { GpuLockStatus, HeartbeatsAll } from '../../../../shared/client/apiTypes.js';
import type { ConsoleClient } from '../../../../shared/client/consoleClient.js';
import { classify, type Availability } from '../../lib/resource.js';
import { errorText } from '../../lib/format.js';
import { isObject } from '../../lib/read.js';

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

/** One row of the cluster panel (every node's locks and tasks, from the live monitoring snapshot). */
export interface ClusterPanel {
  nodeId: string;
  redisConnected: boolean;
  leaseHolder: string | null;
  error: string | null;
  nodes: Array<{ node: string; online: boolean; gpus: number; lockable: number[] }>;
  locks: Array<{ node: string; lockKey: string; holder: string | null; taskId: string | null }>;
  tasks: Array<{ node: string; taskId: string; owner: string; status: string; lockKey: string | null; lastBeatAgeSeconds: number }>;
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const arr = (v: unknown): Array<Record<string, unknown>> => (Array.isArray(v) ? v.filter(isObject) : []);

/** The cluster part of the monitoring snapshot (null on a single box); only held locks are listed. */
export function clusterPanel(monitoring: unknown): ClusterPanel | null {
  const c = isObject(monitoring) ? monitoring.cluster : undefined;
  if (!isObject(c)) return null;
  const redis = isObject(c.redis) ? c.redis : {};
  const lease = isObject(c.lease) ? c.lease : {};
  return {
    nodeId: str(c.nodeId) ?? '?',
    redisConnected: redis.connected === true,
    leaseHolder: str(lease.holder),
    error: str(c.error),
    nodes: arr(c.nodes).map((n) => ({ node: str(n.node) ?? '?', online: n.online === true, gpus: Array.isArray(n.gpus) ? n.gpus.length : 0, lockable: Array.isArray(n.lockable) ? n.lockable.filter((g): g is number => typeof g === 'number') : [] })),
    locks: arr(c.locks)
      .filter((l) => l.isLocked === true)
      .map((l) => ({ node: str(l.node) ?? '?', lockKey: str(l.lockKey) ?? '?', holder: str(l.holder), taskId: str(l.taskId) })),
    tasks: arr(c.tasks).map((t) => ({
      node: str(t.node) ?? '?',
      taskId: str(t.taskId) ?? '?',
      owner: str(t.owner) ?? '',
      status: str(t.status) ?? '?',
      lockKey: str(t.lockKey),
      lastBeatAgeSeconds: typeof t.lastBeatAgeMs === 'number' ? t.lastBeatAgeMs / 1000 : 0,
    })),
  };
}
