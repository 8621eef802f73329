import { createStore } from 'zustand/vanilla';

/** The few bits of the History API the router uses (window.history + location in the browser). */
export interface HistoryLike {
  pushState(data: unknown, unused: string, url: string): void;
  readonly pathname: string;
}

export interface RouterState {
  path: string;
  navigate(path: string): void;
  /** Called on popstate (back/forward). */
  sync(): void;
}

/** Client-side routing over history.pushState; the core answers every page path with index.html. */
export function createRouterStore(history: HistoryLike) {
  return createStore<RouterState>()((set, get) => ({
    path: history.pathname,
    navigate(path) {
      if (path === get().path) return;
      history.pushState(null, '', path);
      set({ path });
    },
    sync: () => set({ path: history.pathname }),
  }));
}
export type RouterStore = ReturnType<typeof createRouterStore>;
