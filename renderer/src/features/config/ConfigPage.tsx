import { useEffect, useMemo, useState } from 'react';
import { useStore } from 'zustand';
import { useApp } from '../../app/context.js';
import { Empty, ErrorText } from '../../app/components.js';
import type { ConfigField } from './store.js';

/** Schema descriptions mark code with backticks (as in docs/configuration.md). */
function withCode(text: string) {
  return text.split('`').map((part, i) => (i % 2 === 1 ? <code key={i}>{part}</code> : part));
}

/** Description, default and the env var / flag that pins the field, under its input. */
function FieldHelp({ field, id }: { field: ConfigField; id: string }) {
  const { doc } = field;
  const pins = [...doc.env.map((e) => `env ${e}`), ...(doc.flag ? [`flag ${doc.flag}`] : [])];
  return (
    <span id={id} className="field-help" data-testid={`help-${field.path}`}>
      {field.pinnedBy ? (
        <strong className="pinned">Pinned by {field.pinnedBy}: read-only here (a file value applies once that is removed). </strong>
      ) : null}
      {doc.description ? <span>{withCode(doc.description)} </span> : null}
      <span className="muted">
        {doc.default !== undefined ? <>Default <code>{doc.default}</code>. </> : null}
        {pins.length > 0 ? <>Set by {pins.map((p, i) => <span key={p}>{i > 0 ? ', ' : ''}<code>{p}</code></span>)}.</> : null}
      </span>
    </span>
  );
}

/** An array of scalars as rows: one input per item, add and remove buttons. */
function ListInput({ field, label, value, describedBy, onChange }: { field: ConfigField; label: string; value: string; describedBy: string; onChange(v: string): void }) {
  let rows: string[];
  try {
    const parsed: unknown = JSON.parse(value);
    rows = Array.isArray(parsed) ? parsed.map(String) : [];
  } catch {
    rows = [];
  }
  const set = (next: string[]) => onChange(JSON.stringify(next));
  const readOnly = field.overridden;
  return (
    <fieldset className="list-field" data-list={field.path} aria-describedby={describedBy}>
      <legend>
        {label} <span className="muted">(list{field.itemKind === 'number' ? ' of numbers' : ''})</span>
      </legend>
      {rows.length === 0 ? <span className="muted">empty</span> : null}
      {rows.map((row, i) => (
        <div className="row list-row" key={i}>
          <input
            type="text"
            inputMode={field.itemKind === 'number' ? 'decimal' : undefined}
            value={row}
            readOnly={readOnly}
            autoComplete="off"
            aria-label={`${label} item ${i + 1}`}
            onChange={(e) => set(rows.map((r, j) => (j === i ? e.target.value : r)))}
          />
          <button type="button" disabled={readOnly} aria-label={`Remove ${label} item ${i + 1}`} onClick={() => set(rows.filter((_, j) => j !== i))}>
            Remove
          </button>
        </div>
      ))}
      <button type="button" disabled={readOnly} aria-label={`Add ${label} item`} onClick={() => set([...rows, ''])}>
        Add item
      </button>
    </fieldset>
  );
}

function FieldInput({ field, value, error, onChange }: { field: ConfigField; value: string; error?: string; onChange(v: string): void }) {
  const id = `cfg-${field.path}`;
  const label = field.path.split('.').slice(1).join('.') || field.path;
  const helpId = `${id}-help`;
  const described = error ? `${id}-err ${helpId}` : helpId;
  const readOnly = field.overridden;
  const errorText = error ? (
    <span id={`${id}-err`} className="field-error" data-testid={`error-${field.path}`}>
      {error}
    </span>
  ) : null;
  if (field.kind === 'list') {
    return (
      <div className={`field${readOnly ? ' field-pinned' : ''}`}>
        <ListInput field={field} label={label} value={value} describedBy={described} onChange={onChange} />
        {errorText}
        <FieldHelp field={field} id={helpId} />
      </div>
    );
  }
  return (
    <div className={`field${readOnly ? ' field-pinned' : ''}`}>
      <label htmlFor={id}>{label}</label>
      {field.kind === 'boolean' ? (
        <select id={id} value={value} disabled={readOnly} onChange={(e) => onChange(e.target.value)} aria-invalid={error ? true : undefined} aria-describedby={described} data-path={field.path}>
          <option value="true">true</option>
          <option value="false">false</option>
        </select>
      ) : (
        <input
          id={id}
          type={field.secret ? 'password' : 'text'}
          inputMode={field.kind === 'number' ? 'decimal' : undefined}
          value={value}
          readOnly={readOnly}
          placeholder={field.secret ? `${field.original} (unchanged)` : undefined}
          autoComplete="off"
          onChange={(e) => onChange(e.target.value)}
          aria-invalid={error ? true : undefined}
          aria-describedby={described}
          data-path={field.path}
        />
      )}
      {errorText}
      <FieldHelp field={field} id={helpId} />
    </div>
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
          <div className="form-grid config-grid">
            {fields.map((f) => (
              <FieldInput key={f.path} field={f} value={st.draft[f.path] ?? ''} error={st.fieldErrors[f.path]} onChange={(v) => config.getState().setField(f.path, v)} />
            ))}
          </div>
        </section>
      ))}
    </>
  );
}
