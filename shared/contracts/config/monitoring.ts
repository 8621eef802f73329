import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

/** The `monitoring` section of config.json. */
export const MonitoringConfig = Type.Object({}, { additionalProperties: false, default: {} });
export type MonitoringConfig = Static<typeof MonitoringConfig>;

export const monitoringSection: ConfigSection<typeof MonitoringConfig> = {
  schema: MonitoringConfig,
  env: {},
};
