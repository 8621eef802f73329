import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

/** The `training` section of config.json. */
export const TrainingConfig = Type.Object({}, { additionalProperties: false, default: {} });
export type TrainingConfig = Static<typeof TrainingConfig>;

export const trainingSection: ConfigSection<typeof TrainingConfig> = {
  schema: TrainingConfig,
  env: {},
};
