import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

export const ServerConfig = Type.Object(
  {
    host: Type.String({
      default: '127.0.0.1',
      minLength: 1,
      description: 'Bind address. A non-loopback address refuses to start unless `auth.apiKeys` is set.',
    }),
    httpPort: Type.Integer({ default: 8080, minimum: 0, maximum: 65535, description: 'Main HTTP port (API, dashboard, /metrics); 0 = ephemeral.' }),
    grpcPort: Type.Integer({ default: 50051, minimum: 0, maximum: 65535, description: 'gRPC port; 0 = ephemeral.' }),
    allowedHosts: Type.Array(Type.String({ minLength: 1 }), {
      default: [],
      description: 'Extra `Host` header names accepted besides loopback names (DNS-rebinding guard: other hosts get 403).',
    }),
    allowedOrigins: Type.Array(Type.String({ minLength: 1 }), {
      default: [],
      description: 'Extra browser origins allowed besides the console\'s own UI and `http://127.0.0.1:*` / `http://localhost:*` (no wildcard CORS).',
    }),
    bodyLimitBytes: Type.Integer({
      default: 8 * 1024 * 1024,
      minimum: 1024,
      maximum: 1024 * 1024 * 1024,
      description: 'Largest accepted request body in bytes; larger bodies get 413.',
    }),
  },
  { additionalProperties: false, default: {}, description: 'Listeners and the request guards of the main HTTP port and gRPC.' },
);
export type ServerConfig = Static<typeof ServerConfig>;

export const serverSection: ConfigSection<typeof ServerConfig> = {
  schema: ServerConfig,
  env: {
    CONSOLE_HOST: 'host',
    CONSOLE_HTTP_PORT: 'httpPort',
    CONSOLE_GRPC_PORT: 'grpcPort',
    CONSOLE_ALLOWED_HOSTS: 'allowedHosts',
    CONSOLE_ALLOWED_ORIGINS: 'allowedOrigins',
  },
};
