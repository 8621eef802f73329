import { lazy, Suspense, useEffect, useState, type ComponentType, type MouseEvent } from 'react';
import { useStore } from 'zustand';
import { DASHBOARD_PAGES, type DashboardPageId } from '../../../shared/contracts/console.js';
import { duration } from '../lib/format.js';
import { useApp } from './context.js';
import { TokenPanel } from './TokenPanel.js';

// Every page is its own chunk: the shell loads first, charts (recharts) only with pages that draw them.
const PAGES: Record<DashboardPageId, React.LazyExoticComponent<ComponentType>> = {
  overview: lazy(() => import('../features/overview/OverviewPage.js')),
  limiter: lazy(() => import('../features/limiter/LimiterPage.js')),
  gpu: lazy(() => import('../features/gpu/GpuPage.js')),
  models: lazy(() => import('../features/models/ModelsPage.js')),
  chat: lazy(() => import('../features/chat/ChatPage.js')),
  training: lazy(() => import('../features/training/TrainingPage.js')),
  runtime: lazy(() => import('../features/runtime/RuntimePage.js')),
  config: lazy(() => import('../features/config/ConfigPage.js')),
  logs: lazy(() => import('../features/logs/LogsPage.js')),
};

export function pageForPath(pathname: string): (typeof DASHBOARD_PAGES)[number] {
  const clean = pathname.replace(/\/+$/, '') || '/';
  return DASHBOARD_PAGES.find((p) => p.path === clean) ?? DASHBOARD_PAGES[0];
}

function DisconnectedBanner() {
  const { live } = useApp();
  const status = useStore(live, (s) => s.status);
  const since = useStore(live, (s) => s.disconnectedSince);
  const hasData = useStore(live, (s) => s.snapshot !== null);
  const [, force] = useState(0);
  useEffect(() => {
    if (status === 'open') return;
    const t = setInterval(() => force((n) => n + 1), 1000);
    return () => clearInterval(t);
  }, [status]);
  if (status === 'open' || (status === 'connecting' && !hasData)) return null;
  return (
    <div className="banner" role="status" aria-live="polite" data-testid="disconnected-banner">
      <strong>Disconnected from the console.</strong> Reconnecting automatically
      {since !== null ? ` (offline for ${duration((Date.now() - since) / 1000)})` : ''}; the data shown may be stale.
    </div>
  );
}

export function App() {
  const app = useApp();
  const path = useStore(app.router, (s) => s.path);
  const status = useStore(app.live, (s) => s.status);
  const page = pageForPath(path);
  const Page = PAGES[page.id];

  useEffect(() => {
    const onPop = () => app.router.getState().sync();
    window.addEventListener('popstate', onPop);
    return () => window.removeEventListener('popstate', onPop);
  }, [app.router]);
  useEffect(() => {
    document.title = `${page.title} · GPU Console`;
  }, [page.title]);

  const go = (e: MouseEvent<HTMLAnchorElement>, to: string) => {
    if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    app.router.getState().navigate(to);
    document.getElementById('main')?.focus();
  };

  return (
    <div className="layout">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <nav className="sidebar" aria-label="Pages">
        <h1>GPU Console</h1>
        <ul>
          {DASHBOARD_PAGES.map((p) => (
            <li key={p.id}>
              <a href={p.path} aria-current={p.id === page.id ? 'page' : undefined} onClick={(e) => go(e, p.path)}>
                {p.title}
              </a>
            </li>
          ))}
        </ul>
        <p className="conn" data-testid="connection-status">
          Live: <span className={status === 'open' ? 'ok' : 'bad'}>{status === 'open' ? 'connected' : status}</span>
        </p>
        <TokenPanel />
      </nav>
      <main id="main" tabIndex={-1}>
        <DisconnectedBanner />
        <Suspense fallback={<p className="muted">Loading…</p>}>
          <Page />
        </Suspense>
      </main>
    </div>
  );
}
