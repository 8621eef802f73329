import { Type, type Static } from '@sinclair/typebox';

/**
 * Training wire schemas (contract §4, plus the loss/logs/events extensions). Bodies are camelCase.
 * The HTTP adapter validates every request with these and lists every bad field; the dashboard
 * uses the same types for its forms and charts.
 */

export const TrainingMethod = Type.Union([Type.Literal('lora'), Type.Literal('full')]);
export type TrainingMethod = Static<typeof TrainingMethod>;

/** `hyperParams` of §4.1 with the seed's defaults. */
export const TrainingHyperParams = Type.Object(
  {
    batchSize: Type.Integer({ minimum: 1, maximum: 4096, default: 4 }),
    learningRate: Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 2e-4 }),
    epochs: Type.Integer({ minimum: 1, maximum: 10_000, default: 3 }),
    maxSeqLength: Type.Integer({ minimum: 1, maximum: 1_048_576, default: 2048 }),
    loraRank: Type.Integer({ minimum: 1, maximum: 4096, default: 64 }),
    loraAlpha: Type.Integer({ minimum: 1, maximum: 65_536, default: 16 }),
    loraDropout: Type.Number({ minimum: 0, exclusiveMaximum: 1, default: 0.05 }),
    saveSteps: Type.Integer({ minimum: 1, default: 100 }),
    evalSteps: Type.Integer({ minimum: 1, default: 100 }),
    /**
     * `lora` trains an adapter on a frozen base of any type; `full` updates the base's F32 tensors.
     * Absent: `lora` when `loraConfig` is given or the base's weights are not F32, else `full`.
     */
    method: Type.Optional(TrainingMethod),
    /** Learning-rate schedule after the warm-up: constant, or linear / cosine decay to 0 at the last step. */
    lrScheduler: Type.Union([Type.Literal('constant'), Type.Literal('linear'), Type.Literal('cosine')], { default: 'linear' }),
    /** Optimizer steps of linear warm-up from 0 to `learningRate`. */
    warmupSteps: Type.Integer({ minimum: 0, maximum: 1_000_000, default: 0 }),
    /** AdamW decoupled weight decay. */
    weightDecay: Type.Number({ minimum: 0, maximum: 1, default: 0 }),
  },
  { additionalProperties: false, default: {} },
);
export type TrainingHyperParams = Static<typeof TrainingHyperParams>;

export const LoraBias = Type.Union([Type.Literal('none'), Type.Literal('all'), Type.Literal('lora_only')]);

/** `loraConfig` of §4.1. `r`/`loraAlpha`/`loraDropout` win over the hyperParams' LoRA values when present. */
export const LoraConfig = Type.Object(
  {
    r: Type.Optional(Type.Integer({ minimum: 1, maximum: 4096 })),
    loraAlpha: Type.Optional(Type.Integer({ minimum: 1, maximum: 65_536 })),
    loraDropout: Type.Optional(Type.Number({ minimum: 0, exclusiveMaximum: 1 })),
    targetModules: Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { minItems: 1, maxItems: 256, default: ['q_proj', 'v_proj'] }),
    bias: Type.Union([Type.Literal('none'), Type.Literal('all'), Type.Literal('lora_only')], { default: 'none' }),
  },
  { additionalProperties: false },
);
export type LoraConfig = Static<typeof LoraConfig>;

/**
 * `POST /api/v1/training/start` (§4.1). Paths are untrusted:
 * - `baseModel`: a model id of the models dir (`tiny` for `models/tiny.gguf`), or a path to a `.gguf`
 *   inside the data dir or `training.allowedRoots`; the `command` backend also passes other ids
 *   (e.g. Hugging Face `org/name`) through to its trainer.
 * - `datasetPath`: an existing file inside the data dir or `training.allowedRoots` (relative = to the
 *   data dir); UTF-8 text, or `.jsonl` with a `text` string per line.
 * - `outputDir`: relative = under `DATA_DIR/training/outputs/`; absolute = inside the data dir or
 *   `training.allowedRoots`. Created when missing.
 */
export const StartTrainingRequest = Type.Object(
  {
    baseModel: Type.String({ minLength: 1, maxLength: 1024 }),
    outputDir: Type.String({ minLength: 1, maxLength: 1024 }),
    datasetPath: Type.String({ minLength: 1, maxLength: 1024 }),
    hyperParams: TrainingHyperParams,
    loraConfig: Type.Optional(LoraConfig),
  },
  { additionalProperties: false },
);
export type StartTrainingRequest = Static<typeof StartTrainingRequest>;
/** What a client may send: everything with a default is optional. */
export type StartTrainingInput = Omit<StartTrainingRequest, 'hyperParams' | 'loraConfig'> & {
  hyperParams?: Partial<TrainingHyperParams>;
  loraConfig?: Partial<LoraConfig>;
};

export const TrainingStatusValue = Type.Union([
  Type.Literal('queued'),
  Type.Literal('running'),
  Type.Literal('paused'),
  Type.Literal('completed'),
  Type.Literal('failed'),
  Type.Literal('cancelled'),
]);
export type TrainingStatusValue = Static<typeof TrainingStatusValue>;
export const TERMINAL_STATUSES: readonly TrainingStatusValue[] = ['completed', 'failed', 'cancelled'];

export const StartTrainingResponse = Type.Object({
  jobId: Type.String(),
  status: TrainingStatusValue,
  message: Type.String(),
  createdAt: Type.String(),
});
export type StartTrainingResponse = Static<typeof StartTrainingResponse>;

/** `progress` of §4.2 (`loss` absent until the first step; `valLoss`/`accuracy` are extensions). */
export const TrainingProgress = Type.Object({
  currentEpoch: Type.Integer(),
  currentStep: Type.Integer(),
  totalSteps: Type.Integer(),
  loss: Type.Optional(Type.Number()),
  learningRate: Type.Number(),
  valLoss: Type.Optional(Type.Number()),
  accuracy: Type.Optional(Type.Number()),
});
export type TrainingProgress = Static<typeof TrainingProgress>;

export const TrainingBackendName = Type.Union([Type.Literal('llama'), Type.Literal('command')]);
export type TrainingBackendName = Static<typeof TrainingBackendName>;

/** Where a finished job's model went, and where it came from. */
export const TrainingResult = Type.Object({
  modelId: Type.String(),
  modelPath: Type.String(),
  adapter: Type.Optional(Type.String()),
  lineage: Type.Optional(
    Type.Object({
      baseModel: Type.String(),
      baseSha256: Type.String(),
      datasetSha256: Type.String(),
      method: TrainingMethod,
      trainableParams: Type.Integer(),
      hyperParams: Type.Record(Type.String(), Type.Unknown()),
      finalLoss: Type.Optional(Type.Number()),
      finalValLoss: Type.Optional(Type.Number()),
      completedAt: Type.String(),
    }),
  ),
});
export type TrainingResult = Static<typeof TrainingResult>;

/** `GET /api/v1/training/status/{jobId}` (§4.2) plus extensions (`baseModel`, `outputDir`, `backend`, `result`). */
export const TrainingJobStatus = Type.Object({
  jobId: Type.String(),
  status: TrainingStatusValue,
  progress: TrainingProgress,
  elapsedTimeSeconds: Type.Integer(),
  estimatedTimeRemainingSeconds: Type.Integer(),
  createdAt: Type.String(),
  startedAt: Type.Optional(Type.String()),
  completedAt: Type.Optional(Type.String()),
  error: Type.Optional(Type.String()),
  baseModel: Type.String(),
  outputDir: Type.String(),
  backend: TrainingBackendName,
  /** What the job trains (llama backend): the method and how many parameters the optimizer updates. */
  method: Type.Optional(TrainingMethod),
  trainableParams: Type.Optional(Type.Integer()),
  /**
   * The trained model, once completed: `modelId` is listed by `GET /api/v1/models` and usable in chat.
   * A LoRA job's `modelId` is `<base>+<adapter>` (the base with the adapter applied); `adapter` names it.
   */
  result: Type.Optional(TrainingResult),
});
export type TrainingJobStatus = Static<typeof TrainingJobStatus>;

export const CancelTrainingResponse = Type.Object({ jobId: Type.String(), status: TrainingStatusValue, message: Type.String() });
export type CancelTrainingResponse = Static<typeof CancelTrainingResponse>;

/** `GET /api/v1/training/list` query (§4.4); `limit` is clamped to 1..1000. */
export const ListTrainingQuery = Type.Object(
  {
    status: Type.Optional(TrainingStatusValue),
    limit: Type.Integer({ default: 100 }),
    // A maximum, so `?offset=1e999` (coerced to Infinity) or 1e300 is a 400, not an SQL error (500).
    offset: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: 0 }),
  },
  { additionalProperties: false },
);
export type ListTrainingQuery = Static<typeof ListTrainingQuery>;

export const TrainingJobSummary = Type.Object({
  jobId: Type.String(),
  baseModel: Type.String(),
  status: TrainingStatusValue,
  createdAt: Type.String(),
  completedAt: Type.Union([Type.String(), Type.Null()]),
});
export type TrainingJobSummary = Static<typeof TrainingJobSummary>;

export const ListTrainingResponse = Type.Object({
  jobs: Type.Array(TrainingJobSummary),
  total: Type.Integer(),
  limit: Type.Integer(),
  offset: Type.Integer(),
});
export type ListTrainingResponse = Static<typeof ListTrainingResponse>;

export const JobIdParams = Type.Object({ jobId: Type.String({ minLength: 1, maxLength: 100 }) });
export type JobIdParams = Static<typeof JobIdParams>;

/** One training step's loss (running mean over the epoch so far, as llama.cpp reports it). */
export const LossPoint = Type.Object({
  step: Type.Integer(),
  epoch: Type.Integer(),
  loss: Type.Number(),
  accuracy: Type.Optional(Type.Number()),
  /** Unix ms. */
  at: Type.Number(),
});
export type LossPoint = Static<typeof LossPoint>;

/** Validation loss measured at the end of an epoch (at `step`). */
export const ValidationPoint = Type.Object({
  step: Type.Integer(),
  epoch: Type.Integer(),
  valLoss: Type.Number(),
  valAccuracy: Type.Optional(Type.Number()),
  at: Type.Number(),
});
export type ValidationPoint = Static<typeof ValidationPoint>;

/** `GET /api/v1/training/{jobId}/loss`. `afterStep` returns only newer points (incremental charts). */
export const LossQuery = Type.Object({ afterStep: Type.Integer({ minimum: -1, default: -1 }) }, { additionalProperties: false });
export type LossQuery = Static<typeof LossQuery>;
export const LossResponse = Type.Object({
  jobId: Type.String(),
  points: Type.Array(LossPoint),
  validation: Type.Array(ValidationPoint),
});
export type LossResponse = Static<typeof LossResponse>;

export const LogLevel = Type.Union([Type.Literal('info'), Type.Literal('warn'), Type.Literal('error')]);
/** One line of a job's log: status changes, epoch summaries, checkpoints, the trainer's stderr. */
export const TrainingLogLine = Type.Object({ id: Type.Integer(), at: Type.String(), level: LogLevel, message: Type.String() });
export type TrainingLogLine = Static<typeof TrainingLogLine>;
/** `GET /api/v1/training/{jobId}/logs`: lines after `afterId`, oldest first. */
export const LogsQuery = Type.Object(
  { afterId: Type.Integer({ minimum: 0, default: 0 }), limit: Type.Integer({ minimum: 1, maximum: 5000, default: 500 }) },
  { additionalProperties: false },
);
export type LogsQuery = Static<typeof LogsQuery>;
export const LogsResponse = Type.Object({ jobId: Type.String(), lines: Type.Array(TrainingLogLine) });
export type LogsResponse = Static<typeof LogsResponse>;

/**
 * Events of `GET /api/v1/training/{jobId}/events` (SSE, `event: <type>` + `data: <json>`):
 * `status` (the whole TrainingJobStatus, first on connect and on every change), `progress`
 * (a LossPoint), `validation` (a ValidationPoint), `log` (a TrainingLogLine). The stream ends after
 * the `status` event of a terminal state.
 */
export type TrainingEvent =
  | { type: 'status'; data: TrainingJobStatus }
  | { type: 'progress'; data: LossPoint }
  | { type: 'validation'; data: ValidationPoint }
  | { type: 'log'; data: TrainingLogLine };

/** `GET /api/v1/training/info`: what the configured backend can do, for forms (e.g. hide LoRA fields). */
export const TrainingInfo = Type.Object({
  backend: TrainingBackendName,
  /** False for the llama backend: an explicit `loraConfig` is refused. */
  supportsLora: Type.Boolean(),
  gpuId: Type.Integer(),
  validationSplit: Type.Number(),
  /** The hyperParams defaults (§4.1). */
  defaults: TrainingHyperParams,
});
export type TrainingInfo = Static<typeof TrainingInfo>;

/** A cheap view for the dashboard's 1 Hz snapshot. */
export interface TrainingSnapshot {
  queued: number;
  running: string | null;
  jobs: Array<{ jobId: string; status: TrainingStatusValue; currentStep: number; totalSteps: number; loss?: number; valLoss?: number }>;
}
