import { useState, type FormEvent } from 'react';
import { useStore } from 'zustand';
import { useApp, useEveryTick } from '../../app/context.js';
import { Badge, Empty, ErrorText, NotAvailable } from '../../app/components.js';
import { StepChart } from '../../lib/Chart.js';
import { duration, num } from '../../lib/format.js';
import { TERMINAL, type TrainingForm } from './store.js';

const FIELDS: Array<{ key: keyof TrainingForm; label: string; placeholder?: string }> = [
  { key: 'baseModel', label: 'Base model', placeholder: 'local model id or path' },
  { key: 'datasetPath', label: 'Dataset path', placeholder: '/path/to/data.jsonl' },
  { key: 'outputDir', label: 'Output directory', placeholder: '/path/to/output' },
  { key: 'epochs', label: 'Epochs' },
  { key: 'learningRate', label: 'Learning rate' },
  { key: 'batchSize', label: 'Batch size' },
  { key: 'loraRank', label: 'LoRA rank (optional)' },
  { key: 'maxSeqLength', label: 'Max sequence length (optional)' },
];

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
            {FIELDS.map((f) => (
              <label key={f.key}>
                {f.label}
                <input
                  value={st.form[f.key]}
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
                {num(s.progress?.loss, 4)} · elapsed {duration(s.elapsedTimeSeconds)} · ETA {duration(s.estimatedTimeRemainingSeconds)}
              </p>
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
