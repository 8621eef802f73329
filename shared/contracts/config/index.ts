import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { authSection } from './auth.js';
import { clusterSection } from './cluster.js';
import { engineSection } from './engine.js';
import { limiterSection } from './limiter.js';
import { monitoringSection } from './monitoring.js';
import { opsSection } from './ops.js';
import { runtimeSection } from './runtime.js';
import type { ConfigSection } from './section.js';
import { serverSection } from './server.js';
import { trainingSection } from './training.js';

export type { ConfigSection } from './section.js';

/** Every section of config.json, by name. A new service adds its section here. */
export const configSections = {
  server: serverSection,
  auth: authSection,
  engine: engineSection,
  limiter: limiterSection,
  monitoring: monitoringSection,
  training: trainingSection,
  runtime: runtimeSection,
  ops: opsSection,
  cluster: clusterSection,
} as const satisfies Record<string, ConfigSection<TSchema>>;

export type SectionName = keyof typeof configSections;

/** The whole config.json schema (also served to the dashboard for its forms). */
export const ConsoleConfig = Type.Object(
  {
    $schema: Type.Optional(Type.String()),
    server: serverSection.schema,
    auth: authSection.schema,
    engine: engineSection.schema,
    limiter: limiterSection.schema,
    monitoring: monitoringSection.schema,
    training: trainingSection.schema,
    runtime: runtimeSection.schema,
    ops: opsSection.schema,
    cluster: clusterSection.schema,
  },
  { additionalProperties: false, default: {} },
);
export type ConsoleConfig = Static<typeof ConsoleConfig>;
