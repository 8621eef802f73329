import { useMemo, useRef, useState } from 'react';
import { useStore } from 'zustand';
import { useApp, useEveryTick } from '../../app/context.js';
import { Badge, ErrorText, Gauge, NotAvailable, Empty } from '../../app/components.js';
import { WINDOWS, type ChartLine } from '../../lib/chartTypes.js';
import { ChartWindowPicker } from '../../lib/ChartWindowPicker.js';
import { LiveChart } from '../../lib/LiveChart.js';
import { clockTime, num, pct } from '../../lib/format.js';
import { mergeWindows } from '../../lib/series.js';
import { depthsOf, isLimiterStatus, queueDepth } from './store.js';

const BUCKET_LINES: ChartLine[] = [
  { key: 'tokens', name: 'tokens in bucket', color: 'var(--chart-1)' },
  { key: 'depth', name: 'queued', color: 'var(--chart-3)' },
];
const RPM_LINES: ChartLine[] = [{ key: 'rpm', name: 'RPM', color: 'var(--chart-4)' }];
const RATIO_LINES: ChartLine[] = [{ key: 'ratio', name: '429 ratio', color: 'var(--chart-2)' }];
const PRIORITIES = ['URGENT', 'HIGH', 'NORMAL', 'LOW'] as const;
const TONE: Record<string, 'ok' | 'warn' | 'bad'> = { normal: 'ok', recover: 'warn', retreat: 'bad' };

export default function LimiterPage() {
  const { limiter, live, session } = useApp();
  const st = useStore(limiter);
  const admin = useStore(session, (s) => s.admin);
  const [windowMs, setWindowMs] = useState<number>(WINDOWS[0].ms);
  const [msg, setMsg] = useState<string | null>(null);
  const ticks = useRef(0);
  useEveryTick(async () => {
    if (admin && ticks.current++ % 3 === 0) void limiter.getState().refreshRecent();
    const snap = live.getState().snapshot;
    const section = snap?.services.limiter;
    if (snap && isLimiterStatus(section)) limiter.getState().ingest(section, snap.time);
    else await limiter.getState().refresh(snap?.time ?? Date.now());
  });
  const since = Date.now() - windowMs;
  const charts = useMemo(
    () =>
      Object.fromEntries(
        Object.entries(st.history).map(([name, h]) => [name, { bucket: mergeWindows({ tokens: h.tokens, depth: h.queueDepth }, since), rpm: mergeWindows({ rpm: h.rpm }, since), ratio: mergeWindows({ ratio: h.ratio429 }, since) }]),
      ),
    [st.tick, since, st.history],
  );

  if (st.availability === 'missing') return <><h2>Limiter</h2><NotAvailable service="limiter" what="GET /api/limiter/status" /></>;
  if (st.availability === 'unknown') return <><h2>Limiter</h2><p className="muted">Loading…</p></>;
  return (
    <>
      <h2>Limiter</h2>
      <ErrorText error={st.error} />
      {Object.keys(st.providers).length === 0 ? <Empty title="No provider configured">Add a provider (e.g. NVIDIA) in Config → limiter, with its API key.</Empty> : null}
      {Object.entries(st.providers).map(([name, p]) => {
        const h = st.history[name];
        const by = depthsOf(p) ?? {};
        const recent = st.recent[name] ?? [];
        return (
          <section key={name} className="card" aria-labelledby={`prov-${name}`} data-testid={`limiter-${name}`}>
            <div className="row" style={{ justifyContent: 'space-between' }}>
              <h3 id={`prov-${name}`}>Provider {name}</h3>
              <span data-testid="retreat-state">
                Retreat state: <Badge tone={TONE[p.retreat.state] ?? 'warn'}>{p.retreat.state.toUpperCase()}</Badge>
              </span>
            </div>
            <div className="grid">
              <Gauge label="Token bucket" value={p.token_bucket.tokens} max={p.token_bucket.capacity} text={`${num(p.token_bucket.tokens, 1)} / ${p.token_bucket.capacity}`} />
              <div className="card">
                <div className="muted">Current rate</div>
                <div className="stat" data-testid="effective-rpm">{num(p.retreat.effective_rpm)} RPM</div>
                <div className="muted">base {num(p.retreat.base_rpm)} RPM · 429 ratio {pct(p.retreat.upstream_429_rate * 100, 1)}</div>
              </div>
              <div className="card">
                <div className="muted">Queue ({p.queue.full_policy ?? 'passthrough'} when full)</div>
                <div className="stat">{queueDepth(p)} / {p.queue.max_size}</div>
                <table>
                  <tbody>
                    {PRIORITIES.map((pr) => (
                      <tr key={pr}>
                        <th scope="row">{pr}</th>
                        <td>{by[pr] ?? 0}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </div>
            <ChartWindowPicker windowMs={windowMs} onChange={setWindowMs} />
            <div className="grid" style={{ gridTemplateColumns: 'repeat(auto-fill, minmax(320px, 1fr))', marginTop: 8 }}>
              <div>
                <h3>Current rate (RPM)</h3>
                <LiveChart label="Rate" rows={charts[name]?.rpm ?? []} lines={RPM_LINES} />
              </div>
              <div>
                <h3>Bucket level and queue depth</h3>
                <LiveChart label="Bucket" rows={charts[name]?.bucket ?? []} lines={BUCKET_LINES} />
              </div>
              <div>
                <h3>429 ratio (%)</h3>
                <LiveChart label="429 ratio" rows={charts[name]?.ratio ?? []} unit="%" lines={RATIO_LINES} />
              </div>
            </div>
            <div className="grid">
              <div>
                <h3>Retreat timeline</h3>
                <ol className="timeline" data-testid="retreat-timeline" tabIndex={0} aria-label={`Retreat timeline of ${name}`}>
                  {(h?.timeline ?? []).slice().reverse().map((e) => (
                    <li key={e.time}>
                      {clockTime(e.time)} → <Badge tone={TONE[e.state] ?? 'warn'}>{e.state.toUpperCase()}</Badge> at {num(e.rpm)} RPM{e.reason ? <span className="muted"> · {e.reason}</span> : null}
                    </li>
                  ))}
                </ol>
              </div>
              <div>
                <h3>Recent requests</h3>
                {!admin ? (
                  <p className="muted">Sign in with the admin token to see recent requests (they come from the limiter&apos;s request log).</p>
                ) : recent.length === 0 ? (
                  <p className="muted">No recent requests. Requests to models named {name}/… go through this queue.</p>
                ) : (
                  <table>
                    <thead>
                      <tr><th scope="col">Time</th><th scope="col">Status</th><th scope="col">Queued</th><th scope="col">Total</th><th scope="col">State</th></tr>
                    </thead>
                    <tbody>
                      {recent.slice(-10).reverse().map((r, i) => (
                        <tr key={i}>
                          <td>{clockTime(r.time)}</td>
                          <td className={r.status === 429 ? 'bad' : r.status === null || r.status >= 400 ? 'warn' : ''}>{r.status ?? r.error ?? 'failed'}</td>
                          <td>{r.queueLatency === undefined ? '—' : `${num(r.queueLatency * 1000, 0)} ms`}</td>
                          <td>{r.totalLatency === undefined ? '—' : `${num(r.totalLatency * 1000, 0)} ms`}</td>
                          <td>{r.retreatState ?? '—'}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                )}
              </div>
            </div>
            <div className="row">
              <button type="button" disabled={!admin} onClick={async () => setMsg((await limiter.getState().reset()) ?? 'Reset to the base rate.')}>
                Reset retreat to base rate
              </button>
              {!admin ? <span className="muted">Sign in with the admin token to reset.</span> : null}
              {msg ? <span role="status">{msg}</span> : null}
            </div>
          </section>
        );
      })}
    </>
  );
}
