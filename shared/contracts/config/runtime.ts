import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

/** The `runtime` section of config.json. */
export const RuntimeConfig = Type.Object({}, { additionalProperties: false, default: {} });
export type RuntimeConfig = Static<typeof RuntimeConfig>;

export const runtimeSection: ConfigSection<typeof RuntimeConfig> = {
  schema: RuntimeConfig,
  env: {},
};
