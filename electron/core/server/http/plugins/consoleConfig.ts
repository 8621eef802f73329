import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { maskSecretsDeep } from '../../../../../shared/mask.js';
import { annotatedConfigSchema, type ConfigStore } from '../../../base/config.js';
import type { ConfigAdmin } from '../../../base/configAdmin.js';
import type { Store } from '../../../base/store.js';
import type { Auth } from '../../auth.js';

export interface ConsoleConfigPluginOptions extends Record<string, unknown> {
  config: ConfigStore;
  /** Applies and audits the admin's changes. */
  admin: ConfigAdmin;
  /** Read side of the audit log. */
  store: Store;
  auth: Auth;
}

const AnyObject = Type.Record(Type.String(), Type.Unknown());

/**
 * Whole-console config API for the dashboard's Config page and local tools (admin token):
 * read (masked), JSON schema, replace/patch the config.json layer (validated first; an invalid
 * update changes nothing), reload from disk, and the audit log of admin actions.
 */
export const consoleConfigPlugin: FastifyPluginAsync<ConsoleConfigPluginOptions> = async (fastify, { config, admin, store, auth }) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const view = () => ({
    config: maskSecretsDeep(config.get()) as Record<string, unknown>,
    file: maskSecretsDeep(config.fileLayer()),
    overridden: config.overriddenPaths(),
    pinnedBy: config.pinnedBy(),
    path: config.path,
  });

  app.get('/api/console/config', { preHandler: auth.admin }, async () => view());
  const schema = annotatedConfigSchema();
  app.get('/api/console/config/schema', async () => schema);

  // Writes need the admin token, so they are audited as `admin`.
  const actor = 'admin';
  app.put('/api/console/config', { preHandler: auth.admin, schema: { body: AnyObject } }, async (request) => {
    admin.replace(request.body, actor);
    return view();
  });

  app.patch('/api/console/config', { preHandler: auth.admin, schema: { body: AnyObject } }, async (request) => {
    admin.patch(request.body, actor);
    return view();
  });

  app.post('/api/console/config/reload', { preHandler: auth.admin }, async () => {
    admin.reload(actor);
    return view();
  });

  app.get('/api/console/audit', { preHandler: auth.admin, schema: { querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })) }, { additionalProperties: false }) } }, async (request) => ({
    entries: store.recentAudit(request.query.limit ?? 100),
  }));
};
