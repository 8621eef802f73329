import { createStore } from 'zustand/vanilla';
import type { ConsoleSnapshot } from '../../../shared/contracts/console.js';
import type { StreamStatus } from '../../../shared/client/liveStream.js';
import { RingSeries } from '../lib/series.js';
import type { GpuDevice } from '../../../shared/client/apiTypes.js';
import { numberAt, path } from '../lib/read.js';

/** What the live store needs from the stream (LiveStream fits; tests pass a fake). */
export interface SnapshotSource {
  onSnapshot(fn: (s: ConsoleSnapshot) => void): () => void;
  onStatus(fn: (s: StreamStatus) => void): () => void;
  getStatus(): StreamStatus;
}

/** Rolling series the Overview charts read (1 point per snapshot, 8 h kept). */
export interface LiveSeries {
  processCpu: RingSeries;
  systemCpu: RingSeries;
  memory: RingSeries;
  requestsPerSecond: RingSeries;
  eventLoopLag: RingSeries;
  gpuUtil: RingSeries;
  tokensPerSecond: RingSeries;
}

export interface LiveState {
  status: StreamStatus;
  snapshot: ConsoleSnapshot | null;
  /** Increments on every snapshot: components that read the series re-render on it. */
  tick: number;
  /** When (ms, local clock) the first snapshot arrived. */
  firstDataAt: number | null;
  /** When the connection was last lost (null while connected). */
  disconnectedSince: number | null;
  series: LiveSeries;
  dispose(): void;
}

/** The GPUs in the monitoring snapshot's latest telemetry sample (empty without NVIDIA telemetry). */
export function gpuDevices(snapshot: ConsoleSnapshot | null): GpuDevice[] {
  const gpus = path(snapshot?.services.monitoring, ['telemetry', 'latest', 'gpus']);
  return Array.isArray(gpus) ? gpus.filter((g): g is GpuDevice => !!g && typeof g === 'object' && typeof (g as GpuDevice).index === 'number') : [];
}

/** GPU use in percent (mean over GPUs), when monitoring reports any. */
export function gpuUtilization(snapshot: ConsoleSnapshot): number | undefined {
  const vals = gpuDevices(snapshot)
    .map((g) => g.utilizationGpu)
    .filter((v): v is number => typeof v === 'number');
  return vals.length ? vals.reduce((a, b) => a + b, 0) / vals.length : undefined;
}

export function tokensPerSecond(snapshot: ConsoleSnapshot): number | undefined {
  return numberAt(snapshot.services.engine, ['tokensPerSecond'], ['tokens_per_second'], ['stats', 'tokensPerSecond']);
}

/** The live snapshot feed: latest snapshot, connection status and rolling series. */
export function createLiveStore(source: SnapshotSource, options: { now?: () => number; capacity?: number } = {}) {
  const now = options.now ?? (() => Date.now());
  const cap = options.capacity ?? 8 * 3600;
  const series: LiveSeries = {
    processCpu: new RingSeries(cap),
    systemCpu: new RingSeries(cap),
    memory: new RingSeries(cap),
    requestsPerSecond: new RingSeries(cap),
    eventLoopLag: new RingSeries(cap),
    gpuUtil: new RingSeries(cap),
    tokensPerSecond: new RingSeries(cap),
  };
  const store = createStore<LiveState>()(() => ({
    status: source.getStatus(),
    snapshot: null,
    tick: 0,
    firstDataAt: null,
    disconnectedSince: null,
    series,
    dispose: () => {
      offSnap();
      offStatus();
    },
  }));
  const offSnap = source.onSnapshot((s) => {
    const t = s.time;
    series.processCpu.push(t, s.core.processCpuPercent);
    series.systemCpu.push(t, s.core.systemCpuPercent);
    series.memory.push(t, s.core.systemMemTotalBytes > 0 ? (s.core.systemMemUsedBytes / s.core.systemMemTotalBytes) * 100 : 0);
    series.requestsPerSecond.push(t, s.core.requestsPerSecond);
    series.eventLoopLag.push(t, s.core.eventLoopLagMs);
    const gpu = gpuUtilization(s);
    if (gpu !== undefined) series.gpuUtil.push(t, gpu);
    const tps = tokensPerSecond(s);
    if (tps !== undefined) series.tokensPerSecond.push(t, tps);
    const prev = store.getState();
    store.setState({ snapshot: s, tick: prev.tick + 1, firstDataAt: prev.firstDataAt ?? now() });
  });
  const offStatus = source.onStatus((status) => {
    const prev = store.getState();
    const down = status === 'disconnected' || status === 'connecting';
    store.setState({ status, disconnectedSince: down ? (prev.disconnectedSince ?? now()) : null });
  });
  return store;
}
export type LiveStore = ReturnType<typeof createLiveStore>;
