import { ErrorCode, type ErrorDetail } from '../../../shared/contracts/errors.js';

export { ErrorCode, type ErrorDetail };

const STATUS_BY_CODE: Record<ErrorCode, number> = {
  INVALID_REQUEST: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  MODEL_NOT_FOUND: 404,
  MODEL_NOT_READY: 503,
  INSUFFICIENT_RESOURCES: 503,
  TRAINING_JOB_NOT_FOUND: 404,
  TRAINING_JOB_RUNNING: 400,
  RATE_LIMITED: 429,
  CONFLICT: 409,
  METHOD_NOT_ALLOWED: 405,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  MISDIRECTED_REQUEST: 421,
  TIMEOUT: 504,
  UPSTREAM_ERROR: 502,
  UNAVAILABLE: 503,
  INTERNAL_ERROR: 500,
};

export interface AppErrorOptions {
  /** HTTP status; defaults to the code's usual status. */
  status?: number;
  details?: ErrorDetail[];
  /** For OpenAI-family responses: the exception-like type name (e.g. `RateLimitedError`). */
  type?: string;
  /** Extra response headers (e.g. `Retry-After`). */
  headers?: Record<string, string>;
  cause?: unknown;
}

/**
 * The one error type services throw. It carries a stable `code`; the HTTP and gRPC adapters turn
 * it into the envelope of the route family (contract §1.3) and the matching gRPC status.
 */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: ErrorDetail[] | undefined;
  readonly type: string | undefined;
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = options.status ?? STATUS_BY_CODE[code];
    this.details = options.details;
    this.type = options.type;
    this.headers = options.headers ?? {};
  }
}

export function invalidRequest(message: string, details?: ErrorDetail[]): AppError {
  return new AppError(ErrorCode.INVALID_REQUEST, message, { details });
}

export function notFound(message: string, code: ErrorCode = ErrorCode.NOT_FOUND): AppError {
  return new AppError(code, message);
}

/** Human-readable list of field problems, e.g. for OpenAI-family messages and CLI output. */
export function describeDetails(details: readonly ErrorDetail[]): string {
  return details.map((d) => (d.field ? `${d.field}: ${d.description}` : d.description)).join('; ');
}
