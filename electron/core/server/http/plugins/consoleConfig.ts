import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { maskSecretsDeep } from '../../../../../shared/mask.js';
import { issuesToDetails } from '../../../../../shared/contracts/validate.js';
import type { Clock } from '../../../base/clock.js';
import { annotatedConfigSchema, type ConfigIssue, type ConfigStore } from '../../../base/config.js';
import { AppError, ErrorCode } from '../../../base/errors.js';
import type { Store } from '../../../base/store.js';
import type { Auth } from '../../auth.js';

export interface ConsoleConfigPluginOptions extends Record<string, unknown> {
  config: ConfigStore;
  store: Store;
  auth: Auth;
  clock: Clock;
}

const AnyObject = Type.Record(Type.String(), Type.Unknown());

function invalid(issues: readonly ConfigIssue[]): AppError {
  return new AppError(ErrorCode.INVALID_REQUEST, 'Invalid config; nothing was changed', {
    details: issuesToDetails(issues),
  });
}

/**
 * Whole-console config API for the dashboard's Config page and local tools (admin token):
 * read (masked), JSON schema, replace/patch the config.json layer (validated first; an invalid
 * update changes nothing), reload from disk, and the audit log of admin actions.
 */
export const consoleConfigPlugin: FastifyPluginAsync<ConsoleConfigPluginOptions> = async (fastify, { config, store, auth, clock }) => {
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

  app.put('/api/console/config', { preHandler: auth.admin, schema: { body: AnyObject } }, async (request) => {
    const result = config.replaceFileLayer(request.body);
    if (!result.ok) throw invalid(result.issues);
    store.audit({ actor: 'admin', action: 'config.replace', detail: maskSecretsDeep(request.body), at: clock.now() });
    return view();
  });

  app.patch('/api/console/config', { preHandler: auth.admin, schema: { body: AnyObject } }, async (request) => {
    const result = config.update(request.body);
    if (!result.ok) throw invalid(result.issues);
    store.audit({ actor: 'admin', action: 'config.patch', detail: maskSecretsDeep(request.body), at: clock.now() });
    return view();
  });

  app.post('/api/console/config/reload', { preHandler: auth.admin }, async () => {
    const result = config.reload();
    if (!result.ok) throw invalid(result.issues);
    store.audit({ actor: 'admin', action: 'config.reload', at: clock.now() });
    return view();
  });

  app.get('/api/console/audit', { preHandler: auth.admin, schema: { querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })) }, { additionalProperties: false }) } }, async (request) => ({
    entries: store.recentAudit(request.query.limit ?? 100),
  }));
};
