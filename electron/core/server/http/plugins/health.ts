import type { FastifyPluginAsync } from 'fastify';
import type { Clock } from '../../../base/clock.js';
import type { ComponentHealth, HealthRegistry } from '../../../base/health.js';

export interface HealthPluginOptions extends Record<string, unknown> {
  health: HealthRegistry;
  clock: Clock;
  version: string;
  startedAt: number;
  startedMono: number;
}

/** Go-style duration, e.g. `1h0m0s` (contract §1.5). */
export function goDuration(seconds: number): string {
  const s = Math.floor(seconds);
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m${s % 60}s`;
}

/** Health and readiness aggregation (contract §9). */
export const healthPlugin: FastifyPluginAsync<HealthPluginOptions> = async (app, { health, clock, version, startedAt, startedMono }) => {
  const uptime = () => (clock.monotonic() - startedMono) / 1000;

  app.get('/health', async () => ({
    status: 'ok',
    uptime: Math.round(uptime() * 1000) / 1000,
    version,
    service: 'console',
    ...health.livenessFields(),
  }));

  app.get('/health/ready', async (_request, reply) => {
    const state = await health.readinessState();
    return reply.code(state.ready ? 200 : 503).send({ ready: state.ready, ...state.fields });
  });

  const components = async (): Promise<Record<string, ComponentHealth> & { gateway: ComponentHealth }> => ({
    gateway: { status: 'UP' as const, details: { startTime: new Date(startedAt).toISOString(), uptime: goDuration(uptime()) } },
    ...(await health.componentStates()),
  });

  app.get('/api/v1/health', async () => {
    const all = await components();
    const up = all.gateway.status === 'UP' && (all.engine === undefined || all.engine.status === 'UP');
    return {
      status: up ? 'UP' : 'DOWN',
      components: Object.fromEntries(Object.entries(all).map(([k, v]) => [k, { status: v.status }])),
      timestamp: new Date(clock.now()).toISOString(),
    };
  });

  app.get('/api/v1/health/details', async () => {
    const all = await components();
    const up = all.gateway.status === 'UP' && (all.engine === undefined || all.engine.status === 'UP');
    return { status: up ? 'UP' : 'DOWN', components: all, timestamp: new Date(clock.now()).toISOString() };
  });
};
