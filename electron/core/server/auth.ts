import type { FastifyReply, FastifyRequest } from 'fastify';
import { safeEqual } from '../base/adminToken.js';
import { AppError, ErrorCode } from '../base/errors.js';
import type { ConfigStore } from '../base/config.js';

/** Who made a request, as far as auth can tell. */
export type Principal = 'admin' | 'api-key' | 'anonymous';

export interface AuthOptions {
  adminToken: string;
  config: ConfigStore;
}

function bearer(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return undefined;
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  return m?.[1]?.trim();
}

/**
 * The auth rules of contract §1.2 as Fastify preHandlers. Services never see these; routes opt in
 * with `preHandler: auth.admin` (or `auth.apiKey` / `auth.openai`).
 */
export class Auth {
  private readonly temporaryKeys = new Set<string>();

  constructor(private readonly options: AuthOptions) {}

  /** Checks an admin bearer token (401 missing, 403 wrong), in constant time. */
  checkAdmin(token: string | undefined): void {
    if (!token) throw new AppError(ErrorCode.UNAUTHENTICATED, 'Admin token required: send Authorization: Bearer <token> (see DATA_DIR/admin-token)');
    if (!safeEqual(token, this.options.adminToken)) throw new AppError(ErrorCode.FORBIDDEN, 'Invalid admin token');
  }

  isAdmin(request: FastifyRequest): boolean {
    const token = bearer(request);
    return token !== undefined && safeEqual(token, this.options.adminToken);
  }

  /** Checks an API key when keys are configured; open when none is (local use). */
  checkApiKey(key: string | undefined): void {
    const keys = this.options.config.get().auth.apiKeys;
    if (keys.length === 0 && this.temporaryKeys.size === 0) return;
    if (keys.length === 0 && !key) return;
    if (!key) throw new AppError(ErrorCode.UNAUTHENTICATED, 'API key required: send X-API-Key');
    const all = [...keys, ...this.temporaryKeys, this.options.adminToken];
    if (!all.some((k) => safeEqual(k, key))) throw new AppError(ErrorCode.FORBIDDEN, 'Invalid API key');
  }

  /** gRPC rule (contract §10): a matching `x-internal-token` from an internal caller, else the API-key rule. */
  checkGrpcCaller(internalToken: string | undefined, apiKey: string | undefined): void {
    const configured = this.options.config.get().auth.internalToken;
    if (internalToken !== undefined && configured !== '' && safeEqual(internalToken, configured)) return;
    this.checkApiKey(apiKey);
  }

  /** A key valid until the returned function is called (run_script's run-scoped token). */
  addTemporaryKey(key: string): () => void {
    this.temporaryKeys.add(key);
    return () => this.temporaryKeys.delete(key);
  }

  /** preHandler: admin token required. */
  readonly admin = async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    this.checkAdmin(bearer(request));
  };

  /** preHandler: `X-API-Key` when keys are configured (the admin token also passes). */
  readonly apiKey = async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const header = request.headers['x-api-key'];
    const key = typeof header === 'string' ? header : bearer(request);
    this.checkApiKey(key);
  };

  /** preHandler for /v1: Bearer token when `auth.openaiToken` is set, else the API-key rule (X-API-Key also accepted). */
  readonly openai = async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const required = this.options.config.get().auth.openaiToken;
    const token = bearer(request);
    const header = request.headers['x-api-key'];
    const key = typeof header === 'string' ? header : token;
    if (required) {
      if (!key) throw new AppError(ErrorCode.UNAUTHENTICATED, 'Authorization: Bearer token required');
      if (safeEqual(key, required) || safeEqual(key, this.options.adminToken)) return;
      const keys = this.options.config.get().auth.apiKeys;
      if (keys.some((k) => safeEqual(k, key))) return;
      throw new AppError(ErrorCode.FORBIDDEN, 'Invalid token');
    }
    this.checkApiKey(key);
  };
}
