import { useEffect } from 'react';
import { useStore } from 'zustand';
import { LOG_LEVELS, type LogLevelName } from '../../../../shared/contracts/console.js';
import { useApp } from '../../app/context.js';
import { Empty } from '../../app/components.js';
import { clockTime } from '../../lib/format.js';

const TONE: Record<string, string> = { warn: 'warn', error: 'bad', fatal: 'bad' };

export default function LogsPage() {
  const { logs, session } = useApp();
  const st = useStore(logs);
  const admin = useStore(session, (s) => s.admin);
  useEffect(() => {
    if (!admin) return;
    logs.getState().activate();
    return () => logs.getState().deactivate();
  }, [admin, logs]);
  if (!admin) {
    return (
      <>
        <h2>Logs</h2>
        <Empty title="Sign in to read the logs">Logs can hold sensitive details, so they need the admin token: paste it in the sidebar.</Empty>
      </>
    );
  }
  const shown = st.records.slice(-500);
  return (
    <>
      <h2>Logs</h2>
      <div className="row card" role="group" aria-label="Log filter">
        <label>
          Module
          <select value={st.filter.module ?? ''} onChange={(e) => logs.getState().setFilter({ ...st.filter, module: e.target.value || undefined })}>
            <option value="">all modules</option>
            {[...new Set([...st.modules, ...(st.filter.module ? [st.filter.module] : [])])].map((m) => (
              <option key={m} value={m}>{m}</option>
            ))}
          </select>
        </label>
        <label>
          Lowest level
          <select value={st.filter.level ?? ''} onChange={(e) => logs.getState().setFilter({ ...st.filter, level: (e.target.value || undefined) as LogLevelName | undefined })}>
            <option value="">all levels</option>
            {LOG_LEVELS.map((l) => <option key={l} value={l}>{l}</option>)}
          </select>
        </label>
        <button type="button" aria-pressed={st.paused} onClick={() => logs.getState().setPaused(!st.paused)}>{st.paused ? 'Resume' : 'Pause'}</button>
        <button type="button" onClick={() => logs.getState().clear()}>Clear</button>
        <span className="muted">{st.records.length} records (last 500 shown)</span>
      </div>
      <div className="log" tabIndex={0} aria-label="Log records" data-testid="log-records">
        {shown.length === 0 ? <span className="muted">No records match the filter yet.</span> : null}
        {shown.map((r, i) => (
          <div key={`${r.time}-${i}`}>
            <span className="muted">{clockTime(r.time)}</span> <span className={TONE[r.level] ?? ''}>{r.level.toUpperCase().padEnd(5)}</span> [{r.module}] {r.msg}
          </div>
        ))}
      </div>
    </>
  );
}
