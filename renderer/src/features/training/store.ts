import { createStore } from 'zustand/vanilla';
import type { TrainingList, TrainingStartRequest, TrainingStatus } from '../../../../shared/client/apiTypes.js';
import { ApiError, type ConsoleClient } from '../../../../shared/client/consoleClient.js';
import type { DatasetDetails, DatasetSummary } from '../../../../shared/contracts/datasets.js';
import { classify, type Availability } from '../../lib/resource.js';
import { StartTrainingRequest } from '../../../../shared/contracts/training.js';
import { parseWithDefaults } from '../../../../shared/contracts/validate.js';
import { errorText, fieldMessage } from '../../lib/format.js';

export interface TrainingForm {
  baseModel: string;
  datasetPath: string;
  outputDir: string;
  epochs: string;
  learningRate: string;
  batchSize: string;
  loraRank: string;
  maxSeqLength: string;
  /** '' = the server decides (LoRA unless the base is all F32), or `lora` / `full`. */
  method: '' | 'lora' | 'full';
  loraAlpha: string;
  /** LoRA target modules (Hugging Face names); empty = the server's default (q_proj, v_proj). */
  targetModules: string[];
}

/** The target modules the form offers (the server maps them to the model's GGUF weights). */
export const TARGET_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'output'] as const;

export type LossPoint = { step: number; loss: number; validationLoss?: number | null } & Record<string, number | null | undefined>;

export interface TrainingState {
  availability: Availability;
  error: string | null;
  jobs: TrainingList['jobs'];
  selected: string | null;
  status: TrainingStatus | null;
  loss: LossPoint[];
  /** The selected job's log lines (incremental). */
  logs: string[];
  form: TrainingForm;
  fieldErrors: Record<string, string>;
  /** Uploaded datasets (`GET /api/v1/training/datasets`); loaded by `loadDatasets()`. */
  datasets: DatasetSummary[];
  /** The chosen uploaded dataset's details and preview. */
  datasetPreview: DatasetDetails | null;
  uploading: boolean;
  /** The last upload's error, with its bad rows (one per line). */
  uploadError: string | null;
  refresh(): Promise<void>;
  select(jobId: string | null): Promise<void>;
  setField(key: keyof TrainingForm, value: string): void;
  /** Adds or removes a LoRA target module. */
  toggleTarget(module: string, on: boolean): void;
  /** Validates, then starts; server-side field errors land in `fieldErrors`. */
  start(): Promise<string | null>;
  cancel(jobId: string): Promise<void>;
  loadDatasets(): Promise<void>;
  /** Picks an uploaded dataset (sets the dataset path to `datasets/<name>`) and loads its preview; `null` clears. */
  chooseDataset(name: string | null): Promise<void>;
  /** Uploads a file; on success it becomes the chosen dataset. */
  upload(file: Blob, filename: string): Promise<boolean>;
}

/** The dataset path a training request uses for an uploaded dataset (relative = to the data dir). */
export function uploadedDatasetPath(name: string): string {
  return `datasets/${name}`;
}

/** "12 rows · 10 chat, 2 text" */
export function describeDataset(d: Pick<DatasetSummary, 'rows' | 'shapes'>): string {
  const names: Record<keyof DatasetSummary['shapes'], string> = { chat: 'chat', promptCompletion: 'prompt/completion', text: 'text' };
  const parts = (Object.keys(names) as Array<keyof DatasetSummary['shapes']>).filter((k) => d.shapes[k] > 0).map((k) => `${d.shapes[k]} ${names[k]}`);
  return `${d.rows} ${d.rows === 1 ? 'row' : 'rows'}${parts.length ? ` · ${parts.join(', ')}` : ''}`;
}

export const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

const LABELS: Record<keyof TrainingForm, string> = {
  baseModel: 'Base model',
  datasetPath: 'Dataset path',
  outputDir: 'Output directory',
  epochs: 'Epochs',
  learningRate: 'Learning rate',
  batchSize: 'Batch size',
  loraRank: 'LoRA rank',
  maxSeqLength: 'Max sequence length',
  method: 'Method',
  loraAlpha: 'LoRA alpha',
  targetModules: 'Target modules',
};

/**
 * The server's own check of the request the form sends (the one `validate()` against contract
 * §4.1's schema, defaults filled), keyed by form field. The server validates again.
 */
export function validateTrainingForm(f: TrainingForm): Record<string, string> {
  const parsed = parseWithDefaults(StartTrainingRequest, formToRequest(f));
  const errors: Record<string, string> = {};
  if (parsed.ok) return errors;
  for (const d of parsed.details) {
    const key = FIELD_MAP[d.field ?? ''] ?? (d.field as keyof TrainingForm);
    errors[key] ??= fieldMessage(d, LABELS[key] ?? d.field);
  }
  return errors;
}

export function formToRequest(f: TrainingForm): TrainingStartRequest {
  const hyper: NonNullable<TrainingStartRequest['hyperParams']> = {};
  if (f.epochs.trim()) hyper.epochs = Number(f.epochs);
  if (f.learningRate.trim()) hyper.learningRate = Number(f.learningRate);
  if (f.batchSize.trim()) hyper.batchSize = Number(f.batchSize);
  if (f.loraRank.trim()) hyper.loraRank = Number(f.loraRank);
  if (f.maxSeqLength.trim()) hyper.maxSeqLength = Number(f.maxSeqLength);
  if (f.method) hyper.method = f.method;
  // LoRA values go in loraConfig (which also makes LoRA the method when none is chosen).
  const lora: NonNullable<TrainingStartRequest['loraConfig']> = {};
  if (f.method !== 'full') {
    if (f.loraAlpha.trim()) lora.loraAlpha = Number(f.loraAlpha);
    if (f.targetModules.length > 0) lora.targetModules = [...f.targetModules];
  }
  return {
    baseModel: f.baseModel.trim(),
    datasetPath: f.datasetPath.trim(),
    outputDir: f.outputDir.trim(),
    ...(Object.keys(hyper).length ? { hyperParams: hyper } : {}),
    ...(Object.keys(lora).length ? { loraConfig: lora } : {}),
  };
}

const FIELD_MAP: Record<string, keyof TrainingForm> = {
  'hyperParams.epochs': 'epochs',
  'hyperParams.learningRate': 'learningRate',
  'hyperParams.batchSize': 'batchSize',
  'hyperParams.loraRank': 'loraRank',
  'hyperParams.maxSeqLength': 'maxSeqLength',
  'hyperParams.method': 'method',
  'loraConfig.loraAlpha': 'loraAlpha',
  'loraConfig.targetModules': 'targetModules',
};

/** Adds new loss points (by step) and attaches validation losses to their steps; keeps the last 5000. */
export function mergeLoss(
  current: LossPoint[],
  points: Array<{ step: number; loss: number }>,
  validation: Array<{ step: number; valLoss: number }>,
): LossPoint[] {
  const byStep = new Map<number, LossPoint>(current.map((p) => [p.step, p]));
  for (const p of points) byStep.set(p.step, { ...(byStep.get(p.step) ?? {}), step: p.step, loss: p.loss });
  for (const v of validation) {
    const existing = byStep.get(v.step);
    if (existing) byStep.set(v.step, { ...existing, validationLoss: v.valLoss });
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step).slice(-5000);
}

export function createTrainingStore(client: ConsoleClient) {
  let lastLogId = 0;
  return createStore<TrainingState>()((set, get) => ({
    availability: 'unknown',
    error: null,
    jobs: [],
    selected: null,
    status: null,
    loss: [],
    logs: [],
    form: { baseModel: '', datasetPath: '', outputDir: '', epochs: '3', learningRate: '0.0002', batchSize: '4', loraRank: '', maxSeqLength: '', method: '', loraAlpha: '', targetModules: [] },
    fieldErrors: {},
    datasets: [],
    datasetPreview: null,
    uploading: false,
    uploadError: null,
    async refresh() {
      try {
        const list = await client.trainingList();
        set({ availability: 'ok', error: null, jobs: list.jobs });
      } catch (err) {
        set(classify(err));
        return;
      }
      const id = get().selected;
      if (!id) return;
      try {
        const prev = get();
        const afterStep = prev.loss.length ? (prev.loss[prev.loss.length - 1] as LossPoint).step : -1;
        const [status, lossR, logsR] = await Promise.all([
          client.trainingStatus(id),
          client.trainingLoss(id, afterStep).catch(() => null),
          client.trainingLogs(id, lastLogId).catch(() => null),
        ]);
        if (get().selected !== id) return;
        let loss = prev.loss;
        if (lossR) loss = mergeLoss(loss, lossR.points, lossR.validation);
        let logs = get().logs;
        if (logsR && logsR.lines.length) {
          lastLogId = logsR.lines[logsR.lines.length - 1]?.id ?? lastLogId;
          logs = [...logs, ...logsR.lines.map((l) => `${l.at} ${l.level.toUpperCase()} ${l.message}`)].slice(-1000);
        }
        set({ status, loss, logs });
      } catch (err) {
        set({ error: errorText(err) });
      }
    },
    async select(jobId) {
      lastLogId = 0;
      set({ selected: jobId, status: null, loss: [], logs: [] });
      if (jobId) await get().refresh();
    },
    setField(key, value) {
      const fieldErrors = { ...get().fieldErrors };
      delete fieldErrors[key];
      set({ form: { ...get().form, [key]: value }, fieldErrors });
    },
    toggleTarget(module, on) {
      const current = get().form.targetModules.filter((m) => m !== module);
      const fieldErrors = { ...get().fieldErrors };
      delete fieldErrors.targetModules;
      set({ form: { ...get().form, targetModules: on ? [...current, module] : current }, fieldErrors });
    },
    async start() {
      const errors = validateTrainingForm(get().form);
      set({ fieldErrors: errors });
      if (Object.keys(errors).length > 0) return 'Fix the highlighted fields.';
      try {
        const r = await client.startTraining(formToRequest(get().form));
        await get().select(r.jobId);
        return null;
      } catch (err) {
        if (err instanceof ApiError && err.fields.length > 0) {
          const fe: Record<string, string> = {};
          for (const f of err.fields) {
            const key = FIELD_MAP[f.field] ?? f.field;
            fe[key] = fe[key] ? `${fe[key]}; ${f.message}` : f.message;
          }
          set({ fieldErrors: fe });
        }
        return errorText(err);
      }
    },
    async loadDatasets() {
      try {
        const { datasets } = await client.trainingDatasets();
        set({ datasets });
      } catch (err) {
        set({ error: errorText(err) });
      }
    },
    async chooseDataset(name) {
      if (name === null) {
        set({ datasetPreview: null });
        return;
      }
      get().setField('datasetPath', uploadedDatasetPath(name));
      try {
        const details = await client.trainingDataset(name);
        if (get().form.datasetPath === uploadedDatasetPath(name)) set({ datasetPreview: details });
      } catch (err) {
        set({ datasetPreview: null, error: errorText(err) });
      }
    },
    async upload(file, filename) {
      set({ uploading: true, uploadError: null });
      try {
        const details = await client.uploadTrainingDataset(file, filename);
        set({ uploading: false });
        await get().loadDatasets();
        get().setField('datasetPath', uploadedDatasetPath(details.name));
        set({ datasetPreview: details });
        return true;
      } catch (err) {
        const rows = err instanceof ApiError ? err.fields.map((f) => f.message) : [];
        set({ uploading: false, uploadError: [errorText(err), ...rows].join('\n') });
        return false;
      }
    },
    async cancel(jobId) {
      try {
        await client.cancelTraining(jobId);
      } catch (err) {
        set({ error: errorText(err) });
      }
      await get().refresh();
    },
  }));
}
export type TrainingStore = ReturnType<typeof createTrainingStore>;
