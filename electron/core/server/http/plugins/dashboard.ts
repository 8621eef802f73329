import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { DASHBOARD_PAGES } from '../../../../../shared/contracts/console.js';

export interface DashboardPluginOptions extends Record<string, unknown> {
  /** The built dashboard (vite's output): index.html + assets/. */
  root: string;
}

/** CSP for the dashboard page: scripts and connections only to this origin (and its WebSocket). */
export function dashboardCsp(host: string | undefined): string {
  const ws = host ? ` ws://${host}` : '';
  return [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self'",
    `connect-src 'self'${ws}`,
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "form-action 'none'",
  ].join('; ');
}

const NOT_BUILT = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Console</title></head><body>
<h1>The dashboard is not built</h1><p>Run <code>npm run build</code> (or start with <code>npm run serve</code>, which builds it), then reload.</p>
<p>The API is up: try <a href="/health">/health</a>.</p></body></html>`;

/**
 * Serves the built dashboard at `/`: hashed assets under `/assets/` (cached for a year), and
 * index.html for `/` and every client route (SPA fallback). Only those paths: an unknown API
 * path still gets the API's own 404.
 */
export const dashboardPlugin: FastifyPluginAsync<DashboardPluginOptions> = async (app, { root }) => {
  const indexPath = join(root, 'index.html');
  let cached: { mtime: number; html: string } | null = null;
  const readIndex = (): string | null => {
    if (!existsSync(indexPath)) return null;
    const mtime = statSync(indexPath).mtimeMs;
    if (!cached || cached.mtime !== mtime) cached = { mtime, html: readFileSync(indexPath, 'utf8') };
    return cached.html;
  };
  const sendIndex = async (request: FastifyRequest, reply: FastifyReply) => {
    const html = readIndex();
    reply
      .header('content-security-policy', dashboardCsp(request.headers.host))
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-cache')
      .type('text/html; charset=utf-8');
    if (html === null) return reply.code(503).send(NOT_BUILT);
    return reply.send(html);
  };

  for (const page of DASHBOARD_PAGES) app.get(page.path, { config: { skipMetrics: true } }, sendIndex);
  app.get('/index.html', { config: { skipMetrics: true } }, sendIndex);

  await app.register(fastifyStatic, {
    root: join(root, 'assets'),
    prefix: '/assets/',
    // Assets may be built after the core started (tests, `npm run build` while serving).
    wildcard: true,
    index: false,
    immutable: true,
    maxAge: '365d',
    allowedPath: (path) => !path.includes('..'),
  });
  app.get('/favicon.svg', { config: { skipMetrics: true } }, (_request, reply) => {
    const file = join(root, 'favicon.svg');
    if (!existsSync(file)) return reply.callNotFound();
    return reply.type('image/svg+xml').header('cache-control', 'max-age=86400').send(readFileSync(file));
  });
};
