import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

export const AuthConfig = Type.Object(
  {
    apiKeys: Type.Array(Type.String({ minLength: 8 }), {
      default: [],
      description: '`X-API-Key` values accepted on `/api/v1/*` (and `/v1/*`); empty = open on loopback. Required when `server.host` is not loopback.',
    }),
    openaiToken: Type.String({
      default: '',
      description: 'When set, `/v1/*` requires `Authorization: Bearer` with this token (S1 Lite `GATEWAY_API_TOKEN`).',
    }),
    internalToken: Type.String({ default: '', description: 'Token for internal gRPC callers (metadata `x-internal-token`).' }),
  },
  { additionalProperties: false, default: {}, description: 'API keys and tokens of the public APIs (the admin token lives in `DATA_DIR/admin-token`).' },
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
