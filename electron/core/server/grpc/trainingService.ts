import { randomUUID } from 'node:crypto';
import {
  type Metadata,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type UntypedServiceImplementation,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { parseWithDefaults } from '../../../../shared/contracts/validate.js';
import {
  ListTrainingQuery,
  StartTrainingRequest,
  TERMINAL_STATUSES,
  TrainingStatusValue,
  type TrainingEvent,
  type TrainingJobStatus,
} from '../../../../shared/contracts/training.js';
import { Value } from '@sinclair/typebox/value';
import { AppError, ErrorCode, invalidRequest } from '../../base/errors.js';
import type { TrainingService } from '../../services/training/trainingService.js';
import type { Auth } from '../auth.js';
import { authorizeCall, loadServiceDefinition, protoPath, toGrpcError } from './grpcServer.js';

/** Path of the proto file (shared with clients and tests). */
export function trainingProtoPath(): string {
  return protoPath('training_service.proto');
}

/** The TrainingService definition, loaded from shared/proto/training_service.proto. */
export function trainingServiceDefinition(): ServiceDefinition {
  return loadServiceDefinition('training_service.proto', 'TrainingService');
}

interface TrainingRequestMessage {
  base_model?: string;
  output_dir?: string;
  dataset_path?: string;
  hyper_params?: Record<string, number> | null;
  lora_config?: { r?: number; lora_alpha?: number; lora_dropout?: number; target_modules?: string[]; bias?: string } | null;
}

const HYPER_FIELDS: Record<string, string> = {
  batch_size: 'batchSize',
  learning_rate: 'learningRate',
  epochs: 'epochs',
  max_seq_length: 'maxSeqLength',
  lora_rank: 'loraRank',
  lora_alpha: 'loraAlpha',
  lora_dropout: 'loraDropout',
  save_steps: 'saveSteps',
  eval_steps: 'evalSteps',
};
const SNAKE: Record<string, string> = {
  baseModel: 'base_model',
  outputDir: 'output_dir',
  datasetPath: 'dataset_path',
  'loraConfig.loraAlpha': 'lora_config.lora_alpha',
  'loraConfig.loraDropout': 'lora_config.lora_dropout',
  'loraConfig.targetModules': 'lora_config.target_modules',
  'loraConfig.r': 'lora_config.r',
  'loraConfig.bias': 'lora_config.bias',
  ...Object.fromEntries(Object.entries(HYPER_FIELDS).map(([snake, camel]) => [`hyperParams.${camel}`, `hyper_params.${snake}`])),
};

/** float32 on the wire: drop the representation noise (2e-4 arrives as 0.000199999995). */
const f32 = (v: number) => Number(v.toPrecision(7));

/** Request message → the REST request (0 / empty = default), validated with the same contract schema. */
export function toStartRequest(req: TrainingRequestMessage): StartTrainingRequest {
  const hyperParams: Record<string, number> = {};
  for (const [snake, camel] of Object.entries(HYPER_FIELDS)) {
    const v = req.hyper_params?.[snake];
    if (typeof v === 'number' && v !== 0) hyperParams[camel] = snake === 'learning_rate' || snake === 'lora_dropout' ? f32(v) : v;
  }
  const l = req.lora_config;
  const loraConfig = l
    ? {
        ...(l.r ? { r: l.r } : {}),
        ...(l.lora_alpha ? { loraAlpha: l.lora_alpha } : {}),
        ...(l.lora_dropout ? { loraDropout: f32(l.lora_dropout) } : {}),
        ...(l.target_modules && l.target_modules.length > 0 ? { targetModules: l.target_modules } : {}),
        ...(l.bias ? { bias: l.bias } : {}),
      }
    : undefined;
  const candidate = {
    baseModel: req.base_model ?? '',
    outputDir: req.output_dir ?? '',
    datasetPath: req.dataset_path ?? '',
    hyperParams,
    ...(loraConfig ? { loraConfig } : {}),
  };
  const parsed = parseWithDefaults(StartTrainingRequest, candidate, { rename: SNAKE });
  if (!parsed.ok) throw invalidRequest('Invalid request', parsed.details);
  return parsed.value;
}

const enumOf = (status: string) => status.toUpperCase();

function progressOf(s: TrainingJobStatus) {
  return {
    progress: {
      current_epoch: s.progress.currentEpoch,
      current_step: s.progress.currentStep,
      total_steps: s.progress.totalSteps,
      elapsed_time_seconds: s.elapsedTimeSeconds,
      estimated_time_remaining_seconds: s.estimatedTimeRemainingSeconds,
    },
    metrics: { loss: s.progress.loss ?? 0, learning_rate: s.progress.learningRate },
  };
}

export interface TrainingGrpcOptions {
  training: TrainingService;
  auth: Auth;
  /** Fires when the gRPC server drains: StartTraining's progress streams end with UNAVAILABLE then. */
  draining?: AbortSignal;
}

/**
 * gRPC TrainingService (contract §10) over the same TrainingService as the HTTP routes. Auth:
 * `x-internal-token` (auth.internalToken) or `x-api-key` under the /api/v1 key rule.
 */
export function createTrainingGrpc({ training, auth, draining }: TrainingGrpcOptions): UntypedServiceImplementation {
  const authorize = (metadata: Metadata) => authorizeCall(auth, metadata);
  const fail = (err: unknown) => toGrpcError(err instanceof AppError ? err : new AppError(ErrorCode.INTERNAL_ERROR, (err as Error)?.message ?? 'Internal error'));
  const unary = <Req>(fn: (request: Req) => Promise<unknown> | unknown) => (call: ServerUnaryCall<Req, unknown>, callback: sendUnaryData<unknown>) => {
    void (async () => {
      try {
        authorize(call.metadata);
        callback(null, await fn(call.request));
      } catch (err) {
        callback(fail(err));
      }
    })();
  };

  return {
    StartTraining(call: ServerWritableStream<TrainingRequestMessage, unknown>) {
      void (async () => {
        try {
          authorize(call.metadata);
          const request = toStartRequest(call.request);
          const started = await training.submit(request);
          const traceId = `trace-${randomUUID()}`;
          const write = (s: TrainingJobStatus) => call.write({ trace_id: traceId, job_id: s.jobId, status: enumOf(s.status), ...progressOf(s) });
          let unsubscribe: (() => void) | undefined;
          const onDrain = () => {
            unsubscribe?.();
            unsubscribe = undefined;
            if (!call.writableEnded) {
              call.emit(
                'error',
                fail(new AppError(ErrorCode.UNAVAILABLE, `The console is stopping: this progress stream ends here; ask GetTrainingStatus for job ${started.jobId} once it is back`)),
              );
            }
          };
          const end = () => {
            unsubscribe?.();
            unsubscribe = undefined;
            draining?.removeEventListener('abort', onDrain);
            if (!call.writableEnded) call.end();
          };
          call.on('cancelled', end); // the job continues
          // The first message is the queued job (as the REST start response), whatever happened since.
          call.write({
            trace_id: traceId,
            job_id: started.jobId,
            status: enumOf(started.status),
            progress: { current_epoch: 0, current_step: 0, total_steps: 0, elapsed_time_seconds: 0, estimated_time_remaining_seconds: 0 },
            metrics: { loss: 0, learning_rate: request.hyperParams.learningRate },
          });
          const current = training.status(started.jobId);
          if (current.status !== 'queued') write(current);
          if (TERMINAL_STATUSES.includes(current.status)) return end();
          if (draining?.aborted) return onDrain();
          draining?.addEventListener('abort', onDrain, { once: true });
          unsubscribe = training.onEvent(started.jobId, (event: TrainingEvent) => {
            if (event.type === 'log' || event.type === 'validation') return;
            const s = event.type === 'status' ? event.data : training.status(started.jobId);
            write(s);
            if (TERMINAL_STATUSES.includes(s.status)) end();
          });
        } catch (err) {
          if (!call.cancelled) call.emit('error', fail(err));
        }
      })();
    },

    GetTrainingStatus: unary<{ job_id?: string }>((req) => {
      const s = training.status(req.job_id ?? '');
      return {
        job_id: s.jobId,
        status: enumOf(s.status),
        ...progressOf(s),
        created_at: s.createdAt,
        started_at: s.startedAt ?? '',
        completed_at: s.completedAt ?? '',
        error: s.error ?? '',
      };
    }),

    CancelTraining: unary<{ job_id?: string }>(async (req) => {
      const r = await training.cancel(req.job_id ?? '');
      return { job_id: r.jobId, status: enumOf(r.status), message: r.message };
    }),

    ListTrainingJobs: unary<{ status?: string; limit?: number; offset?: number }>((req) => {
      const status = req.status ? req.status.toLowerCase() : undefined;
      if (status !== undefined && !Value.Check(TrainingStatusValue, status)) {
        throw invalidRequest('Invalid request', [{ type: 'validation', field: 'status', description: 'must be one of queued, running, paused, completed, failed, cancelled' }]);
      }
      const query: ListTrainingQuery = { limit: req.limit || 100, offset: Math.max(0, req.offset ?? 0), ...(status ? { status: status as TrainingStatusValue } : {}) };
      const r = training.list(query);
      return {
        jobs: r.jobs.map((j) => ({ job_id: j.jobId, base_model: j.baseModel, status: enumOf(j.status), created_at: j.createdAt, completed_at: j.completedAt ?? '' })),
        total: r.total,
        limit: r.limit,
        offset: r.offset,
      };
    }),
  };
}
