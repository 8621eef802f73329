import { createStore } from 'zustand/vanilla';
import { ApiError, type ConsoleClient } from '../../../shared/client/consoleClient.js';
import { errorText } from '../lib/format.js';

/** Where the token is kept between visits (localStorage in a browser; tests pass a Map). */
export interface TokenStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export const TOKEN_KEY = 'console.adminToken';

export interface SessionState {
  token: string | null;
  /** null = not checked yet. */
  admin: boolean | null;
  /** Token came from Electron's preload (no paste/forget UI then). */
  fromPreload: boolean;
  error: string | null;
  /** Saves and checks a pasted token; false (with `error`) when the core refuses it. */
  useToken(token: string): Promise<boolean>;
  /** Exchanges the one-time login code from the start-up link. */
  exchangeCode(code: string): Promise<boolean>;
  forget(): void;
  check(): Promise<void>;
}

/** The admin token: from the preload (Electron), the one-time link, or pasted once (kept in storage). */
export function createSessionStore(client: ConsoleClient, storage: TokenStorage, preloadToken: string | null = null) {
  const initial = preloadToken ?? storage.getItem(TOKEN_KEY);
  client.setToken(initial);
  const listeners = new Set<(token: string | null) => void>();
  const store = createStore<SessionState>()((set, get) => ({
    token: initial,
    admin: null,
    fromPreload: preloadToken !== null,
    error: null,
    async useToken(token) {
      const t = token.trim();
      if (!t) {
        set({ error: 'Paste the admin token (from DATA_DIR/admin-token or the console start-up output).' });
        return false;
      }
      const previous = client.getToken();
      client.setToken(t);
      try {
        const ok = await client.checkAdmin();
        if (!ok) {
          client.setToken(previous);
          set({ error: 'The core refused this token.' });
          return false;
        }
      } catch (err) {
        client.setToken(previous);
        set({ error: errorText(err) });
        return false;
      }
      if (!get().fromPreload) storage.setItem(TOKEN_KEY, t);
      set({ token: t, admin: true, error: null });
      for (const fn of listeners) fn(t);
      return true;
    },
    async exchangeCode(code) {
      try {
        const { token } = await client.exchangeLoginCode(code);
        return await get().useToken(token);
      } catch (err) {
        set({ error: err instanceof ApiError ? err.message : errorText(err) });
        return false;
      }
    },
    forget() {
      storage.removeItem(TOKEN_KEY);
      client.setToken(null);
      set({ token: null, admin: false });
      for (const fn of listeners) fn(null);
    },
    async check() {
      if (!get().token) {
        set({ admin: false });
        return;
      }
      try {
        set({ admin: await client.checkAdmin() });
      } catch {
        // core unreachable: keep the previous answer; the banner says we are disconnected
      }
    },
  }));
  return Object.assign(store, {
    /** Called when the token changes (the stream reconnects with it). */
    onTokenChange(fn: (token: string | null) => void) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  });
}
export type SessionStore = ReturnType<typeof createSessionStore>;
