import { useEffect, useMemo, useState } from 'react';
import { useStore } from 'zustand';
import { useApp } from '../../app/context.js';
import { Empty, ErrorText } from '../../app/components.js';
import type { ConfigField } from './store.js';

function FieldInput({ field, value, error, onChange }: { field: ConfigField; value: string; error?: string; onChange(v: string): void }) {
  const id = `cfg-${field.path}`;
  const label = field.path.split('.').slice(1).join('.') || field.path;
  const described = error ? `${id}-err` : undefined;
  return (
    <label htmlFor={id}>
      <span>
        {label}
        {field.overridden ? <span className="muted"> (set by env/flag; file value applies when that is removed)</span> : null}
      </span>
      {field.kind === 'boolean' ? (
        <select id={id} value={value} onChange={(e) => onChange(e.target.value)} aria-invalid={error ? true : undefined} aria-describedby={described}>
          <option value="true">true</option>
          <option value="false">false</option>
        </select>
      ) : (
        <input
          id={id}
          type={field.secret ? 'password' : 'text'}
          inputMode={field.kind === 'number' ? 'decimal' : undefined}
          value={value}
          placeholder={field.secret ? `${field.original} (unchanged)` : undefined}
          autoComplete="off"
          onChange={(e) => onChange(e.target.value)}
          aria-invalid={error ? true : undefined}
          aria-describedby={described}
          data-path={field.path}
        />
      )}
      {error ? (
        <span id={`${id}-err`} className="field-error" data-testid={`error-${field.path}`}>
          {error}
        </span>
      ) : null}
    </label>
  );
}

export default function ConfigPage() {
  const { config, session } = useApp();
  const st = useStore(config);
  const admin = useStore(session, (s) => s.admin);
  const [reviewing, setReviewing] = useState(false);
  useEffect(() => {
    if (admin) void config.getState().load();
  }, [admin, config]);
  const sections = useMemo(() => {
    const map = new Map<string, ConfigField[]>();
    for (const f of st.fields) {
      const s = f.path.split('.')[0] as string;
      map.set(s, [...(map.get(s) ?? []), f]);
    }
    return [...map.entries()];
  }, [st.fields]);
  const changes = st.draft && st.fields.length ? config.getState().changes() : [];

  if (!admin) {
    return (
      <>
        <h2>Config</h2>
        <Empty title="Sign in to edit the config">Paste the admin token in the sidebar (it is in the console&apos;s data dir, file admin-token), or open the one-time link the console printed at start.</Empty>
      </>
    );
  }
  return (
    <>
      <h2>Config</h2>
      <p className="muted">File: {st.view?.path ?? '…'} · changes are validated by the console, shown as a diff, then hot-reloaded.</p>
      <ErrorText error={st.error} />
      {st.message ? <p role="status" className="ok" data-testid="config-message">{st.message}</p> : null}
      <div className="row" style={{ position: 'sticky', top: 0, background: 'var(--bg)', padding: '6px 0', zIndex: 1 }}>
        <button type="button" className="primary" disabled={changes.length === 0 || st.saving} onClick={() => setReviewing(true)}>
          Review {changes.length} change{changes.length === 1 ? '' : 's'}
        </button>
        <button type="button" disabled={changes.length === 0} onClick={() => { config.getState().discard(); setReviewing(false); }}>Discard</button>
        <button type="button" onClick={() => void config.getState().reload()}>Reload from disk</button>
      </div>
      {reviewing && changes.length > 0 ? (
        <section className="card" aria-labelledby="diff-h" data-testid="config-diff">
          <h3 id="diff-h">Changes to apply</h3>
          <table>
            <thead>
              <tr><th scope="col">Field</th><th scope="col">Now</th><th scope="col">New</th></tr>
            </thead>
            <tbody>
              {changes.map((c) => (
                <tr key={c.path}><td>{c.path}</td><td><del>{c.from}</del></td><td><ins>{c.to}</ins></td></tr>
              ))}
            </tbody>
          </table>
          <div className="row" style={{ marginTop: 8 }}>
            <button type="button" className="primary" disabled={st.saving} onClick={async () => { if (await config.getState().apply()) setReviewing(false); }}>Apply</button>
            <button type="button" onClick={() => setReviewing(false)}>Back to editing</button>
          </div>
        </section>
      ) : null}
      {st.loading && st.fields.length === 0 ? <p className="muted">Loading…</p> : null}
      {sections.map(([name, fields]) => (
        <section key={name} className="card" aria-labelledby={`sec-${name}`}>
          <h3 id={`sec-${name}`}>{name}</h3>
          <div className="form-grid">
            {fields.map((f) => (
              <FieldInput key={f.path} field={f} value={st.draft[f.path] ?? ''} error={st.fieldErrors[f.path]} onChange={(v) => config.getState().setField(f.path, v)} />
            ))}
          </div>
        </section>
      ))}
    </>
  );
}
