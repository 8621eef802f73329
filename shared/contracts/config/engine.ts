import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

/** The `engine` section of config.json. */
export const EngineConfig = Type.Object(
  {
    /** Backend: auto-detect (CUDA → Vulkan → Metal → CPU), force one, or `false` for CPU only. */
    gpu: Type.Union([Type.Literal('auto'), Type.Literal('cuda'), Type.Literal('vulkan'), Type.Literal('metal'), Type.Literal('false')], {
      default: 'auto',
    }),
    /** CPU threads for inference; 0 = number of physical cores. */
    threads: Type.Integer({ default: 0, minimum: 0, maximum: 1024 }),
    /** The model library: GGUF files on disk, imports and downloads (the models service). */
    library: Type.Object(
      {
        /** Where model files live; empty = `DATA_DIR/models`. */
        modelsDir: Type.String({ default: '' }),
        /** Hugging Face endpoint used to resolve `hf:` URIs (a mirror, or a local server in tests). */
        hfEndpoint: Type.String({ default: 'https://huggingface.co', pattern: '^https?://' }),
        /** Hugging Face access token for gated repos (sent only to `hfEndpoint`). */
        hfToken: Type.String({ default: '' }),
        /** Downloads running at once; more wait in a queue. */
        maxConcurrentDownloads: Type.Integer({ default: 2, minimum: 1, maximum: 8 }),
        /** Automatic retries (with Range resume) after a dropped connection, per download. */
        downloadRetries: Type.Integer({ default: 5, minimum: 0, maximum: 100 }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** Detect the backend (getLlama) when the console starts, so /api/v1/health/details reports it; otherwise on the first load. */
    detectOnStart: Type.Boolean({ default: true }),
    /** Before using a GPU backend, generate a few tokens on it in a child process (a broken GPU build aborts that child, not the console). */
    gpuSelfTest: Type.Boolean({ default: true }),
    /** Context sequences per loaded model: how many requests one model serves at once. */
    parallel: Type.Integer({ default: 4, minimum: 1, maximum: 64 }),
    /** Tokens of context per sequence; 0 = the model's trained context, capped at 4096. */
    contextSize: Type.Integer({ default: 0, minimum: 0, maximum: 1_048_576 }),
    /** Layers offloaded to the GPU: `auto` lets node-llama-cpp fit as many as memory allows. */
    gpuLayers: Type.Union([Type.Literal('auto'), Type.Integer({ minimum: 0, maximum: 10_000 })], { default: 'auto' }),
    /** Memory (MiB) all loaded models together may use (weights + context, estimated from the GGUF); 0 = no limit beyond node-llama-cpp's own checks. */
    memoryBudgetMb: Type.Integer({ default: 0, minimum: 0 }),
    /** Most models loaded at once (least recently used idle ones are unloaded first). */
    maxLoadedModels: Type.Integer({ default: 2, minimum: 1, maximum: 32 }),
    /** Seconds a loaded model may sit idle before it is unloaded; 0 = never. A request's `ttl` overrides it for that model. */
    idleTtlSeconds: Type.Integer({ default: 600, minimum: 0 }),
    /** Requests that may wait for a sequence (all models, all priorities); beyond it → 429 with Retry-After. */
    queueMaxSize: Type.Integer({ default: 64, minimum: 0, maximum: 100_000 }),
    /** Seconds a request may wait for room to load its model (the loaded ones busy) before 503 with Retry-After. */
    loadWaitSeconds: Type.Integer({ default: 120, minimum: 0, maximum: 86_400 }),
    /** Tokens per chunk on /api/v1/inference/stream* and gRPC StreamPredict (contract §3.2 `stream_chunk_size`). */
    streamChunkSize: Type.Integer({ default: 4, minimum: 1, maximum: 256 }),
    /** Model used when a request names `default` or none; empty = the first model in the library. */
    defaultModel: Type.String({ default: '' }),
  },
  { additionalProperties: false, default: {} },
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
