import { Type, type Static } from '@sinclair/typebox';

/** Engine error codes (contract §1.3). */
export const ErrorCode = {
  INVALID_REQUEST: 'INVALID_REQUEST',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  FORBIDDEN: 'FORBIDDEN',
  NOT_FOUND: 'NOT_FOUND',
  MODEL_NOT_FOUND: 'MODEL_NOT_FOUND',
  MODEL_NOT_READY: 'MODEL_NOT_READY',
  INSUFFICIENT_RESOURCES: 'INSUFFICIENT_RESOURCES',
  TRAINING_JOB_NOT_FOUND: 'TRAINING_JOB_NOT_FOUND',
  TRAINING_JOB_RUNNING: 'TRAINING_JOB_RUNNING',
  RATE_LIMITED: 'RATE_LIMITED',
  CONFLICT: 'CONFLICT',
  METHOD_NOT_ALLOWED: 'METHOD_NOT_ALLOWED',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  UNSUPPORTED_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  MISDIRECTED_REQUEST: 'MISDIRECTED_REQUEST',
  TIMEOUT: 'TIMEOUT',
  UPSTREAM_ERROR: 'UPSTREAM_ERROR',
  UNAVAILABLE: 'UNAVAILABLE',
  INTERNAL_ERROR: 'INTERNAL_ERROR',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** One bad field or one reason (contract §1.3 `details`). */
export const ErrorDetail = Type.Object({
  type: Type.String(),
  field: Type.Optional(Type.String()),
  description: Type.String(),
});
export type ErrorDetail = Static<typeof ErrorDetail>;

/** Engine envelope (§1.3 family 1). */
export const EngineErrorEnvelope = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    details: Type.Optional(Type.Array(ErrorDetail)),
  }),
});
export type EngineErrorEnvelope = Static<typeof EngineErrorEnvelope>;

/** OpenAI / limiter envelope (§1.3 family 2). */
export const OpenAiErrorEnvelope = Type.Object({
  error: Type.Object({
    message: Type.String(),
    type: Type.String(),
    code: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    param: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  }),
});
export type OpenAiErrorEnvelope = Static<typeof OpenAiErrorEnvelope>;

/** FastAPI-style envelope (§1.3 family 3). */
export const DetailErrorEnvelope = Type.Object({ detail: Type.String() });
export type DetailErrorEnvelope = Static<typeof DetailErrorEnvelope>;
