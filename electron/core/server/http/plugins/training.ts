import { PassThrough } from 'node:stream';
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import {
  JobIdParams,
  ListTrainingQuery,
  LogsQuery,
  LossQuery,
  StartTrainingRequest,
  TERMINAL_STATUSES,
  type TrainingEvent,
} from '../../../../../shared/contracts/training.js';
import type { Clock } from '../../../base/clock.js';
import type { TrainingService } from '../../../services/training/trainingService.js';
import type { Auth } from '../../auth.js';

export interface TrainingPluginOptions extends Record<string, unknown> {
  training: TrainingService;
  auth: Auth;
  clock: Clock;
}

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no', connection: 'keep-alive' };
/** SSE comment sent while a job is quiet, so proxies and clients see a live connection. */
const KEEPALIVE_MS = 15_000;

/**
 * Training API (contract §4) plus the loss curve, the job log and a live event stream. Every route
 * follows the `/api/v1` API-key rule, checked before the body is validated (onRequest); errors use
 * the engine envelope.
 */
export const trainingPlugin: FastifyPluginAsync<TrainingPluginOptions> = async (fastify, { training, auth, clock }) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

  app.post('/api/v1/training/start', { onRequest: auth.apiKey, schema: { body: StartTrainingRequest } }, async (request) => training.submit(request.body));

  app.get('/api/v1/training/status/:jobId', { onRequest: auth.apiKey, schema: { params: JobIdParams } }, async (request) => training.status(request.params.jobId));

  app.post('/api/v1/training/cancel/:jobId', { onRequest: auth.apiKey, schema: { params: JobIdParams } }, async (request) => training.cancel(request.params.jobId));

  app.get('/api/v1/training/info', { onRequest: auth.apiKey }, async () => training.info());

  app.get('/api/v1/training/list', { onRequest: auth.apiKey, schema: { querystring: ListTrainingQuery } }, async (request) => training.list(request.query));

  app.get('/api/v1/training/:jobId/loss', { onRequest: auth.apiKey, schema: { params: JobIdParams, querystring: LossQuery } }, async (request) =>
    training.loss(request.params.jobId, request.query.afterStep),
  );

  app.get('/api/v1/training/:jobId/logs', { onRequest: auth.apiKey, schema: { params: JobIdParams, querystring: LogsQuery } }, async (request) =>
    training.logs(request.params.jobId, request.query.afterId, request.query.limit),
  );

  app.get('/api/v1/training/:jobId/events', { onRequest: auth.apiKey, schema: { params: JobIdParams }, config: { watch: true } }, async (request, reply) => {
    const { jobId } = request.params;
    const first = training.status(jobId); // 404 before the stream starts
    const stream = new PassThrough();
    const send = (event: TrainingEvent) => {
      if (!stream.writable) return;
      stream.write(`event: ${event.type}\ndata: ${JSON.stringify(event.data)}\n\n`);
      if (event.type === 'status' && TERMINAL_STATUSES.includes(event.data.status)) close();
    };
    let unsubscribe: (() => void) | undefined;
    const keepalive = clock.setInterval(() => stream.write(': keepalive\n\n'), KEEPALIVE_MS);
    const close = () => {
      keepalive.cancel();
      unsubscribe?.();
      unsubscribe = undefined;
      if (stream.writable) stream.end();
    };
    reply.raw.once('close', close);
    void reply.code(200).headers(SSE_HEADERS).send(stream);
    send({ type: 'status', data: first });
    if (!TERMINAL_STATUSES.includes(first.status)) unsubscribe = training.onEvent(jobId, send);
    return reply;
  });
};
