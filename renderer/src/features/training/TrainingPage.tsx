import { useEffect, useRef, useState, type FormEvent } from 'react';
import { useStore } from 'zustand';
import { useApp, useEveryTick } from '../../app/context.js';
import { Badge, Empty, ErrorText, NotAvailable } from '../../app/components.js';
import { StepChart } from '../../lib/Chart.js';
import { duration, num } from '../../lib/format.js';
import { TARGET_MODULES, TERMINAL, describeDataset, uploadedDatasetPath, type TrainingForm, type TrainingStore } from './store.js';

const FIELDS: Array<{ key: Exclude<keyof TrainingForm, 'targetModules' | 'method'>; label: string; placeholder?: string }> = [
  { key: 'baseModel', label: 'Base model', placeholder: 'local model id or path' },
  { key: 'outputDir', label: 'Output directory', placeholder: '/path/to/output' },
  { key: 'epochs', label: 'Epochs' },
  { key: 'learningRate', label: 'Learning rate' },
  { key: 'batchSize', label: 'Batch size' },
  { key: 'loraRank', label: 'LoRA rank (optional)' },
  { key: 'loraAlpha', label: 'LoRA alpha (optional)' },
  { key: 'maxSeqLength', label: 'Max sequence length (optional)' },
];

/** Method and LoRA target modules (the server maps Hugging Face names to the model's weights). */
function MethodFields({ training }: { training: TrainingStore }) {
  const st = useStore(training);
  return (
    <>
      <label>
        Method
        <select value={st.form.method} onChange={(e) => training.getState().setField('method', e.target.value)} aria-describedby="err-method">
          <option value="">auto (LoRA unless the base is all F32)</option>
          <option value="lora">LoRA (base frozen, any type)</option>
          <option value="full">full fine-tune (F32 weights only)</option>
        </select>
        <span id="err-method" className="field-error">{st.fieldErrors.method}</span>
      </label>
      <fieldset style={{ gridColumn: '1 / -1', border: 'none', padding: 0, margin: 0 }} disabled={st.form.method === 'full'} aria-describedby="err-targetModules">
        <legend>LoRA target modules (none checked = q_proj, v_proj)</legend>
        <div className="row" style={{ flexWrap: 'wrap', gap: 12 }}>
          {TARGET_MODULES.map((m) => (
            <label key={m} style={{ flexDirection: 'row', alignItems: 'center', gap: 4 }}>
              <input type="checkbox" checked={st.form.targetModules.includes(m)} onChange={(e) => training.getState().toggleTarget(m, e.target.checked)} />
              {m}
            </label>
          ))}
        </div>
        <span id="err-targetModules" className="field-error">{st.fieldErrors.targetModules}</span>
      </fieldset>
    </>
  );
}

/**
 * The dataset: a picker of uploaded datasets (rows, shapes), an upload button, a preview of the
 * chosen one, and the path field, which also takes any other path the console may read.
 */
function DatasetPicker({ training }: { training: TrainingStore }) {
  const st = useStore(training);
  const fileInput = useRef<HTMLInputElement>(null);
  useEffect(() => {
    void training.getState().loadDatasets();
  }, [training]);
  const chosen = st.datasets.find((d) => uploadedDatasetPath(d.name) === st.form.datasetPath.trim());
  const preview = st.datasetPreview && chosen && st.datasetPreview.name === chosen.name ? st.datasetPreview : null;
  // A path typed (or set) to an uploaded dataset loads its preview, once per name.
  const previewRequested = useRef<string | null>(null);
  useEffect(() => {
    if (!chosen || st.datasetPreview?.name === chosen.name || previewRequested.current === chosen.name) return;
    previewRequested.current = chosen.name;
    void training.getState().chooseDataset(chosen.name);
  }, [chosen, st.datasetPreview, training]);
  const onFile = async (files: FileList | null) => {
    const file = files?.[0];
    if (!file) return;
    await training.getState().upload(file, file.name);
    if (fileInput.current) fileInput.current.value = '';
  };
  return (
    <fieldset className="dataset-picker" style={{ gridColumn: '1 / -1', border: 'none', padding: 0, margin: 0 }}>
      <div className="row" style={{ alignItems: 'flex-end', flexWrap: 'wrap', gap: 8 }}>
        <label style={{ flex: '1 1 260px' }}>
          Uploaded dataset
          <select value={chosen?.name ?? ''} onChange={(e) => void training.getState().chooseDataset(e.target.value === '' ? null : e.target.value)}>
            <option value="">{st.datasets.length === 0 ? 'none uploaded yet' : 'choose, or type a path below'}</option>
            {st.datasets.map((d) => (
              <option key={d.name} value={d.name}>
                {d.name} · {describeDataset(d)}
              </option>
            ))}
          </select>
        </label>
        <button type="button" disabled={st.uploading} onClick={() => fileInput.current?.click()}>
          {st.uploading ? 'Uploading…' : 'Upload dataset'}
        </button>
        <input ref={fileInput} type="file" hidden aria-label="Dataset file" accept=".jsonl,.ndjson,.json,.txt,.md" onChange={(e) => void onFile(e.target.files)} />
        <label style={{ flex: '2 1 320px' }}>
          Dataset path
          <input
            value={st.form.datasetPath}
            placeholder="datasets/data.jsonl or /path/to/data.jsonl"
            onChange={(e) => training.getState().setField('datasetPath', e.target.value)}
            aria-invalid={st.fieldErrors.datasetPath ? true : undefined}
            aria-describedby="err-datasetPath"
          />
          <span id="err-datasetPath" className="field-error">{st.fieldErrors.datasetPath}</span>
        </label>
      </div>
      {st.uploadError ? <pre role="alert" className="bad log" aria-label="Upload errors">{st.uploadError}</pre> : null}
      {preview ? (
        <div data-testid="dataset-preview" aria-label={`Preview of ${preview.name}`}>
          <p className="muted">
            {preview.name}: {describeDataset(preview)} · {Math.max(1, Math.round(preview.size / 1024))} KiB · sha256 {preview.sha256.slice(0, 12)}
          </p>
          <pre className="log" tabIndex={0} aria-label="Dataset preview">
            {preview.preview.map((r) => `#${r.at} [${r.shape}]\n${r.text}`).join('\n\n')}
          </pre>
        </div>
      ) : null}
    </fieldset>
  );
}

export default function TrainingPage() {
  const { training, chat, router } = useApp();
  const st = useStore(training);
  const [message, setMessage] = useState<string | null>(null);
  useEveryTick(() => training.getState().refresh());
  if (st.availability === 'missing') return <><h2>Training</h2><NotAvailable service="training service" what="GET /api/v1/training/list" /></>;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setMessage(await training.getState().start());
  };
  const s = st.status;
  const openInChat = (model: string) => {
    chat.getState().setModel(model);
    router.getState().navigate('/chat');
  };
  return (
    <>
      <h2>Training</h2>
      <ErrorText error={st.error} />
      <section className="card" aria-labelledby="new-h">
        <h3 id="new-h">New fine-tuning job</h3>
        <form onSubmit={submit} noValidate>
          <div className="form-grid">
            <DatasetPicker training={training} />
            <MethodFields training={training} />
            {FIELDS.map((f) => (
              <label key={f.key}>
                {f.label}
                <input
                  value={st.form[f.key] as string}
                  placeholder={f.placeholder}
                  onChange={(e) => training.getState().setField(f.key, e.target.value)}
                  aria-invalid={st.fieldErrors[f.key] ? true : undefined}
                  aria-describedby={`err-${f.key}`}
                />
                <span id={`err-${f.key}`} className="field-error">{st.fieldErrors[f.key]}</span>
              </label>
            ))}
          </div>
          <div className="row" style={{ marginTop: 8 }}>
            <button type="submit" className="primary">Start training</button>
            {message ? <span role="alert" className="bad">{message}</span> : null}
          </div>
        </form>
      </section>
      <div className="grid" style={{ gridTemplateColumns: 'minmax(260px, 1fr) 2fr' }}>
        <section className="card" aria-labelledby="jobs-h">
          <h3 id="jobs-h">Jobs</h3>
          {st.jobs.length === 0 ? (
            <Empty title="No training jobs yet">Fill in the form above to fine-tune a local model on your dataset.</Empty>
          ) : (
            <ul style={{ listStyle: 'none', padding: 0, margin: 0 }}>
              {st.jobs.map((j) => (
                <li key={j.jobId}>
                  <button type="button" style={{ width: '100%', textAlign: 'left', marginBottom: 4 }} aria-pressed={st.selected === j.jobId} onClick={() => void training.getState().select(j.jobId)}>
                    {j.jobId} · {j.baseModel} <Badge tone={j.status === 'completed' ? 'ok' : j.status === 'failed' ? 'bad' : 'muted'}>{j.status}</Badge>
                  </button>
                </li>
              ))}
            </ul>
          )}
        </section>
        <section className="card" aria-labelledby="job-h">
          <h3 id="job-h">{s ? `Job ${s.jobId}` : 'Job details'}</h3>
          {!s ? (
            <p className="muted">Select a job to see its progress and loss curve.</p>
          ) : (
            <>
              <p>
                <Badge tone={s.status === 'completed' ? 'ok' : s.status === 'failed' ? 'bad' : 'warn'}>{s.status}</Badge> epoch {s.progress?.currentEpoch ?? '—'} · step {s.progress?.currentStep ?? '—'}/{s.progress?.totalSteps ?? '—'} · loss{' '}
                {num(s.progress?.loss, 4)} · learning rate {s.progress?.learningRate !== undefined ? s.progress.learningRate.toExponential(2) : "—"} · elapsed {duration(s.elapsedTimeSeconds)} · ETA {duration(s.estimatedTimeRemainingSeconds)}
              </p>
              {s.method ? (
                <p className="muted" data-testid="job-method">
                  {s.method === 'lora' ? 'LoRA adapter' : 'full fine-tune'} · {s.trainableParams !== undefined ? s.trainableParams.toLocaleString('en') : '—'} trainable parameters
                  {s.result?.adapter ? ` · served as ${s.result.modelId}` : ''}
                </p>
              ) : null}
              {s.error ? <p className="bad">{s.error}</p> : null}
              <div data-testid="loss-chart" data-points={st.loss.length}>
              <StepChart label="Loss" rows={st.loss} lines={[{ key: 'loss', name: 'training loss', color: 'var(--chart-1)' }, { key: 'validationLoss', name: 'validation loss', color: 'var(--chart-2)' }]} />
              </div>
              <div className="row">
                {!TERMINAL.has(s.status) ? <button type="button" className="danger" onClick={() => void training.getState().cancel(s.jobId)}>Cancel job</button> : null}
                {s.status === 'completed' && s.result ? <button type="button" className="primary" onClick={() => openInChat((s.result as { modelId: string }).modelId)}>Open result in Chat</button> : null}
              </div>
              {st.logs.length ? <pre className="log" tabIndex={0} aria-label="Job log">{st.logs.slice(-200).join('\n')}</pre> : null}
            </>
          )}
        </section>
      </div>
    </>
  );
}
