import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trainingProtoPath } from '../../electron/core/server/grpc/trainingService.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { installTinyModel } from '../helpers/tinyModel.js';
import { TEST_TRAINER_DIR, writeCatDataset } from '../helpers/training.js';
import { waitUntil } from '../helpers/wait.js';

interface ProgressMessage {
  job_id: string;
  status: string;
  progress: { current_epoch: number; current_step: number; total_steps: number };
  metrics: { loss: number; learning_rate: number };
}
type Unary<Req, Res> = (request: Req, metadata: grpc.Metadata, callback: (err: grpc.ServiceError | null, res?: Res) => void) => void;
interface TrainingClient extends grpc.Client {
  StartTraining(request: unknown, metadata?: grpc.Metadata): grpc.ClientReadableStream<ProgressMessage>;
  GetTrainingStatus: Unary<{ job_id: string }, { job_id: string; status: string; completed_at: string; error: string; metrics: { learning_rate: number } }>;
  CancelTraining: Unary<{ job_id: string }, { job_id: string; status: string; message: string }>;
  ListTrainingJobs: Unary<{ status?: string; limit?: number }, { jobs: Array<{ job_id: string; status: string }>; total: number; limit: number }>;
}

describe('gRPC TrainingService (contract §10)', () => {
  let c: TestConsole;
  let client: TrainingClient;
  beforeAll(async () => {
    c = await startConsole({ config: { engine: { gpu: 'false' }, training: { trainerDir: TEST_TRAINER_DIR, threads: 1, gpu: 'cpu' } } });
    installTinyModel(c.dataDir, 'tiny');
    writeCatDataset(c.dataDir);
    const def = grpc.loadPackageDefinition(loadSync(trainingProtoPath(), { keepCase: true, longs: Number, enums: String, defaults: true }));
    const Ctor = ((def.cyllm as grpc.GrpcObject).v1 as grpc.GrpcObject).TrainingService as grpc.ServiceClientConstructor;
    client = new Ctor(c.grpcAddress, grpc.credentials.createInsecure()) as unknown as TrainingClient;
  });
  afterAll(async () => {
    client?.close();
    await c?.close();
  });

  const call = <Req, Res>(fn: Unary<Req, Res>, request: Req) =>
    new Promise<{ err: grpc.ServiceError | null; res?: Res }>((resolve) => fn.call(client, request, new grpc.Metadata(), (err, res) => resolve({ err, res })));

  /** A StartTraining stream of the tiny model on the cat dataset into `outputDir`. */
  const startTraining = (outputDir: string, epochs: number) =>
    client.StartTraining({ base_model: 'tiny', dataset_path: 'datasets/cat.txt', output_dir: outputDir, hyper_params: { epochs, learning_rate: 0.001, max_seq_length: 128 } });

  it('StartTraining streams progress until the job completes; status and list agree', async () => {
    const stream = startTraining('grpc-run', 1);
    const messages: ProgressMessage[] = [];
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (m: ProgressMessage) => messages.push(m));
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    expect(messages[0]!.status).toBe('QUEUED');
    expect(messages.some((m) => m.status === 'RUNNING' && m.progress.current_step > 0 && m.metrics.loss > 0)).toBe(true);
    const last = messages[messages.length - 1]!;
    expect(last.status).toBe('COMPLETED');
    expect(last.progress.current_step).toBe(last.progress.total_steps);
    const jobId = last.job_id;

    const status = await call(client.GetTrainingStatus, { job_id: jobId });
    expect(status.res).toMatchObject({ job_id: jobId, status: 'COMPLETED', error: '' });
    expect(status.res!.completed_at).toMatch(/Z$/);
    // the scheduled rate of the last step (linear decay by default), never above the requested one
    expect(status.res!.metrics.learning_rate).toBeGreaterThan(0);
    expect(status.res!.metrics.learning_rate).toBeLessThan(0.001);
    const list = await call(client.ListTrainingJobs, { status: 'completed' });
    expect(list.res!.jobs.map((j) => j.job_id)).toContain(jobId);
    expect(list.res!.limit).toBe(100);
    const again = await call(client.CancelTraining, { job_id: jobId });
    expect(again.res).toEqual({ job_id: jobId, status: 'COMPLETED', message: 'Training job is already completed' });
  }, 120_000);

  it('maps errors: INVALID_ARGUMENT with the bad fields, NOT_FOUND with x-error-code', async () => {
    const stream = client.StartTraining({ base_model: '', dataset_path: '', output_dir: 'x', lora_config: { bias: 'sometimes' } });
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      stream.on('error', resolve);
      stream.on('data', () => undefined);
    });
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.metadata.get('x-error-code')).toEqual(['INVALID_REQUEST']);
    const missing = await call(client.GetTrainingStatus, { job_id: 'job-nope' });
    expect(missing.err?.code).toBe(grpc.status.NOT_FOUND);
    expect(missing.err?.metadata.get('x-error-code')).toEqual(['TRAINING_JOB_NOT_FOUND']);
    const bad = await call(client.ListTrainingJobs, { status: 'bogus' });
    expect(bad.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  // Last: it stops the console.
  it('a drain ends a StartTraining progress stream at once with UNAVAILABLE (it does not hold the drain up)', async () => {
    const stream = startTraining('grpc-drain', 200);
    const messages: ProgressMessage[] = [];
    const ended = new Promise<string>((resolve) => {
      stream.on('error', (err: grpc.ServiceError) => resolve(`${err.code} ${err.details}`));
      stream.on('end', () => resolve('end'));
    });
    stream.on('data', (m: ProgressMessage) => messages.push(m));
    await waitUntil(() => messages.some((m) => m.status === 'RUNNING'), 60_000, 'the job to run');
    const t0 = Date.now();
    const closing = c.console.close({ graceMs: 60_000 });
    const outcome = await ended;
    expect(outcome).toMatch(new RegExp(`^${grpc.status.UNAVAILABLE} The console is stopping: .*job ${messages[0]!.job_id}`));
    // Well inside the grace: the stream did not wait for the deadline.
    expect(Date.now() - t0).toBeLessThan(30_000);
    await closing;
  }, 180_000);
});
