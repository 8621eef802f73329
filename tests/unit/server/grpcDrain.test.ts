import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { GrpcServer } from '../../../electron/core/server/grpc/grpcServer.js';
import { waitUntil } from '../../helpers/wait.js';

interface HealthClient extends grpc.Client {
  watch(request: { service: string }): grpc.ClientReadableStream<{ status: string }>;
}

describe('GrpcServer.close(deadline)', () => {
  it('lets a call in flight run (tryShutdown) and cuts it only when the deadline fires (forceShutdown)', async () => {
    const server = new GrpcServer({ host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }) });
    const port = await server.start();
    const def = grpc.loadPackageDefinition(loadSync(protoPath, { keepCase: true, enums: String }));
    const Health = (def.grpc as { health: { v1: { Health: grpc.ServiceClientConstructor } } }).health.v1.Health;
    const client = new Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as HealthClient;
    try {
      // An endless server stream: the kind of call a drain must not cut before its deadline.
      const statuses: string[] = [];
      const call = client.watch({ service: '' });
      call.on('data', (m: { status: string }) => statuses.push(m.status));
      const ended = new Promise<string>((resolve) => {
        call.on('error', (err: grpc.ServiceError) => resolve(`error ${err.code}`));
        call.on('end', () => resolve('end'));
      });
      await waitUntil(() => statuses.includes('SERVING'), 5000, 'the watch stream to report SERVING');
      const deadline = new AbortController();
      let closed = false;
      const closing = server.close(deadline.signal).then(() => (closed = true));
      // The stream in flight hears NOT_SERVING and stays open while the drain runs.
      await waitUntil(() => statuses.includes('NOT_SERVING'), 5000, 'the watch stream to report NOT_SERVING');
      // A fixed wait on purpose: before the deadline nothing may cut the call; there is no event to wait for.
      await new Promise((r) => setTimeout(r, 200));
      expect(closed).toBe(false);
      deadline.abort();
      await closing;
      expect(await ended).toMatch(/^(error \d+|end)$/);
    } finally {
      client.close();
      await server.stop();
    }
  });
});
