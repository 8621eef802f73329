import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { LogStreamQuery, LogTailQuery, ProcessNameParams, type LogLine } from '../../../../../shared/contracts/runtime.js';
import type { RuntimeService } from '../../../services/runtime/runtimeService.js';
import type { Auth } from '../../auth.js';

export interface RuntimePluginOptions extends Record<string, unknown> {
  runtime: RuntimeService;
  auth: Auth;
}

/**
 * Runtime supervisor routes: the contract's single-gateway API (§8, `{"detail"}` errors), plus
 * every supervised process, log tail and live log stream (SSE), orphan kill and the dashboard
 * snapshot. Start, stop, kill and logs need the admin token (checked before anything else).
 */
export const runtimePlugin: FastifyPluginAsync<RuntimePluginOptions> = async (fastify, { runtime, auth }) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  // Writes need the admin token, so the service audits them as `admin`.
  const actor = 'admin';

  // --- contract §8 ---
  app.get('/api/runtime/mode', { preHandler: auth.apiKey }, async () => runtime.mode());
  app.get('/api/runtime/gateway/status', { preHandler: auth.apiKey }, async () => runtime.gatewayStatus());
  app.get('/api/runtime/gateway/health', { preHandler: auth.apiKey }, async () => runtime.gatewayHealth());
  app.get('/health/gateway', async () => runtime.gatewayHealth());
  app.get('/api/status', { preHandler: auth.apiKey }, async () => runtime.apiStatus());

  // The body is checked by the service in one pass with the process config and environment, so
  // the 400 lists every problem (contract §8.5), not just the first failing layer.
  app.post('/api/runtime/start', { onRequest: auth.admin }, async (request) => runtime.startGateway(request.body, actor));

  app.post('/api/runtime/stop', { onRequest: auth.admin }, async () => runtime.stopGateway(actor));

  // --- every process (extension) ---
  app.get('/api/runtime/processes', { preHandler: auth.apiKey }, async () => ({ processes: runtime.list() }));
  // The snapshot carries recent log lines, so it needs the admin token like the logs.
  app.get('/api/runtime/snapshot', { onRequest: auth.admin }, async () => runtime.snapshot());

  app.get('/api/runtime/processes/:name', { preHandler: auth.apiKey, schema: { params: ProcessNameParams } }, async (request) => runtime.get(request.params.name));

  app.post('/api/runtime/processes/:name/start', { onRequest: auth.admin, schema: { params: ProcessNameParams } }, async (request) => runtime.startProcess(request.params.name, actor));

  app.post('/api/runtime/processes/:name/stop', { onRequest: auth.admin, schema: { params: ProcessNameParams } }, async (request) => runtime.stopProcess(request.params.name, actor));

  app.post('/api/runtime/processes/:name/orphan/kill', { onRequest: auth.admin, schema: { params: ProcessNameParams } }, async (request) => runtime.killOrphan(request.params.name, actor));

  app.get('/api/runtime/processes/:name/logs', { onRequest: auth.admin, schema: { params: ProcessNameParams, querystring: LogTailQuery } }, async (request) =>
    runtime.tail(request.params.name, request.query.lines ?? 200),
  );

  // Server-sent events: one `history` event with the last lines, then one `log` event per line.
  app.get('/api/runtime/processes/:name/logs/stream', { onRequest: auth.admin, schema: { params: ProcessNameParams, querystring: LogStreamQuery }, config: { watch: true } }, async (request, reply) => {
    const { name } = request.params;
    const history = await runtime.tail(name, request.query.tail ?? 50);
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      ...(reply.getHeaders() as Record<string, string>),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    raw.write(`event: history\ndata: ${JSON.stringify({ name, lines: history.lines })}\n\n`);
    const unsubscribe = runtime.onLog((line: LogLine) => {
      raw.write(`event: log\ndata: ${JSON.stringify(line)}\n\n`);
    }, name);
    const close = () => {
      unsubscribe();
      if (!raw.writableEnded) raw.end();
    };
    request.raw.once('close', close);
    raw.once('close', close);
  });
};
