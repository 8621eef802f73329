import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';

interface HealthClient extends grpc.Client {
  check(request: { service: string }, callback: (err: grpc.ServiceError | null, response?: { status: string }) => void): void;
}

describe('gRPC server', () => {
  let c: TestConsole;
  let client: HealthClient;
  beforeAll(async () => {
    c = await startConsole();
    const def = grpc.loadPackageDefinition(loadSync(protoPath, { keepCase: true, enums: String }));
    const Health = (def.grpc as { health: { v1: { Health: grpc.ServiceClientConstructor } } }).health.v1.Health;
    client = new Health(c.grpcAddress, grpc.credentials.createInsecure()) as unknown as HealthClient;
  });
  afterAll(async () => {
    client.close();
    await c.close();
  });

  const check = (service: string) =>
    new Promise<{ status?: string; code?: number }>((resolve) => {
      client.check({ service }, (err, res) => resolve(err ? { code: err.code } : { status: res?.status }));
    });

  it('answers grpc.health.v1 Check for the server as SERVING', async () => {
    expect(await check('')).toEqual({ status: 'SERVING' });
  });

  it('answers NOT_FOUND for an unknown service', async () => {
    expect(await check('no.such.Service')).toEqual({ code: grpc.status.NOT_FOUND });
  });
});
