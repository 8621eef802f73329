import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

/** The `training` section of config.json. */
export const TrainingConfig = Type.Object(
  {
    backend: Type.Union([Type.Literal('llama'), Type.Literal('command')], { default: 'llama', description: '`llama`: the native trainer built against node-llama-cpp\'s llama.cpp (LoRA on any GGUF, or full fine-tuning of F32 tensors; see docs/training.md). `command`: an external trainer speaking the same JSON-lines protocol.' }),
    command: Type.Object(
      {
        executable: Type.String({ default: '', description: 'External trainer of the `command` backend.' }),
        args: Type.Array(Type.String(), { default: [], description: 'Arguments before the job config path.' }),
      },
      { additionalProperties: false, default: {}, description: 'The `command` backend: executable and arguments; the job\'s config JSON path is appended (also in `$TRAINING_CONFIG`).' },
    ),
    threads: Type.Integer({ default: 0, minimum: 0, maximum: 1024, description: 'CPU threads for the llama trainer; 0 = available cores. On a busy machine 1 can be much faster (llama.cpp\'s threads spin-wait).' }),
    gpu: Type.Union([Type.Literal('auto'), Type.Literal('cuda'), Type.Literal('cpu')], { default: 'auto', description: '`auto`: CUDA build of the trainer when an NVIDIA driver is present, else CPU.' }),
    gpuId: Type.Integer({ default: 0, minimum: 0, maximum: 64, description: 'GPU whose lock (`gpu_lock:<id>`) a job holds.' }),
    enginePolicy: Type.Union([Type.Literal('unload'), Type.Literal('cpu'), Type.Literal('keep')], { default: 'unload', description: 'What the engine does with its models while a job holds the GPU: `unload` them (requests wait up to engine.loadWaitSeconds for the job to end), serve on the `cpu` meanwhile, or `keep` them.' }),
    validationSplit: Type.Number({ default: 0.1, minimum: 0, maximum: 0.9, description: 'Share of the dataset\'s samples held out for validation loss (llama backend).' }),
    trainerDir: Type.String({ default: '', description: 'Where the native trainer is built (cache); empty = `DATA_DIR/trainer`.' }),
    allowedRoots: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'Extra absolute directories (besides the data dir) that datasetPath, outputDir and baseModel may name.' }),
    maxDatasetUploadBytes: Type.Integer({ default: 512 * 1024 * 1024, minimum: 1, maximum: 64 * 1024 * 1024 * 1024, description: 'Largest dataset file `POST /api/v1/training/datasets` accepts, in bytes (default 512 MiB).' }),
    cancelGraceSeconds: Type.Number({ default: 10, minimum: 0, maximum: 600, description: 'Seconds between SIGTERM and SIGKILL when a job is cancelled.' }),
    heartbeatIntervalSeconds: Type.Number({ default: 15, minimum: 1, maximum: 3600, description: 'Seconds between heartbeats of a running job (contract §7.4: 15).' }),
    lockRetrySeconds: Type.Number({ default: 5, minimum: 0.1, maximum: 3600, description: 'Seconds between attempts to take the GPU lock while a queued job waits for it.' }),
  },
  {
    additionalProperties: false,
    default: {},
    description: 'Fine-tuning jobs, one at a time per GPU, each in its own child process (see docs/training.md).',
  },
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
