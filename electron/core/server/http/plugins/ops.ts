import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { LogLevelQuery, PeriodicThreadsQuery, ThreadsQuery, type PeriodicThreadsResponse } from '../../../../../shared/contracts/ops.js';
import { AppError, ErrorCode } from '../../../base/errors.js';
import { toContractLevel, toPinoLevel, type LoggerRegistry } from '../../../base/logger.js';
import type { MetricsRegistry } from '../../../base/metrics.js';
import { PERIODIC_LEVELS, type PeriodicLevel, type PeriodicTaskRegistry } from '../../../base/periodic.js';
import type { OpsService } from '../../../services/ops/opsService.js';
import type { Auth } from '../../auth.js';

export interface OpsPluginOptions extends Record<string, unknown> {
  ops: OpsService;
  logs: LoggerRegistry;
  metrics: MetricsRegistry;
  periodic: PeriodicTaskRegistry;
  auth: Auth;
}

/** Ops common API (contract §2). */
export const opsPlugin: FastifyPluginAsync<OpsPluginOptions> = async (fastify, { ops, logs, metrics, periodic, auth }) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

  app.get('/env', { preHandler: auth.admin }, async () => ops.env());

  // Read-only ops follow the API-key rule of every other read (contract §1.2); writes need the admin token.
  const read = auth.apiKey;

  app.get('/loglevel', { preHandler: read, schema: { querystring: LogLevelQuery } }, async (request, reply) => {
    const { logger_name: name, level } = request.query;
    reply.type('text/plain; charset=utf-8');
    if (level !== undefined) {
      if (name === undefined) return reply.code(400).send('logger_name is required when level is given');
      const pinoLevel = toPinoLevel(level);
      if (!pinoLevel || pinoLevel === 'trace' || pinoLevel === 'silent') return reply.code(400).send(`Invalid log level: ${level}`);
      await auth.admin(request, reply);
      logs.setLevel(name, pinoLevel);
      return `Set ${name} level to ${toContractLevel(pinoLevel)} (including all handlers)`;
    }
    if (name !== undefined) {
      if (!logs.has(name)) throw new AppError(ErrorCode.NOT_FOUND, `Logger not found: ${name}`);
      const found = logs.list().find((l) => l.name === name);
      return `${name}: ${toContractLevel(found?.level ?? 'info')}`;
    }
    return ['=== Loggers and Levels ===', ...logs.list().map((l) => `${l.name}: ${toContractLevel(l.level)}`)].join('\n');
  });

  app.get('/metrics', { preHandler: read, config: { skipMetrics: true } }, async (_request, reply) => {
    const text = await metrics.text();
    return reply.type(metrics.contentType).send(text);
  });

  app.post('/metrics/reset', { preHandler: auth.admin }, async (_request, reply) => {
    metrics.reset();
    return reply.type('text/plain; charset=utf-8').send('ok');
  });

  app.get('/threads', { preHandler: auth.admin, schema: { querystring: ThreadsQuery } }, async (request, reply) => {
    return reply.type('text/plain; charset=utf-8').send(ops.threads({ name: request.query.name, threadId: request.query.thread_id }));
  });

  app.get('/periodic-threads', { preHandler: read, schema: { querystring: PeriodicThreadsQuery } }, async (request, reply) => {
    const { level, running_only: runningOnly, active_only: activeOnly } = request.query;
    if (level !== undefined && !PERIODIC_LEVELS.includes(level as PeriodicLevel)) {
      return reply.code(400).send({ error: `Invalid level: ${level}. Valid values: ${PERIODIC_LEVELS.join(', ')}` });
    }
    const all = periodic.list();
    const threads = all.filter((t) => (level === undefined || t.level === level) && (!runningOnly || t.is_running) && (!activeOnly || t.is_active));
    const byLevel: PeriodicThreadsResponse['summary']['by_level'] = {};
    for (const t of all) {
      const entry = (byLevel[t.level] ??= { total: 0, running: 0, active: 0 });
      entry.total++;
      if (t.is_running) entry.running++;
      if (t.is_active) entry.active++;
    }
    const body: PeriodicThreadsResponse = {
      summary: {
        total_count: all.length,
        running_count: all.filter((t) => t.is_running).length,
        active_count: all.filter((t) => t.is_active).length,
        by_level: byLevel,
      },
      threads,
    };
    return body;
  });

  app.get<{ Params: { thread_name: string } }>('/periodic-threads/:thread_name', { preHandler: read }, async (request, reply) => {
    const info = periodic.get(request.params.thread_name);
    if (!info) return reply.code(404).send({ error: `Thread not found: ${request.params.thread_name}` });
    return info;
  });

  app.get('/periodic-threads-health', { preHandler: read }, async () => {
    const unhealthy = periodic.list().filter((t) => (t.level === 'critical' || t.level === 'high') && !t.is_active);
    return {
      healthy: unhealthy.length === 0,
      unhealthy_count: unhealthy.length,
      unhealthy_threads: unhealthy.map((t) => ({ name: t.name, level: t.level, last_run_ago: t.last_run_ago, interval: t.interval })),
    };
  });

  app.post('/run_script', { preHandler: auth.admin, config: { multipart: true } }, async (request, reply) => {
    reply.type('text/plain; charset=utf-8');
    if (!request.isMultipart()) return reply.code(400).send('No script file provided');
    let source: Buffer | undefined;
    try {
      for await (const part of request.parts({ limits: { fileSize: 16 * 1024 * 1024 } })) {
        if (part.type === 'file' && part.fieldname === 'script') source = await part.toBuffer();
        else if (part.type === 'file') await part.toBuffer();
      }
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'FST_REQ_FILE_TOO_LARGE') throw new AppError(ErrorCode.PAYLOAD_TOO_LARGE, 'Script file is too large');
      throw err;
    }
    if (!source) return reply.code(400).send('No script file provided');
    const result = await ops.runScript(source);
    if (result.timedOut) return reply.code(408).send(`Script exceeded its wall-time limit and was killed (exit ${result.exitCode ?? result.signal})`);
    if (result.memoryExceeded) {
      return reply.code(500).send(`Error executing script: memory limit exceeded, killed (exit ${result.exitCode ?? result.signal})\n${result.stderr.slice(-2000)}`);
    }
    if (result.exitCode !== 0) {
      const firstLine = /Error[^\n]*/.exec(result.stderr)?.[0] ?? 'script failed';
      return reply.code(500).send(`Error executing script: ${firstLine}\nexit code: ${result.exitCode ?? result.signal}\n${result.stderr.slice(-2000)}`);
    }
    if (result.result !== undefined && result.resultIsJson) return reply.type('application/json; charset=utf-8').send(result.result);
    return result.result ?? 'Script executed successfully';
  });
};
