import { Type, type Static } from '@sinclair/typebox';
import { LOG_LEVELS, type LogFilter as LogFilterType, type StreamClientMessage as StreamClientMessageType } from './console.js';

/** Request schemas of the console stream and dashboard session endpoints (types in `console.ts`). */

const Level = Type.Union(LOG_LEVELS.map((l) => Type.Literal(l)));

export const LogFilter = Type.Object(
  {
    module: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    level: Type.Optional(Level),
  },
  { additionalProperties: false },
);

/** Messages a viewer sends on the WebSocket. */
export const StreamClientMessage = Type.Union([
  Type.Object({ type: Type.Literal('logs'), filter: LogFilter }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('logs-off') }, { additionalProperties: false }),
]);

/** Query of the stream endpoints (browsers cannot set headers on WebSocket/EventSource). */
export const StreamQuery = Type.Object(
  {
    /** Admin token (enables log subscriptions) or API key (snapshots only, when keys are configured). */
    token: Type.Optional(Type.String({ maxLength: 500 })),
    /** SSE only: also send log records, with this filter. */
    logs: Type.Optional(Type.Boolean()),
    module: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    level: Type.Optional(Level),
  },
  { additionalProperties: false },
);
export type StreamQuery = Static<typeof StreamQuery>;

/** `GET /api/console/logs` query (admin). */
export const LogsQuery = Type.Object(
  {
    module: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    level: Type.Optional(Level),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 2000, default: 200 })),
  },
  { additionalProperties: false },
);
export type LogsQuery = Static<typeof LogsQuery>;

/** `POST /api/console/session` body: exchange the one-time login code printed at start for the admin token. */
export const SessionExchange = Type.Object({ code: Type.String({ minLength: 8, maxLength: 200 }) }, { additionalProperties: false });
export type SessionExchange = Static<typeof SessionExchange>;

// The schemas and the plain types in console.ts describe the same shapes.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const _filterMatches: Same<Static<typeof LogFilter>, LogFilterType> = true;
const _messageMatches: Same<Static<typeof StreamClientMessage>, StreamClientMessageType> = true;
void _filterMatches;
void _messageMatches;
