import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

export const ServerConfig = Type.Object(
  {
    /** Address to bind; loopback by default. A non-loopback address requires API keys. */
    host: Type.String({ default: '127.0.0.1', minLength: 1 }),
    /** Main HTTP port (0 = ephemeral). */
    httpPort: Type.Integer({ default: 8080, minimum: 0, maximum: 65535 }),
    /** gRPC port (0 = ephemeral). */
    grpcPort: Type.Integer({ default: 50051, minimum: 0, maximum: 65535 }),
    /** Extra Host header names accepted besides loopback names (DNS-rebinding guard). */
    allowedHosts: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
    /** Extra browser origins allowed besides the console's own UI and http://127.0.0.1:* / http://localhost:*. */
    allowedOrigins: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
    /** Largest accepted request body in bytes (413 above). */
    bodyLimitBytes: Type.Integer({ default: 8 * 1024 * 1024, minimum: 1024, maximum: 1024 * 1024 * 1024 }),
  },
  { additionalProperties: false, default: {} },
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
