import { useState, type FormEvent } from 'react';
import { useStore } from 'zustand';
import { useApp, useEveryTick } from '../../app/context.js';
import { Badge, Empty, ErrorText, NotAvailable } from '../../app/components.js';
import { duration } from '../../lib/format.js';

const RUNNING = new Set(['running', 'starting', 'backoff']);

export default function RuntimePage() {
  const { runtime, session } = useApp();
  const st = useStore(runtime);
  const admin = useStore(session, (s) => s.admin) === true;
  const [mode, setMode] = useState<'live' | 'backtest'>('backtest');
  const [tickers, setTickers] = useState('AAPL');
  const [start, setStart] = useState('2024-01-01');
  const [end, setEnd] = useState('2024-02-01');
  useEveryTick(() => runtime.getState().refresh(admin));
  if (st.availability === 'missing') return <><h2>Runtime</h2><NotAvailable service="runtime supervisor" what="GET /api/runtime/mode" /></>;
  const g = st.gateway;
  const processes = st.processes.length > 0 ? st.processes : g ? [{ name: 'gateway', configured: true, state: g.is_running ? 'running' : (g.process_status ?? 'not_running'), process_status: g.process_status ?? '', pid: g.pid ?? null, started_at: null, uptime_seconds: null, restarts: 0, exit_code: null, run_id: g.run_id ?? null, mode: st.mode?.mode ?? null, last_error: null, orphan: null }] : [];
  const gatewayRunning = !!g?.is_running;
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void runtime.getState().startGateway({ mode, tickers: tickers.split(/[\s,]+/).filter(Boolean), ...(mode === 'backtest' ? { start_date: start, end_date: end } : {}) });
  };
  return (
    <>
      <h2>Runtime</h2>
      <ErrorText error={st.error} />
      {st.message ? <p role="status" className="ok">{st.message}</p> : null}
      <section className="card" aria-labelledby="proc-h">
        <h3 id="proc-h">Supervised processes</h3>
        {processes.length === 0 ? (
          <Empty title="No supervised process">Add one under Config → runtime (command, args, restart policy), then start it here.</Empty>
        ) : (
          <table>
            <thead>
              <tr><th scope="col">Process</th><th scope="col">State</th><th scope="col">PID</th><th scope="col">Up</th><th scope="col">Restarts</th><th scope="col">Actions</th></tr>
            </thead>
            <tbody>
              {processes.map((p) => (
                <tr key={p.name}>
                  <td>
                    {p.name}
                    {p.last_error ? <div className="bad">{p.last_error}</div> : null}
                    {p.orphan ? <div className="warn">{p.orphan.message}</div> : null}
                  </td>
                  <td><Badge tone={p.state === 'running' ? 'ok' : p.state === 'failed' || p.state === 'exited' ? 'bad' : 'muted'}>{p.state}</Badge>{p.mode ? ` ${p.mode}` : ''}</td>
                  <td>{p.pid ?? '—'}</td>
                  <td>{duration(p.uptime_seconds)}</td>
                  <td>{p.restarts}</td>
                  <td className="row">
                    {RUNNING.has(p.state) ? (
                      <button type="button" className="danger" disabled={!admin || st.busy} onClick={() => void runtime.getState().stopProcess(p.name)}>Stop</button>
                    ) : p.name !== 'gateway' ? (
                      <button type="button" disabled={!admin || st.busy} onClick={() => void runtime.getState().startProcess(p.name)}>Start</button>
                    ) : null}
                    <button type="button" aria-pressed={st.selected === p.name} onClick={() => runtime.getState().select(p.name)}>Log</button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {!gatewayRunning ? (
          <form onSubmit={submit} className="form-grid" style={{ marginTop: 8 }} aria-label="Start the gateway">
            <label>
              Gateway mode
              <select value={mode} onChange={(e) => setMode(e.target.value as 'live' | 'backtest')}>
                <option value="backtest">backtest</option>
                <option value="live">live</option>
              </select>
            </label>
            <label>Tickers<input value={tickers} onChange={(e) => setTickers(e.target.value)} /></label>
            {mode === 'backtest' ? (
              <>
                <label>Start date<input type="date" value={start} onChange={(e) => setStart(e.target.value)} /></label>
                <label>End date<input type="date" value={end} onChange={(e) => setEnd(e.target.value)} /></label>
              </>
            ) : null}
            <button type="submit" className="primary" disabled={!admin || st.busy} style={{ alignSelf: 'end' }}>Start gateway</button>
          </form>
        ) : null}
        {!admin ? <p className="muted">Sign in with the admin token to start or stop processes and read their logs.</p> : null}
      </section>
      <section className="card" aria-labelledby="tail-h">
        <h3 id="tail-h">Log tail: {st.selected}</h3>
        {!admin ? <p className="muted">Needs the admin token.</p> : st.logs.length === 0 ? <p className="muted">No output yet.</p> : <pre className="log" tabIndex={0}>{st.logs.join('\n')}</pre>}
      </section>
    </>
  );
}
