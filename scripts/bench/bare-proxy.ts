// Floors for any Node proxy, for `npm run bench -- limiter` (issue 16). Nothing but relaying: no
// routing by model, queue, bucket, metrics, logs or validation.
//   --kind node     node:http in, an undici keep-alive pool out, the body relayed as bytes.
//   --kind fastify  the same through one Fastify route (the console's HTTP framework): the JSON body
//                   parsed and the answer sent with reply.send, as the console's proxy route does.
// Usage: tsx scripts/bench/bare-proxy.ts --upstream http://127.0.0.1:PORT [--kind node|fastify]
// Prints `bare proxy listening on http://127.0.0.1:PORT`.
import { createServer } from 'node:http';
import Fastify from 'fastify';
import { Pool } from 'undici';

const arg = (name: string) => {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
};
const upstream = new URL(arg('--upstream') ?? 'http://127.0.0.1:1');
const kind = arg('--kind') ?? 'node';
const pool = new Pool(upstream.origin, { connections: 100, keepAliveTimeout: 30_000 });
const relay = async (path: string, body: string | Buffer) => {
  const up = await pool.request({ method: 'POST', path, headers: { 'content-type': 'application/json' }, body });
  return { status: up.statusCode, type: String(up.headers['content-type'] ?? 'application/json'), body: Buffer.from(await up.body.arrayBuffer()) };
};
const ready = (port: number) => process.stdout.write(`bare proxy listening on http://127.0.0.1:${port}\n`);
let close: () => void;

if (kind === 'fastify') {
  const app = Fastify({ logger: false });
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, { raw: body, json: JSON.parse(String(body)) as unknown });
    } catch (err) {
      done(err as Error, undefined);
    }
  });
  app.post('/v1/*', async (request, reply) => {
    const { raw } = request.body as { raw: string };
    const up = await relay(request.url, raw);
    reply.code(up.status).header('content-type', up.type);
    return reply.send(up.body);
  });
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  ready(Number(new URL(address).port));
  close = () => void app.close().then(() => pool.destroy());
} else {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      relay(req.url ?? '/', Buffer.concat(chunks)).then(
        (up) => {
          res.writeHead(up.status, { 'content-type': up.type, 'content-length': up.body.length });
          res.end(up.body);
        },
        (err: Error) => res.writeHead(502).end(err.message),
      );
    });
  });
  server.keepAliveTimeout = 30_000;
  server.listen(0, '127.0.0.1', () => {
    const addr = server.address();
    if (addr && typeof addr === 'object') ready(addr.port);
  });
  close = () => {
    server.close();
    server.closeAllConnections();
    void pool.destroy();
  };
}
process.once('SIGTERM', () => close());
process.once('SIGINT', () => close());
