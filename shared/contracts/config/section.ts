import type { TSchema } from '@sinclair/typebox';

/**
 * One section of config.json. `env` maps an environment variable to a (dotted) field of the
 * section; its string value is converted to the field's type (lists are comma-separated).
 */
export interface ConfigSection<S extends TSchema> {
  schema: S;
  env: Readonly<Record<string, string>>;
}
