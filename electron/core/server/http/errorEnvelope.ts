import type { TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { coerce, validate } from '../../../../shared/contracts/validate.js';
import { AppError, ErrorCode, describeDetails } from '../../base/errors.js';
import type { Logger } from 'pino';

declare module 'fastify' {
  interface FastifyInstance {
    /** The console's `http` logger (Fastify's own request logger is off). */
    consoleLog?: Logger;
  }
}

/** Which envelope a route family uses (contract §1.3). */
export type ErrorFamily = 'engine' | 'openai' | 'detail' | 'ops-json' | 'ops-text';

/** Picks the family from the URL; a route can override it with `config.errorFamily`. */
export function familyOf(url: string): ErrorFamily {
  const path = url.split('?')[0] ?? url;
  if (path.startsWith('/v1/') || path === '/v1') return 'openai';
  if (path.startsWith('/api/limiter') || path.startsWith('/api/dashboard')) return 'openai';
  if (path.startsWith('/api/v1/')) return 'engine';
  if (path.startsWith('/api/runtime') || path.startsWith('/api/admin/') || path === '/api/status' || path === '/health/gateway') return 'detail';
  if (path.startsWith('/periodic-threads')) return 'ops-json';
  if (['/env', '/loglevel', '/run_script', '/threads', '/metrics', '/metrics/reset'].includes(path)) return 'ops-text';
  return 'engine';
}

const OPENAI_TYPES: Partial<Record<ErrorCode, string>> = {
  INVALID_REQUEST: 'invalid_request_error',
  UNAUTHENTICATED: 'authentication_error',
  FORBIDDEN: 'permission_error',
  NOT_FOUND: 'not_found_error',
  MODEL_NOT_FOUND: 'not_found_error',
  RATE_LIMITED: 'RateLimitedError',
  TIMEOUT: 'TimeoutException',
  UPSTREAM_ERROR: 'HTTPStatusError',
  PAYLOAD_TOO_LARGE: 'invalid_request_error',
  UNSUPPORTED_MEDIA_TYPE: 'invalid_request_error',
  METHOD_NOT_ALLOWED: 'invalid_request_error',
};

/** Builds the body of an error response for a family. */
export function errorBody(err: AppError, family: ErrorFamily): { contentType: string; body: unknown } {
  const full = err.details && err.details.length > 0 ? `${err.message}: ${describeDetails(err.details)}` : err.message;
  switch (family) {
    case 'engine':
      return {
        contentType: 'application/json; charset=utf-8',
        body: { error: { code: err.code, message: err.message, ...(err.details && err.details.length > 0 ? { details: err.details } : {}) } },
      };
    case 'openai':
      return {
        contentType: 'application/json; charset=utf-8',
        body: {
          error: {
            message: full,
            type: err.type ?? OPENAI_TYPES[err.code] ?? 'api_error',
            code: err.code,
            param: err.details?.[0]?.field ?? null,
            ...(err.details && err.details.length > 0 ? { details: err.details } : {}),
          },
        },
      };
    case 'detail':
      return { contentType: 'application/json; charset=utf-8', body: { detail: full, ...(err.details && err.details.length > 0 ? { errors: err.details } : {}) } };
    case 'ops-json':
      return { contentType: 'application/json; charset=utf-8', body: { error: full } };
    case 'ops-text':
      return { contentType: 'text/plain; charset=utf-8', body: full };
  }
}

/**
 * The validator compiler of every route: the contract schema is checked by the one `validate()`
 * (shared/contracts/validate.ts), after values are coerced (text inputs such as `?limit=5`, and
 * JSON bodies as Fastify's ajv did with `coerceTypes`) and defaults filled. A bad request is an AppError listing every bad field; fields of
 * the query string and path parameters are named `query.x` / `params.x`.
 */
export function schemaValidator({ schema, httpPart }: { schema: unknown; httpPart?: string }): (data: unknown) => { value: unknown } | { error: Error } {
  const typed = schema as TSchema;
  const compiled = TypeCompiler.Compile(typed);
  const prefix = httpPart === 'querystring' ? 'query.' : httpPart && httpPart !== 'body' ? `${httpPart}.` : '';
  return (data) => {
    const value: unknown = Value.Default(typed, coerce(typed, data));
    if (compiled.Check(value)) return { value };
    const details = validate(typed, value, { prefix });
    if (details.length === 0) return { value };
    return { error: new AppError(ErrorCode.INVALID_REQUEST, 'Invalid request', { details }) };
  };
}

/** Converts anything thrown into an AppError (Fastify's own errors included). */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const e = error as { code?: string; statusCode?: number; message?: string };
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AppError(ErrorCode.PAYLOAD_TOO_LARGE, 'Request body is too large');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new AppError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, 'Unsupported content type: send application/json', { status: 415 });
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new AppError(ErrorCode.INVALID_REQUEST, 'Body cannot be empty when content-type is application/json');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new AppError(ErrorCode.INVALID_REQUEST, `Malformed JSON body: ${e.message ?? ''}`);
  }
  // busboy (multipart) reports a malformed body with plain Errors: no boundary parameter, a body that
  // ends before its closing boundary, a bad part header. They are the client's fault (was 500).
  if (e.statusCode === undefined && /^(Multipart: |Part terminated early|Preamble terminated early|Unexpected end of (multipart|form)|Malformed part header)/.test(e.message ?? '')) {
    return new AppError(ErrorCode.INVALID_REQUEST, `Malformed multipart body: ${e.message ?? ''}`);
  }
  if (e.statusCode === 400 && /JSON/i.test(e.message ?? '')) return new AppError(ErrorCode.INVALID_REQUEST, `Malformed JSON body: ${e.message ?? ''}`);
  if (e.statusCode === 413) return new AppError(ErrorCode.PAYLOAD_TOO_LARGE, 'Request body is too large');
  if (e.statusCode === 415) return new AppError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, e.message ?? 'Unsupported media type');
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new AppError(ErrorCode.INVALID_REQUEST, e.message ?? 'Bad request', { status: e.statusCode });
  }
  return new AppError(ErrorCode.INTERNAL_ERROR, 'Internal error', { cause: error });
}

/**
 * Logs a 5xx once, with the request id and its cause (an unknown error converted to INTERNAL_ERROR
 * keeps the original as `cause`). 4xx are the client's business and are not logged as errors.
 */
export function logServerError(request: FastifyRequest, err: AppError, original: unknown = err): void {
  if (err.status < 500) return;
  const cause = err.cause ?? (original === err ? undefined : original);
  const log = request.server.consoleLog ?? request.log;
  // A 503 of our own with no cause (stopping, not running, queue full) is the service saying no,
  // not a fault: a warning without a stack. Anything else, or with a cause, is an error.
  if (err.code === ErrorCode.UNAVAILABLE && cause === undefined) {
    log.warn({ reqId: request.id, url: request.url, status: err.status, code: err.code }, `request refused: ${err.message}`);
    return;
  }
  log.error({ err: cause ?? err, reqId: request.id, url: request.url, status: err.status, code: err.code }, `request failed: ${err.message}`);
}

/** Sends `err` in the envelope of the request's route family. */
export function sendError(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  const err = toAppError(error);
  const configured = (request.routeOptions.config as { errorFamily?: ErrorFamily } | undefined)?.errorFamily;
  const family = configured ?? familyOf(request.url);
  const { contentType, body } = errorBody(err, family);
  for (const [k, v] of Object.entries(err.headers)) void reply.header(k, v);
  return reply.code(err.status).type(contentType).send(family === 'ops-text' ? String(body) : body);
}
