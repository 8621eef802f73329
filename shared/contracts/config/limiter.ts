import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

/** The `limiter` section of config.json. */
export const LimiterConfig = Type.Object({}, { additionalProperties: false, default: {} });
export type LimiterConfig = Static<typeof LimiterConfig>;

export const limiterSection: ConfigSection<typeof LimiterConfig> = {
  schema: LimiterConfig,
  env: {},
};
