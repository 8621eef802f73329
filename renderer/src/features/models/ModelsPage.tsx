import { useRef, useState, type FormEvent } from 'react';
import { useStore } from 'zustand';
import { useApp, useEveryTick } from '../../app/context.js';
import { Badge, Empty, ErrorText, NotAvailable } from '../../app/components.js';
import { bytes, duration } from '../../lib/format.js';
import { ACTIVE_DOWNLOAD } from './store.js';

export default function ModelsPage() {
  const { models } = useApp();
  const st = useStore(models);
  const [uri, setUri] = useState('');
  const [uriError, setUriError] = useState<string | null>(null);
  const ticks = useRef(0);
  useEveryTick(async () => {
    // Full refresh every 5 ticks; the downloads every tick while one runs.
    const active = models.getState().downloads.some((d) => ACTIVE_DOWNLOAD.has(d.status));
    if (ticks.current++ % 5 === 0) await models.getState().refresh();
    else if (active) await models.getState().refreshDownloads();
  });

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const err = await models.getState().download(uri);
    setUriError(err);
    if (!err) setUri('');
  };
  const noModels = st.models.length === 0 && st.files.length === 0;
  return (
    <>
      <h2>Models</h2>
      <ErrorText error={st.error} />
      {st.engine === 'missing' && st.library === 'missing' ? <NotAvailable service="engine" what="GET /api/v1/models" /> : null}
      {st.engine === 'ok' || st.library === 'ok' ? (
        noModels ? (
          <Empty title="No model yet: how to get one">
            <ol>
              <li>Pick a recommended model from the catalog below and press Download, or</li>
              <li>paste an <code>hf:owner/repo:quant</code> URI or an https URL of a .gguf file, or</li>
              <li>copy a .gguf file into the console&apos;s <code>models/</code> folder in its data dir; it appears here by its file name.</li>
            </ol>
          </Empty>
        ) : (
          <section className="card" aria-labelledby="local-h">
            <h3 id="local-h">Local models</h3>
            <table>
              <thead>
                <tr><th scope="col">Model</th><th scope="col">Status</th><th scope="col">Size</th><th scope="col">Actions</th></tr>
              </thead>
              <tbody>
                {st.models.map((m) => (
                  <tr key={m.id}>
                    <td>{m.name ?? m.id}<div className="muted">{m.id}</div></td>
                    <td><Badge tone={m.status === 'ready' ? 'ok' : m.status === 'error' ? 'bad' : 'muted'}>{m.status}</Badge></td>
                    <td>{bytes(st.files.find((f) => f.id === m.id)?.sizeBytes)}</td>
                    <td className="row">
                      {m.status === 'ready' || m.status === 'loading' ? (
                        <button type="button" disabled={!!st.busy[`unload:${m.id}`]} onClick={() => void models.getState().unload(m.id)}>Unload</button>
                      ) : (
                        <button type="button" disabled={!!st.busy[`load:${m.id}`]} onClick={() => void models.getState().load(m.id)}>Load</button>
                      )}
                    </td>
                  </tr>
                ))}
                {st.models.length === 0 &&
                  st.files.map((f) => (
                    <tr key={f.id}><td>{f.id}</td><td><Badge tone="muted">file</Badge></td><td>{bytes(f.sizeBytes)}</td><td /></tr>
                  ))}
              </tbody>
            </table>
          </section>
        )
      ) : null}
      {st.library === 'missing' ? (
        <NotAvailable service="model library" what="GET /api/v1/library/downloads" />
      ) : st.library === 'ok' ? (
        <>
          <section className="card" aria-labelledby="dl-h">
            <h3 id="dl-h">Download a model</h3>
            <form className="row" onSubmit={submit}>
              <label style={{ flex: 1 }}>
                Model URI
                <input value={uri} onChange={(e) => setUri(e.target.value)} placeholder="hf:owner/repo:Q4_K_M or https://…/model.gguf" aria-invalid={uriError ? true : undefined} aria-describedby="uri-err" />
              </label>
              <button type="submit" className="primary" style={{ alignSelf: 'flex-end' }}>Download</button>
            </form>
            <span id="uri-err" className="field-error" role={uriError ? 'alert' : undefined}>{uriError}</span>
            {st.downloads.length > 0 ? (
              <table data-testid="downloads">
                <thead>
                  <tr><th scope="col">Download</th><th scope="col">Progress</th><th scope="col">Speed · ETA</th><th scope="col" /></tr>
                </thead>
                <tbody>
                  {st.downloads.map((d) => {
                    const total = d.bytesTotal ?? 0;
                    const got = d.bytesDone;
                    const pctDone = d.progress !== null ? Math.round(d.progress * 100) : undefined;
                    return (
                      <tr key={d.id}>
                        <td>{d.name}<div className="muted">{d.status}{d.error ? `: ${d.error}` : ''}</div></td>
                        <td style={{ minWidth: 160 }}>
                          <progress className="progress" max={100} value={pctDone} aria-label={`Download progress ${d.name}`} />
                          <div className="muted" data-testid="download-bytes">{bytes(got)} / {total ? bytes(total) : '?'}{pctDone !== undefined ? ` (${pctDone}%)` : ''}</div>
                        </td>
                        <td>{d.speedBytesPerSecond ? `${bytes(d.speedBytesPerSecond)}/s` : '—'} · {d.etaSeconds !== null && d.etaSeconds !== undefined ? duration(d.etaSeconds) : '—'}</td>
                        <td>{ACTIVE_DOWNLOAD.has(d.status) ? <button type="button" aria-label={`Cancel ${d.name}`} onClick={() => void models.getState().cancel(d.id)}>Cancel</button> : null}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            ) : null}
          </section>
          <section className="card" aria-labelledby="cat-h">
            <h3 id="cat-h">Catalog</h3>
            {st.catalog.length === 0 ? (
              <p className="muted">The catalog is empty.</p>
            ) : (
              <table>
                <thead>
                  <tr><th scope="col">Model</th><th scope="col">Size</th><th scope="col">Licence</th><th scope="col" /></tr>
                </thead>
                <tbody>
                  {st.catalog.map((c) => (
                    <tr key={c.uri}>
                      <td>{c.name}<div className="muted">{c.description ?? c.uri}</div></td>
                      <td>{bytes(c.sizeBytes)}</td>
                      <td>{c.license ?? '—'}</td>
                      <td>
                        <button type="button" aria-label={`Download ${c.name}`} onClick={async () => setUriError(await models.getState().download(c.uri))}>Download</button>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </section>
        </>
      ) : null}
      {st.engine === 'unknown' && st.library === 'unknown' ? <p className="muted">Loading…</p> : null}
    </>
  );
}
