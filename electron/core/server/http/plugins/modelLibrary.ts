import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import {
  DownloadIdParams,
  DownloadRequest,
  FileIdParams,
  ImportRequest,
  type DownloadView,
  type ModelFileView,
} from '../../../../../shared/contracts/models.js';
import type { Clock } from '../../../base/clock.js';
import { AppError, ErrorCode } from '../../../base/errors.js';
import type { LocalModelFile } from '../../../base/ports.js';
import type { ModelLibrary } from '../../../services/models/modelLibrary.js';
import type { Auth } from '../../auth.js';

export interface ModelLibraryPluginOptions extends Record<string, unknown> {
  library: ModelLibrary;
  auth: Auth;
  clock: Clock;
}

function fileView(file: LocalModelFile): ModelFileView {
  return {
    id: file.id,
    path: file.path,
    sizeBytes: file.sizeBytes,
    modifiedAt: new Date(file.modifiedAt).toISOString(),
    ...(file.architecture !== undefined ? { architecture: file.architecture } : {}),
    ...(file.contextLength !== undefined ? { contextLength: file.contextLength } : {}),
    ...(file.displayName !== undefined ? { displayName: file.displayName } : {}),
    ...(file.error !== undefined ? { error: file.error } : {}),
  };
}

/**
 * The model library over HTTP (`/api/v1/library/*`, engine error envelope): catalog, files on
 * disk, import, delete, downloads and their live progress (SSE). Writes need the admin token;
 * reads follow the `/api/v1` API-key rule.
 */
export const modelLibraryPlugin: FastifyPluginAsync<ModelLibraryPluginOptions> = async (fastify, { library, auth, clock }) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  // Writes need the admin token, so the library audits them as `admin`.
  const actor = 'admin';

  app.get('/api/v1/library/catalog', { preHandler: auth.apiKey }, async () => library.catalog());

  app.get('/api/v1/library/files', { preHandler: auth.apiKey }, async () => ({ dir: library.dir, files: (await library.list()).map(fileView) }));

  app.get('/api/v1/library/files/:id', { preHandler: auth.apiKey, schema: { params: FileIdParams } }, async (request) => {
    const file = await library.get(request.params.id);
    if (!file) {
      const ids = (await library.list()).map((f) => f.id);
      throw new AppError(ErrorCode.MODEL_NOT_FOUND, `Model file '${request.params.id}' not found`, {
        details: [{ type: 'model_not_found', field: 'id', description: `available: ${ids.join(', ') || 'none'}` }],
      });
    }
    return fileView(file);
  });

  app.post('/api/v1/library/import', { preHandler: auth.admin, schema: { body: ImportRequest } }, async (request, reply) => {
    const file = await library.importFile(request.body.path, request.body.name, actor);
    return reply.code(201).send(fileView(file));
  });

  app.delete('/api/v1/library/files/:id', { preHandler: auth.admin, schema: { params: FileIdParams } }, async (request) => {
    await library.deleteFile(request.params.id, actor);
    return { deleted: request.params.id };
  });

  app.post('/api/v1/library/downloads', { preHandler: auth.admin, schema: { body: DownloadRequest } }, async (request, reply) => {
    const view = await library.downloads.create(request.body, actor);
    return reply.code(202).send(view);
  });

  app.get('/api/v1/library/downloads', { preHandler: auth.apiKey }, async () => ({ downloads: library.downloads.list() }));

  // SSE: the active downloads at once, then every progress/state change (`event: download`), and
  // `event: files` whenever the set of model files changes.
  app.get('/api/v1/library/downloads/events', { preHandler: auth.apiKey, config: { skipMetrics: true, watch: true } }, async (request, reply) => {
    reply.hijack();
    const raw = reply.raw;
    for (const [k, v] of Object.entries(reply.getHeaders())) if (v !== undefined) raw.setHeader(k, v);
    raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    raw.write('retry: 3000\n\n');
    const send = (view: DownloadView) => {
      if (!raw.writableEnded) raw.write(`event: download\ndata: ${JSON.stringify(view)}\n\n`);
    };
    for (const view of library.downloads.snapshot()) send(view);
    const off = library.downloads.onEvent(send);
    // The set of model files changed (download finished, import, delete, a file dropped in).
    const offFiles = library.onChange(() => {
      if (!raw.writableEnded) raw.write('event: files\ndata: {}\n\n');
    });
    const ping = clock.setInterval(() => {
      if (!raw.writableEnded) raw.write(': ping\n\n');
    }, 15_000);
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      off();
      offFiles();
      ping.cancel();
      if (!raw.writableEnded) raw.end();
    };
    request.raw.on('close', close);
    raw.on('close', close);
    raw.on('error', close);
  });

  app.get('/api/v1/library/downloads/:id', { preHandler: auth.apiKey, schema: { params: DownloadIdParams } }, async (request) => library.downloads.get(request.params.id));

  app.delete('/api/v1/library/downloads/:id', { preHandler: auth.admin, schema: { params: DownloadIdParams } }, async (request) => library.downloads.cancel(request.params.id, actor));
};
