import { useState, type FormEvent } from 'react';
import { useStore } from 'zustand';
import { useApp, useEveryTick } from '../../app/context.js';
import { Badge, ErrorText, NotAvailable } from '../../app/components.js';

export default function RuntimePage() {
  const { runtime, session } = useApp();
  const st = useStore(runtime);
  const admin = useStore(session, (s) => s.admin);
  const [mode, setMode] = useState<'live' | 'backtest'>('backtest');
  const [tickers, setTickers] = useState('AAPL');
  const [start, setStart] = useState('2024-01-01');
  const [end, setEnd] = useState('2024-02-01');
  useEveryTick(() => runtime.getState().refresh());
  if (st.availability === 'missing') return <><h2>Runtime</h2><NotAvailable service="runtime supervisor" what="GET /api/runtime/mode" /></>;
  const g = st.gateway;
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void runtime.getState().start({
      mode,
      tickers: tickers.split(/[\s,]+/).filter(Boolean),
      ...(mode === 'backtest' ? { start_date: start, end_date: end } : {}),
    });
  };
  return (
    <>
      <h2>Runtime</h2>
      <ErrorText error={st.error} />
      {st.message ? <p role="status" className="ok">{st.message}</p> : null}
      <section className="card" aria-labelledby="gw-h">
        <h3 id="gw-h">Supervised process: gateway</h3>
        {!g ? (
          <p className="muted">Loading…</p>
        ) : (
          <table>
            <tbody>
              <tr><th scope="row">State</th><td><Badge tone={g.is_running ? 'ok' : g.process_status === 'exited' ? 'bad' : 'muted'}>{g.process_status ?? (g.is_running ? 'running' : 'not_running')}</Badge></td></tr>
              <tr><th scope="row">Mode</th><td>{st.mode?.mode ?? '—'}{st.mode?.schedule_mode ? ` (${st.mode.schedule_mode})` : ''}</td></tr>
              <tr><th scope="row">Run id</th><td>{g.run_id ?? '—'}</td></tr>
              <tr><th scope="row">PID · port</th><td>{g.pid ?? '—'} · {g.port}</td></tr>
            </tbody>
          </table>
        )}
        {g?.is_running ? (
          <button type="button" className="danger" disabled={!admin || st.busy} onClick={() => void runtime.getState().stop()}>Stop</button>
        ) : (
          <form onSubmit={submit} className="form-grid" style={{ marginTop: 8 }}>
            <label>
              Mode
              <select value={mode} onChange={(e) => setMode(e.target.value as 'live' | 'backtest')}>
                <option value="backtest">backtest</option>
                <option value="live">live</option>
              </select>
            </label>
            <label>
              Tickers
              <input value={tickers} onChange={(e) => setTickers(e.target.value)} />
            </label>
            {mode === 'backtest' ? (
              <>
                <label>Start date<input type="date" value={start} onChange={(e) => setStart(e.target.value)} /></label>
                <label>End date<input type="date" value={end} onChange={(e) => setEnd(e.target.value)} /></label>
              </>
            ) : null}
            <button type="submit" className="primary" disabled={!admin || st.busy} style={{ alignSelf: 'end' }}>Start</button>
          </form>
        )}
        {!admin ? <p className="muted">Sign in with the admin token to start or stop processes.</p> : null}
      </section>
      <section className="card" aria-labelledby="tail-h">
        <h3 id="tail-h">Log tail</h3>
        {st.logs.length === 0 ? <p className="muted">No output yet.</p> : <pre className="log" tabIndex={0}>{st.logs.join('\n')}</pre>}
      </section>
    </>
  );
}
