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
  },
  { additionalProperties: false, default: {} },
);
export type EngineConfig = Static<typeof EngineConfig>;

export const engineSection: ConfigSection<typeof EngineConfig> = {
  schema: EngineConfig,
  env: { CONSOLE_GPU: 'gpu', CONSOLE_THREADS: 'threads' },
};
