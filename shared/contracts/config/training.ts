import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

/** The `training` section of config.json. */
export const TrainingConfig = Type.Object(
  {
    /**
     * `llama`: the native trainer built against node-llama-cpp's llama.cpp (full fine-tuning of F32
     * tensors, no LoRA). `command`: an external trainer speaking the same JSON-lines protocol.
     */
    backend: Type.Union([Type.Literal('llama'), Type.Literal('command')], { default: 'llama' }),
    /** The `command` backend: executable and arguments; the job's config JSON path is appended. */
    command: Type.Object(
      {
        executable: Type.String({ default: '' }),
        args: Type.Array(Type.String(), { default: [] }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** CPU threads for the llama trainer; 0 = available cores. On a busy machine fewer can be faster. */
    threads: Type.Integer({ default: 0, minimum: 0, maximum: 1024 }),
    /** `auto`: CUDA build of the trainer when an NVIDIA driver is present, else CPU. */
    gpu: Type.Union([Type.Literal('auto'), Type.Literal('cuda'), Type.Literal('cpu')], { default: 'auto' }),
    /** GPU whose lock (`gpu_lock:<id>`) a job holds. */
    gpuId: Type.Integer({ default: 0, minimum: 0, maximum: 64 }),
    /**
     * What the engine does with its models while a job holds the GPU: `unload` them (requests wait
     * up to engine.loadWaitSeconds for the job to end), serve on the `cpu` meanwhile, or `keep` them.
     */
    enginePolicy: Type.Union([Type.Literal('unload'), Type.Literal('cpu'), Type.Literal('keep')], { default: 'unload' }),
    /** Share of the dataset's samples held out for validation loss (llama backend). */
    validationSplit: Type.Number({ default: 0.1, minimum: 0, maximum: 0.9 }),
    /** Where the native trainer is built (cache); empty = `DATA_DIR/trainer`. */
    trainerDir: Type.String({ default: '' }),
    /** Extra absolute directories (besides the data dir) that datasetPath, outputDir and baseModel may name. */
    allowedRoots: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
    /** Largest dataset file `POST /api/v1/training/datasets` accepts, in bytes (default 512 MiB). */
    maxDatasetUploadBytes: Type.Integer({ default: 512 * 1024 * 1024, minimum: 1, maximum: 64 * 1024 * 1024 * 1024 }),
    /** Seconds between SIGTERM and SIGKILL when a job is cancelled. */
    cancelGraceSeconds: Type.Number({ default: 10, minimum: 0, maximum: 600 }),
    /** Seconds between heartbeats of a running job (contract §7.4: 15). */
    heartbeatIntervalSeconds: Type.Number({ default: 15, minimum: 1, maximum: 3600 }),
    /** Seconds between attempts to take the GPU lock while a queued job waits for it. */
    lockRetrySeconds: Type.Number({ default: 5, minimum: 0.1, maximum: 3600 }),
  },
  { additionalProperties: false, default: {} },
);
export type TrainingConfig = Static<typeof TrainingConfig>;

export const trainingSection: ConfigSection<typeof TrainingConfig> = {
  schema: TrainingConfig,
  env: {
    CONSOLE_TRAINING_BACKEND: 'backend',
    CONSOLE_TRAINING_THREADS: 'threads',
    CONSOLE_TRAINING_GPU: 'gpu',
    CONSOLE_TRAINING_COMMAND: 'command.executable',
    CONSOLE_TRAINING_ALLOWED_ROOTS: 'allowedRoots',
  },
};
