import { createContext, useContext, useEffect, useRef } from 'react';
import { useStore } from 'zustand';
import type { ConsoleClient } from '../../../shared/client/consoleClient.js';
import type { LiveStream } from '../../../shared/client/liveStream.js';
import type { ConsoleBridge } from '../../../shared/contracts/bridge.js';
import type { ChatStore } from '../features/chat/store.js';
import type { ConfigStore } from '../features/config/store.js';
import type { GpuStore } from '../features/gpu/store.js';
import type { LimiterStore } from '../features/limiter/store.js';
import type { LogsStore } from '../features/logs/store.js';
import type { ModelsStore } from '../features/models/store.js';
import type { RuntimeStore } from '../features/runtime/store.js';
import type { TrainingStore } from '../features/training/store.js';
import type { LiveStore } from './liveStore.js';
import type { RouterStore } from './router.js';
import type { SessionStore } from './sessionStore.js';

/** Everything the pages use, built once in main.tsx. */
export interface AppServices {
  client: ConsoleClient;
  stream: LiveStream;
  bridge: ConsoleBridge | null;
  live: LiveStore;
  session: SessionStore;
  limiter: LimiterStore;
  gpu: GpuStore;
  models: ModelsStore;
  chat: ChatStore;
  training: TrainingStore;
  runtime: RuntimeStore;
  config: ConfigStore;
  logs: LogsStore;
  router: RouterStore;
}

export const AppContext = createContext<AppServices | null>(null);

export function useApp(): AppServices {
  const ctx = useContext(AppContext);
  if (!ctx) throw new Error('AppContext missing');
  return ctx;
}

/**
 * Runs `fn` now and on every live tick (1 Hz) while the component is mounted; never two at once.
 * Pages use it to refresh the service data they show.
 */
export function useEveryTick(fn: () => Promise<unknown> | void): void {
  const { live } = useApp();
  const tick = useStore(live, (s) => s.tick);
  const busy = useRef(false);
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => {
    if (busy.current) return;
    busy.current = true;
    void Promise.resolve(latest.current()).finally(() => {
      busy.current = false;
    });
  }, [tick]);
}
