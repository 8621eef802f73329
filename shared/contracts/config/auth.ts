import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

export const AuthConfig = Type.Object(
  {
    /** Keys accepted in `X-API-Key` on /api/v1/* (and on /v1/*). Empty = open on loopback. */
    apiKeys: Type.Array(Type.String({ minLength: 8 }), { default: [] }),
    /** Bearer token required on /v1/* when set (S1 Lite `GATEWAY_API_TOKEN`). */
    openaiToken: Type.String({ default: '' }),
    /** Token for internal gRPC callers (metadata `x-internal-token`). */
    internalToken: Type.String({ default: '' }),
  },
  { additionalProperties: false, default: {} },
);
export type AuthConfig = Static<typeof AuthConfig>;

export const authSection: ConfigSection<typeof AuthConfig> = {
  schema: AuthConfig,
  env: {
    CY_LLM_API_KEY: 'apiKeys',
    GATEWAY_API_TOKEN: 'openaiToken',
    CY_LLM_INTERNAL_TOKEN: 'internalToken',
  },
};
