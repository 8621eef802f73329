/**
 * Small interfaces one service offers another. The composition root passes the implementation
 * (monitoring's services) to the consumers (engine, training) through their constructors, so no
 * service imports another service's internals.
 */

/** A held GPU lock, as returned by acquire/renew. */
export interface GpuLease {
  gpuId: number;
  holder: string;
  purpose: string;
  /** Strictly increasing per GPU; renew/release/heartbeats must present it. */
  fencingToken: number;
  ttlSeconds: number;
  /** Wall-clock expiry, Unix ms (informational; expiry itself is computed on the monotonic clock). */
  expiresAt: number;
}

export interface GpuLockRequest {
  gpuId: number;
  holder: string;
  purpose: string;
  /** Defaults to monitoring's configured lock TTL. */
  ttlSeconds?: number;
}

/**
 * GPU locks (implemented by monitoring). Methods reject with an AppError: 409 CONFLICT when the GPU
 * is held by someone else or the fencing token is stale, 404 when the lock does not exist.
 */
export interface GpuLockPort {
  acquire(request: GpuLockRequest): Promise<GpuLease>;
  renew(gpuId: number, holder: string, fencingToken: number, ttlSeconds?: number): Promise<GpuLease>;
  release(gpuId: number, holder: string, fencingToken: number): Promise<void>;
}

export interface TaskRegistration {
  taskId: string;
  /** Who runs it (e.g. `training`). */
  owner: string;
  /** GPU lock the task holds, if any (lets monitoring find orphans and release on timeout). */
  gpuId?: number;
  fencingToken?: number;
  /** Missed-heartbeat timeout; defaults to monitoring's configured value. */
  timeoutSeconds?: number;
  metadata?: Record<string, unknown>;
}

/** Task heartbeats (implemented by monitoring). */
export interface HeartbeatPort {
  register(task: TaskRegistration): Promise<void>;
  beat(taskId: string, progress?: Record<string, unknown>): Promise<void>;
  /** The task ended (normally or not); it stops being watched. */
  complete(taskId: string, outcome: 'completed' | 'failed' | 'cancelled'): Promise<void>;
  /** Called by the timeout manager when the task missed its heartbeat (its lock is already released). */
  onTimeout(taskId: string, handler: () => void): () => void;
}

/** A GGUF model file in the models dir (implemented by the models service, consumed by the engine). */
export interface LocalModelFile {
  /** File name without `.gguf`; safe to use in URLs (never contains `/`, `\`, `..`). */
  id: string;
  /** Absolute path, always inside the models dir (symlinks resolved and checked). */
  path: string;
  sizeBytes: number;
  /** Unix ms of the file's last change. */
  modifiedAt: number;
  /** From the GGUF header, when it parsed. */
  architecture?: string;
  /** Trained context length from the GGUF header, when present. */
  contextLength?: number;
  /** `general.name` from the GGUF header, when present (a display name). */
  displayName?: string;
  /** Why the file is not usable (e.g. the GGUF header does not parse); absent when fine. */
  error?: string;
}

/** A LoRA adapter of the models dir: served on its base as the model id `<base>+<name>`. */
export interface LocalAdapterFile {
  name: string;
  /** Model id of the base it was trained on. */
  base: string;
  path: string;
  sizeBytes: number;
  modifiedAt: number;
  /** The training lineage from the sidecar (base and dataset sha256, parameters, final losses). */
  lineage: Record<string, unknown>;
}

/**
 * Read side of the model library. `get` takes an untrusted id: an id that is not a plain
 * file name (`../x`, `%2e%2e`, absolute, backslashes, a symlink out of the dir) rejects with
 * AppError INVALID_REQUEST; an unknown but well-formed id resolves to undefined.
 */
export interface ModelFilesPort {
  list(): Promise<LocalModelFile[]>;
  get(id: string): Promise<LocalModelFile | undefined>;
  /** LoRA adapters published into the models dir (`adapters/<name>.gguf` + `<name>.json`); optional for test doubles. */
  adapters?(): Promise<LocalAdapterFile[]>;
  /** The recommended models (id, `hf:` uri); optional for test doubles. */
  catalog?(): Promise<{ models: Array<{ id: string; uri: string }> }>;
  /** Called after a model file is added or removed (download finished, import, deletion). */
  onChange(listener: () => void): () => void;
}

/**
 * The engine's side of sharing the GPU with training: a job that took the GPU lock asks the engine
 * to give the GPU up (unload its models, or move them to the CPU, per `training.enginePolicy`)
 * before the trainer starts, and hands it back when the job ends.
 */
export interface GpuTenantPort {
  /** Resolves once the engine's models are off the GPU (in-flight generations are let finish). */
  yieldGpu(claim: { gpuId: number; holder: string; purpose: string; policy: 'unload' | 'cpu' | 'keep' }): Promise<void>;
  /** The job ended: models may use the GPU again. */
  reclaimGpu(holder: string): void;
}

/** One admin action for the audit log. `actor` is who asked (`admin` over HTTP/gRPC with the admin token, a service name when the console acted on its own). */
export interface AuditRecord {
  actor: string;
  action: string;
  /** What the action applied to (a process, model, download, lock key); absent for console-wide actions. */
  target?: string;
  /** JSON-serialisable detail; secrets already masked by the caller. */
  detail?: unknown;
}

/**
 * The audit log (implemented over the store in the composition root). Services record the admin
 * actions they perform, so every surface (HTTP, gRPC, tray) audits the same way; the time is taken
 * from the injected clock by the implementation.
 */
export interface AuditPort {
  record(entry: AuditRecord): void;
}
