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
  },
};
