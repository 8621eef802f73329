import { describe, expect, it } from 'vitest';
import { clusterPanel } from '../../../renderer/src/features/gpu/store.js';

describe('GPU page cluster panel', () => {
  it('is absent on a single box', () => {
    expect(clusterPanel({ locks: [], cluster: null })).toBeNull();
    expect(clusterPanel(undefined)).toBeNull();
  });

  it('lists every node with its held locks and tasks, and who holds the monitor lease', () => {
    const panel = clusterPanel({
      cluster: {
        nodeId: 'a',
        redis: { connected: true, lastError: null },
        lease: { holder: 'c', heldHere: false },
        error: null,
        nodes: [
          { node: 'a', online: true, lockable: [0, 1], gpus: [{ index: 0 }] },
          { node: 'b', online: false, lockable: [0], gpus: [] },
        ],
        locks: [
          { node: 'a', lockKey: 'gpu_lock:0', isLocked: false, holder: null, taskId: null },
          { node: 'b', lockKey: 'gpu_lock:b:0', isLocked: true, holder: 'job-b', taskId: 'job-b' },
        ],
        tasks: [{ node: 'b', taskId: 'job-b', owner: 'job-b', status: 'timed_out', lockKey: 'gpu_lock:b:0', lastBeatAgeMs: 4500 }],
      },
    });
    expect(panel).toEqual({
      nodeId: 'a',
      redisConnected: true,
      leaseHolder: 'c',
      error: null,
      nodes: [
        { node: 'a', online: true, gpus: 1, lockable: [0, 1] },
        { node: 'b', online: false, gpus: 0, lockable: [0] },
      ],
      locks: [{ node: 'b', lockKey: 'gpu_lock:b:0', holder: 'job-b', taskId: 'job-b' }],
      tasks: [{ node: 'b', taskId: 'job-b', owner: 'job-b', status: 'timed_out', lockKey: 'gpu_lock:b:0', lastBeatAgeSeconds: 4.5 }],
    });
  });

  it('shows Redis away with no lease holder', () => {
    expect(clusterPanel({ cluster: { nodeId: 'a', redis: { connected: false }, lease: { holder: null }, error: 'Cluster lock store unavailable', nodes: [], locks: [], tasks: [] } })).toMatchObject({
      redisConnected: false,
      leaseHolder: null,
      error: 'Cluster lock store unavailable',
    });
  });
});
