import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { AlertmanagerWebhookBody, AlertsReceivedResponse, AlertsResponse } from '../../../../../shared/contracts/alerts.js';
import type { AlertInbox } from '../../../services/ops/alertInbox.js';
import type { Auth } from '../../auth.js';

export interface AlertsPluginOptions extends Record<string, unknown> {
  inbox: AlertInbox;
  auth: Auth;
}

/**
 * Alertmanager's webhook receiver and the firing alerts it left. POST needs the admin token (it
 * changes what the dashboard tells the operator, so it is an admin write like config changes;
 * Alertmanager sends it with `http_config.authorization.credentials_file`); GET follows the
 * read-only API-key rule.
 */
export const alertsPlugin: FastifyPluginAsync<AlertsPluginOptions> = async (fastify, { inbox, auth }) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  app.post('/api/alerts', { preHandler: auth.admin, schema: { body: AlertmanagerWebhookBody, response: { 200: AlertsReceivedResponse } } }, async (request) => {
    const { firing, resolved } = inbox.receive(request.body);
    return { status: 'ok' as const, firing, resolved };
  });
  app.get('/api/alerts', { preHandler: auth.apiKey, schema: { response: { 200: AlertsResponse } } }, async () => inbox.snapshot());
};
