import { join } from 'node:path';
import {
  loadPackageDefinition,
  Metadata,
  Server,
  ServerCredentials,
  status as GrpcStatus,
  type GrpcObject,
  type ServiceClientConstructor,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import type { Logger } from 'pino';
import { AppError, ErrorCode } from '../../base/errors.js';
import { packageRoot } from '../../base/packageInfo.js';
import type { Auth } from '../auth.js';

/** Checks a call's metadata (`x-internal-token`, else `x-api-key`) against the gRPC auth rule. */
export function authorizeCall(auth: Auth, metadata: Metadata): void {
  const first = (key: string) => {
    const value = metadata.get(key)[0];
    return typeof value === 'string' ? value : undefined;
  };
  auth.checkGrpcCaller(first('x-internal-token'), first('x-api-key'));
}

/** Options for loading the console's protos (the server's and the tests' clients use the same). */
export const PROTO_LOADER_OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true } as const;

/** Path of a proto file in `shared/proto/` (shared with clients and tests). */
export function protoPath(file: string): string {
  return join(packageRoot(), 'shared/proto', file);
}

/** Loads `cyllm.v1.<service>` from `shared/proto/<file>` and returns its definition. */
export function loadServiceDefinition(file: string, service: string): ServiceDefinition {
  const pkg = loadPackageDefinition(loadSync(protoPath(file), PROTO_LOADER_OPTIONS));
  const ctor = ((pkg.cyllm as GrpcObject).v1 as GrpcObject)[service] as ServiceClientConstructor;
  return ctor.service;
}

export interface GrpcServerOptions {
  host: string;
  port: number;
  logger: Logger;
}

const GRPC_CODE: Record<ErrorCode, GrpcStatus> = {
  INVALID_REQUEST: GrpcStatus.INVALID_ARGUMENT,
  UNAUTHENTICATED: GrpcStatus.UNAUTHENTICATED,
  FORBIDDEN: GrpcStatus.PERMISSION_DENIED,
  NOT_FOUND: GrpcStatus.NOT_FOUND,
  MODEL_NOT_FOUND: GrpcStatus.NOT_FOUND,
  TRAINING_JOB_NOT_FOUND: GrpcStatus.NOT_FOUND,
  RATE_LIMITED: GrpcStatus.RESOURCE_EXHAUSTED,
  MODEL_NOT_READY: GrpcStatus.UNAVAILABLE,
  INSUFFICIENT_RESOURCES: GrpcStatus.UNAVAILABLE,
  UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  TRAINING_JOB_RUNNING: GrpcStatus.FAILED_PRECONDITION,
  CONFLICT: GrpcStatus.FAILED_PRECONDITION,
  TIMEOUT: GrpcStatus.DEADLINE_EXCEEDED,
  METHOD_NOT_ALLOWED: GrpcStatus.UNIMPLEMENTED,
  PAYLOAD_TOO_LARGE: GrpcStatus.INVALID_ARGUMENT,
  UNSUPPORTED_MEDIA_TYPE: GrpcStatus.INVALID_ARGUMENT,
  MISDIRECTED_REQUEST: GrpcStatus.INVALID_ARGUMENT,
  UPSTREAM_ERROR: GrpcStatus.UNAVAILABLE,
  INTERNAL_ERROR: GrpcStatus.INTERNAL,
};

/** A gRPC error with the contract's mapping (§10): status code + `x-error-code` trailer. */
export interface GrpcServiceError {
  code: GrpcStatus;
  details: string;
  metadata: Metadata;
}

/** Maps anything thrown by a service to a gRPC error (contract §10 error mapping). */
export function toGrpcError(error: unknown): GrpcServiceError {
  const err = error instanceof AppError ? error : new AppError(ErrorCode.INTERNAL_ERROR, (error as Error)?.message ?? 'Internal error');
  const metadata = new Metadata();
  metadata.set('x-error-code', err.code);
  return { code: GRPC_CODE[err.code], details: limitDetails(err.message), metadata };
}

/**
 * Status details travel in an HTTP/2 trailer: a message that echoes a huge field (a 1 MiB job id)
 * would overflow the peer's header limit and the call would never finish. Keep them short.
 */
const MAX_DETAILS = 1024;
function limitDetails(details: string): string {
  return details.length <= MAX_DETAILS ? details : `${details.slice(0, MAX_DETAILS)}… (${details.length - MAX_DETAILS} more characters)`;
}

/** A request whose bytes do not decode as the method's message. */
class UndecodableRequest {
  constructor(readonly reason: string) {}
}

/**
 * Wraps a service so a request that does not decode answers INVALID_ARGUMENT (grpc-js's own answer
 * is INTERNAL "Error deserializing request", which reads as a server bug), and error details stay
 * short (see limitDetails).
 */
function hardenService(definition: ServiceDefinition, impl: UntypedServiceImplementation): { definition: ServiceDefinition; impl: UntypedServiceImplementation } {
  const outDef: Record<string, unknown> = {};
  const outImpl: UntypedServiceImplementation = {};
  for (const [name, d] of Object.entries(definition)) {
    outDef[name] = {
      ...d,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return d.requestDeserialize(bytes);
        } catch (err) {
          return new UndecodableRequest((err as Error)?.message ?? 'undecodable');
        }
      },
    };
    const handler = impl[name] ?? (d.originalName ? impl[d.originalName] : undefined);
    if (!handler) continue;
    const invalid = (reason: string): GrpcServiceError => {
      const metadata = new Metadata();
      metadata.set('x-error-code', ErrorCode.INVALID_REQUEST);
      return { code: GrpcStatus.INVALID_ARGUMENT, details: limitDetails(`Request does not decode as ${name}'s message: ${reason}`), metadata };
    };
    // grpc-js hands unary handlers (call, callback) and server-streaming ones (call); both are called through this shape.
    const h = handler as (call: unknown, callback?: (err: unknown, value?: unknown) => void) => void;
    if (!d.requestStream && !d.responseStream) {
      outImpl[name] = ((call: { request: unknown }, callback: (err: unknown, value?: unknown) => void) => {
        if (call.request instanceof UndecodableRequest) return callback(invalid(call.request.reason));
        h(call, (err: unknown, value?: unknown) => {
          if (err && typeof (err as { details?: unknown }).details === 'string') {
            const e = err as { details: string };
            e.details = limitDetails(e.details);
          }
          callback(err, value);
        });
      }) as UntypedServiceImplementation[string];
    } else if (!d.requestStream) {
      outImpl[name] = ((call: { request: unknown; emit: (event: string, e: unknown) => void }) => {
        if (call.request instanceof UndecodableRequest) return void call.emit('error', invalid(call.request.reason));
        h(call);
      }) as UntypedServiceImplementation[string];
    } else {
      outImpl[name] = handler;
    }
  }
  return { definition: outDef as ServiceDefinition, impl: outImpl };
}

/**
 * The gRPC adapter: one @grpc/grpc-js server with the standard health service
 * (grpc.health.v1). Services are added before start().
 */
export class GrpcServer {
  private server: Server | null = null;
  private readonly health = new HealthImplementation({ '': 'NOT_SERVING' });
  private readonly services: Array<{ name: string; definition: ServiceDefinition; impl: UntypedServiceImplementation }> = [];
  private boundPort = 0;

  private readonly drainStart = new AbortController();

  constructor(private readonly options: GrpcServerOptions) {}

  /**
   * Fires when a drain begins: endless watch streams (e.g. StartTraining's progress) end then with
   * UNAVAILABLE instead of holding the drain up until its deadline (their work goes on without them).
   */
  get draining(): AbortSignal {
    return this.drainStart.signal;
  }

  /** Adds a service; `name` is its fully qualified name for health checks (e.g. `cyllm.v1.AIService`). */
  addService(name: string, definition: ServiceDefinition, impl: UntypedServiceImplementation): void {
    if (this.server) throw new Error('gRPC services must be added before start()');
    this.services.push({ name, ...hardenService(definition, impl) });
  }

  setServingStatus(service: string, status: ServingStatus): void {
    this.health.setStatus(service, status);
  }

  get port(): number {
    return this.boundPort;
  }

  async start(): Promise<number> {
    if (this.server) return this.boundPort;
    const server = new Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
    this.health.addToServer(server);
    for (const s of this.services) server.addService(s.definition, s.impl);
    const host = this.options.host.includes(':') && !this.options.host.startsWith('[') ? `[${this.options.host}]` : this.options.host;
    this.boundPort = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`${host}:${this.options.port}`, ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port)));
    });
    this.server = server;
    this.health.setStatus('', 'SERVING');
    for (const s of this.services) this.health.setStatus(s.name, 'SERVING');
    return this.boundPort;
  }

  /** Graceful shutdown with a deadline, then force (streams in flight are cancelled). */
  async stop(graceMs = 2000): Promise<void> {
    const grace = new AbortController();
    const timer = setTimeout(() => grace.abort(), graceMs);
    try {
      await this.close(grace.signal);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Drains: `tryShutdown` (calls in flight finish, new ones are refused), `forceShutdown` when `deadline` fires. */
  async close(deadline: AbortSignal): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    this.health.setStatus('', 'NOT_SERVING');
    this.drainStart.abort();
    await new Promise<void>((resolve) => {
      const force = () => {
        server.forceShutdown();
        resolve();
      };
      if (deadline.aborted) {
        force();
        return;
      }
      deadline.addEventListener('abort', force, { once: true });
      server.tryShutdown(() => {
        deadline.removeEventListener('abort', force);
        resolve();
      });
    });
  }
}
