import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

/**
 * Several workstations, one team: GPU locks shared through one Redis. Empty `redisUrl` = a single
 * box (locks in the local SQLite store). Changes apply at the next start.
 */
export const ClusterConfig = Type.Object(
  {
    redisUrl: Type.String({
      default: '',
      maxLength: 2048,
      pattern: '^$|^rediss?://[^\\s]+$',
      description: '`redis://[user:pass@]host:port[/db]` (or `rediss://`); empty = a single box, locks in the local SQLite store.',
    }),
    nodeId: Type.String({
      default: '',
      maxLength: 64,
      pattern: '^$|^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$',
      description: 'This workstation\'s name in lock keys (`gpu_lock:<nodeId>:<gpu>`), unique per console; empty = the host name.',
    }),
    commandTimeoutMs: Type.Integer({
      default: 2000,
      minimum: 50,
      maximum: 60000,
      description: 'Longest wait (ms) for one Redis command; past it the operation fails closed (503).',
    }),
    monitorLeaseSeconds: Type.Number({
      default: 90,
      minimum: 1,
      maximum: 3600,
      description: 'The monitor lease (one node at a time sweeps heartbeat timeouts): how long it lasts without a renewal, i.e. about how long a dead holder\'s duty stays undone. Renewed at every monitor check: keep it above twice `monitoring.monitor.checkIntervalSeconds`.',
    }),
  },
  {
    additionalProperties: false,
    default: {},
    description: 'Several workstations, one team: GPU locks, heartbeats and provider budgets shared through one Redis (see docs/cluster.md). Applies at the next start.',
  },
);
export type ClusterConfig = Static<typeof ClusterConfig>;

export const clusterSection: ConfigSection<typeof ClusterConfig> = {
  schema: ClusterConfig,
  env: {
    CONSOLE_REDIS_URL: 'redisUrl',
    CONSOLE_NODE_ID: 'nodeId',
  },
};
