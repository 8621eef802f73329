import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

/** The `engine` section of config.json. */
export const EngineConfig = Type.Object(
  {
    gpu: Type.Union([Type.Literal('auto'), Type.Literal('cuda'), Type.Literal('vulkan'), Type.Literal('metal'), Type.Literal('false')], {
      default: 'auto',
      description:
        '`auto` (node-llama-cpp\'s detection: CUDA → Vulkan → Metal → CPU), force `cuda`/`vulkan`/`metal`, or `false` for CPU. The backend in use is in /api/v1/health/details (`components.engine.details.backend`).',
    }),
    threads: Type.Integer({
      default: 0,
      minimum: 0,
      maximum: 1024,
      description: 'CPU threads per context; 0 = the cores node-llama-cpp finds useful for math (physical cores). Applies when a model is (re)loaded.',
    }),
    library: Type.Object(
      {
        modelsDir: Type.String({
          default: '',
          description: 'Where model files live; empty = `DATA_DIR/models` (relative paths are taken from the data dir).',
        }),
        hfEndpoint: Type.String({
          default: 'https://huggingface.co',
          pattern: '^https?://',
          description: 'Hugging Face endpoint used to resolve `hf:` URIs (a mirror works; tests use a local server).',
        }),
        hfToken: Type.String({
          default: '',
          description: 'Hugging Face access token for gated repos; sent only to `hfEndpoint` (dropped on redirects to other hosts).',
        }),
        maxConcurrentDownloads: Type.Integer({ default: 2, minimum: 1, maximum: 8, description: 'Downloads running at once; the rest wait, oldest first.' }),
        downloadRetries: Type.Integer({
          default: 5,
          minimum: 0,
          maximum: 100,
          description: 'Automatic Range resumes after a dropped connection without progress, per download (backoff 0.25 s → 10 s).',
        }),
      },
      { additionalProperties: false, default: {}, description: 'The model library: GGUF files on disk, imports and downloads.' },
    ),
    detectOnStart: Type.Boolean({
      default: true,
      description: 'Detect the backend at start-up (in the background) so /api/v1/health/details reports it before the first load.',
    }),
    gpuSelfTest: Type.Boolean({
      default: true,
      description:
        'Before a GPU backend is used, a child process loads a tiny model on it and generates 4 tokens (1–3 s). With `auto`, a backend that fails is skipped for the next one and finally the CPU; a forced backend that fails is an error (a prebuilt CUDA binary the driver cannot run aborts the process that runs it).',
    }),
    parallel: Type.Integer({
      default: 4,
      minimum: 1,
      maximum: 64,
      description: 'Context sequences per loaded model: requests one model serves at once. Applies when a model is (re)loaded.',
    }),
    contextSize: Type.Integer({
      default: 0,
      minimum: 0,
      maximum: 1_048_576,
      description:
        'Tokens of context per sequence; 0 = the model\'s trained context, capped at 4096. A prompt that does not fit gets 400 with the token counts; `max_tokens` is capped at what is left.',
    }),
    gpuLayers: Type.Union([Type.Literal('auto'), Type.Integer({ minimum: 0, maximum: 10_000 })], {
      default: 'auto',
      description: 'Layers offloaded to the GPU; `auto` = as many as fit.',
    }),
    memoryBudgetMb: Type.Integer({
      default: 0,
      minimum: 0,
      description:
        'Memory (MiB) all loaded models may use together (weights + KV cache, estimated from the GGUF before loading); idle models are unloaded least-recently-used first to make room; 0 = only node-llama-cpp\'s own checks.',
    }),
    maxLoadedModels: Type.Integer({
      default: 2,
      minimum: 1,
      maximum: 32,
      description: 'Models loaded at once (the least recently used idle one is unloaded first).',
    }),
    idleTtlSeconds: Type.Integer({
      default: 600,
      minimum: 0,
      description: 'Idle seconds before a model unloads; 0 = never. A request\'s `ttl` overrides it for that model.',
    }),
    queueMaxSize: Type.Integer({
      default: 64,
      minimum: 0,
      maximum: 100_000,
      description: 'Requests that may wait for a sequence (all models, all priorities); beyond it 429 with `Retry-After`.',
    }),
    loadWaitSeconds: Type.Integer({
      default: 120,
      minimum: 0,
      maximum: 86_400,
      description:
        'A request for a model that cannot be loaded yet (loaded models busy, `maxLoadedModels` or the memory budget reached) waits by priority for a loaded model to go idle and be evicted; after this long, 503 with `Retry-After`.',
    }),
    streamChunkSize: Type.Integer({
      default: 4,
      minimum: 1,
      maximum: 256,
      description: 'Tokens per chunk on /api/v1/inference/stream* and gRPC StreamPredict (contract §3.2 `stream_chunk_size`).',
    }),
    defaultModel: Type.String({
      default: '',
      description: 'Model used when a request names `default` or none; empty = the first model in the library.',
    }),
  },
  {
    additionalProperties: false,
    default: {},
    description: 'Local inference with node-llama-cpp: a model is a `.gguf` file in the models dir, loaded on the first request.',
  },
);
export type EngineConfig = Static<typeof EngineConfig>;

export const engineSection: ConfigSection<typeof EngineConfig> = {
  schema: EngineConfig,
  env: {
    CONSOLE_GPU: 'gpu',
    CONSOLE_THREADS: 'threads',
    CONSOLE_MODELS_DIR: 'library.modelsDir',
    HF_ENDPOINT: 'library.hfEndpoint',
    HF_TOKEN: 'library.hfToken',
    CONSOLE_ENGINE_PARALLEL: 'parallel',
    CONSOLE_ENGINE_IDLE_TTL: 'idleTtlSeconds',
  },
};
