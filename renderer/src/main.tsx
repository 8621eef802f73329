import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { ConsoleClient } from '../../shared/client/consoleClient.js';
import { LiveStream, type EventSourceLike, type SocketLike } from '../../shared/client/liveStream.js';
import type { ConsoleBridge } from '../../shared/contracts/bridge.js';
import { App } from './app/App.js';
import { AppContext, type AppServices } from './app/context.js';
import { createLiveStore } from './app/liveStore.js';
import { createRouterStore } from './app/router.js';
import { createSessionStore } from './app/sessionStore.js';
import { createChatStore } from './features/chat/store.js';
import { createConfigStore } from './features/config/store.js';
import { createGpuStore } from './features/gpu/store.js';
import { createLimiterStore } from './features/limiter/store.js';
import { createLogsStore } from './features/logs/store.js';
import { createModelsStore } from './features/models/store.js';
import { createRuntimeStore } from './features/runtime/store.js';
import { createTrainingStore } from './features/training/store.js';
import './app/styles.css';

declare global {
  interface Window {
    /** Present inside Electron (preload); absent in a plain browser. */
    consoleBridge?: ConsoleBridge;
  }
}

function memoryStorage() {
  const m = new Map<string, string>();
  return { getItem: (k: string) => m.get(k) ?? null, setItem: (k: string, v: string) => void m.set(k, v), removeItem: (k: string) => void m.delete(k) };
}

function wrapSocket(ws: WebSocket): SocketLike {
  const s: SocketLike = { onopen: null, onmessage: null, onclose: null, onerror: null, send: (d) => ws.send(d), close: () => ws.close() };
  ws.onopen = (e) => s.onopen?.(e);
  ws.onmessage = (e) => s.onmessage?.(e);
  ws.onclose = (e) => s.onclose?.(e);
  ws.onerror = (e) => s.onerror?.(e);
  return s;
}

function wrapEventSource(es: EventSource): EventSourceLike {
  const s: EventSourceLike = { onopen: null, onmessage: null, onerror: null, close: () => es.close() };
  es.onopen = (e) => s.onopen?.(e);
  es.onmessage = (e) => s.onmessage?.(e);
  es.onerror = (e) => s.onerror?.(e);
  return s;
}

async function boot(): Promise<void> {
  const bridge = window.consoleBridge ?? null;
  // In a browser the dashboard talks to the origin that served it; in Electron the preload says where the core is.
  const baseUrl = bridge?.baseUrl ?? '';
  const client = new ConsoleClient({ baseUrl });
  let storage: Storage | ReturnType<typeof memoryStorage>;
  try {
    storage = window.localStorage;
  } catch {
    storage = memoryStorage();
  }
  const session = createSessionStore(client, storage, bridge?.token ?? null);

  // One-time login link printed at start: #login=<code> → exchange for the admin token, then drop the fragment.
  const login = /^#login=([\w-]+)$/.exec(window.location.hash)?.[1];
  if (login) {
    window.history.replaceState(null, '', window.location.pathname);
    await session.getState().exchangeCode(login);
  }

  const stream = new LiveStream({
    baseUrl,
    origin: window.location.origin,
    token: session.getState().token,
    createSocket: typeof WebSocket === 'function' ? (url) => wrapSocket(new WebSocket(url)) : undefined,
    createEventSource: typeof EventSource === 'function' ? (url) => wrapEventSource(new EventSource(url)) : undefined,
  });
  session.onTokenChange((token) => stream.setToken(token));

  const services: AppServices = {
    client,
    stream,
    bridge,
    live: createLiveStore(stream),
    session,
    router: createRouterStore({ pushState: (d, u, url) => window.history.pushState(d, u, url), get pathname() { return window.location.pathname; } }),
    limiter: createLimiterStore(client),
    gpu: createGpuStore(client),
    models: createModelsStore(client),
    chat: createChatStore(client),
    training: createTrainingStore(client),
    runtime: createRuntimeStore(client),
    config: createConfigStore(client),
    logs: createLogsStore(stream),
  };
  stream.start();
  void session.getState().check();

  // External links open in the system browser inside Electron.
  if (bridge) {
    document.addEventListener('click', (e) => {
      const a = (e.target as Element | null)?.closest?.('a[href]') as HTMLAnchorElement | null;
      if (a && a.origin !== window.location.origin) {
        e.preventDefault();
        void bridge.openExternal(a.href);
      }
    });
  }

  const root = document.getElementById('root');
  if (!root) throw new Error('#root missing');
  createRoot(root).render(
    <StrictMode>
      <AppContext.Provider value={services}>
        <App />
      </AppContext.Provider>
    </StrictMode>,
  );
}

void boot();
