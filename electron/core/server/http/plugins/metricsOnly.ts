import type { FastifyPluginAsync } from 'fastify';
import type { MetricsRegistry } from '../../../base/metrics.js';
import type { Auth } from '../../auth.js';

export interface MetricsOnlyPluginOptions extends Record<string, unknown> {
  metrics: MetricsRegistry;
  auth: Auth;
}

/**
 * The separate Prometheus listener (contract §1.1: optional, off by default, S2's
 * `SIDECAR_METRICS_PORT` 9191): `GET /metrics` only, under the main port's rules (Host/Origin
 * checks from HttpServer, the read-only API-key rule). `/metrics` on the main port always works.
 */
export const metricsOnlyPlugin: FastifyPluginAsync<MetricsOnlyPluginOptions> = async (app, { metrics, auth }) => {
  app.get('/metrics', { preHandler: auth.apiKey, config: { skipMetrics: true } }, async (_request, reply) => {
    const text = await metrics.text();
    return reply.type(metrics.contentType).send(text);
  });
};
