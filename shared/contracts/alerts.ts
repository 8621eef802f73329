import { Type, type Static } from '@sinclair/typebox';

/**
 * Alertmanager's webhook payload (version 4), as POSTed to `/api/alerts` by the receivers in
 * resources/observability/alertmanager/alertmanager.yml. Only what the console keeps is checked;
 * other fields Alertmanager adds are accepted and ignored.
 */
export const AlertmanagerAlert = Type.Object({
  status: Type.Union([Type.Literal('firing'), Type.Literal('resolved')]),
  labels: Type.Record(Type.String(), Type.String({ maxLength: 1024 })),
  annotations: Type.Optional(Type.Record(Type.String(), Type.String({ maxLength: 8192 }))),
  startsAt: Type.Optional(Type.String({ maxLength: 64 })),
  endsAt: Type.Optional(Type.String({ maxLength: 64 })),
  generatorURL: Type.Optional(Type.String({ maxLength: 2048 })),
  fingerprint: Type.Optional(Type.String({ maxLength: 128 })),
});
export type AlertmanagerAlert = Static<typeof AlertmanagerAlert>;

export const AlertmanagerWebhookBody = Type.Object({
  version: Type.Optional(Type.String({ maxLength: 16 })),
  status: Type.Optional(Type.String({ maxLength: 16 })),
  receiver: Type.Optional(Type.String({ maxLength: 256 })),
  alerts: Type.Array(AlertmanagerAlert, { maxItems: 1000 }),
});
export type AlertmanagerWebhookBody = Static<typeof AlertmanagerWebhookBody>;

/** One alert the console shows as firing. */
export const FiringAlert = Type.Object({
  fingerprint: Type.String(),
  alertname: Type.String(),
  /** `critical`, `warning`, ... (the rule's `severity` label; `none` when missing). */
  severity: Type.String(),
  summary: Type.String(),
  description: Type.String(),
  labels: Type.Record(Type.String(), Type.String()),
  /** When Prometheus started firing it (ISO 8601, as Alertmanager sent it). */
  startsAt: Type.Union([Type.String(), Type.Null()]),
  /** Unix milliseconds when the console last heard of it. */
  receivedAt: Type.Number(),
  generatorURL: Type.Union([Type.String(), Type.Null()]),
});
export type FiringAlert = Static<typeof FiringAlert>;

export const AlertsResponse = Type.Object({
  firing: Type.Array(FiringAlert),
  /** Unix milliseconds of the last webhook call, null before the first. */
  lastReceivedAt: Type.Union([Type.Number(), Type.Null()]),
});
export type AlertsResponse = Static<typeof AlertsResponse>;

export const AlertsReceivedResponse = Type.Object({
  status: Type.Literal('ok'),
  firing: Type.Integer(),
  resolved: Type.Integer(),
});
