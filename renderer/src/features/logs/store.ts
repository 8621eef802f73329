import { createStore } from 'zustand/vanilla';
import type { ConsoleLogRecord, LogFilter } from '../../../../shared/contracts/console.js';

/** What the logs store needs from the live stream. */
export interface LogSource {
  onLogs(fn: (records: ConsoleLogRecord[], backlog: boolean) => void): () => void;
  subscribeLogs(filter: LogFilter | null): void;
}

export interface LogsState {
  records: ConsoleLogRecord[];
  filter: LogFilter;
  paused: boolean;
  active: boolean;
  modules: string[];
  /** Starts receiving records (page opened). */
  activate(): void;
  deactivate(): void;
  setFilter(filter: LogFilter): void;
  setPaused(paused: boolean): void;
  clear(): void;
}

export function createLogsStore(source: LogSource, options: { max?: number } = {}) {
  const max = options.max ?? 2000;
  let off: (() => void) | null = null;
  const store = createStore<LogsState>()((set, get) => ({
    records: [],
    filter: {},
    paused: false,
    active: false,
    modules: [],
    activate() {
      if (get().active) return;
      off = source.onLogs((incoming, backlog) => {
        if (get().paused || (incoming.length === 0 && !backlog)) return;
        // A backlog (sent on every (re)subscription, e.g. after a reconnect) replaces what we had.
        const records = backlog ? incoming : get().records.concat(incoming);
        const known = new Set(get().modules);
        for (const r of incoming) known.add(r.module);
        set({ records: records.length > max ? records.slice(records.length - max) : records, modules: [...known].sort() });
      });
      source.subscribeLogs(get().filter);
      set({ active: true });
    },
    deactivate() {
      off?.();
      off = null;
      source.subscribeLogs(null);
      set({ active: false });
    },
    setFilter(filter) {
      set({ filter, records: [] });
      if (get().active) source.subscribeLogs(filter);
    },
    setPaused: (paused) => set({ paused }),
    clear: () => set({ records: [] }),
  }));
  return store;
}
export type LogsStore = ReturnType<typeof createLogsStore>;
