import type {
  CatalogEntry,
  ChatParams,
  ConsoleConfigView,
  DownloadInfo,
  GatewayStatus,
  GpuLockStatus,
  HealthDetails,
  HeartbeatsAll,
  LibraryFile,
  ProcessInfo,
  LimiterResetResult,
  LimiterStatus,
  LockReleaseResult,
  ModelsList,
  OpenAiModelList,
  RuntimeMode,
  RuntimeStartRequest,
  TrainingList,
  TrainingStartRequest,
  TrainingLogs,
  TrainingLoss,
  TrainingStatus,
} from './apiTypes.js';
import type { ConsoleLogRecord, LogFilter } from '../contracts/console.js';
import type { DatasetDetails, DatasetListResponse } from '../contracts/datasets.js';

/** One bad field reported by the server (any of the contract's envelopes). */
export interface FieldError {
  field: string;
  message: string;
}

/** A non-2xx answer, normalised from whichever envelope its route family uses (contract §1.3). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | undefined,
    readonly fields: FieldError[],
  ) {
    super(message);
    this.name = 'ApiError';
  }
  /** True when the route does not exist in this build (the service is not there). */
  get isMissing(): boolean {
    return this.status === 404 && (this.code === 'NOT_FOUND' || /no route/i.test(this.message));
  }
}

/** The network failed (core down, connection refused). */
export class NetworkError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NetworkError';
  }
}

/** Parses any of the contract's error envelopes. */
export function parseErrorBody(status: number, body: unknown): ApiError {
  if (typeof body === 'string') return new ApiError(status, body.trim() || `HTTP ${status}`, undefined, []);
  if (body && typeof body === 'object') {
    const b = body as Record<string, unknown>;
    if (typeof b.detail === 'string') return new ApiError(status, b.detail, undefined, []);
    if (typeof b.error === 'string') return new ApiError(status, b.error, undefined, []);
    if (b.error && typeof b.error === 'object') {
      const e = b.error as Record<string, unknown>;
      const details = Array.isArray(e.details) ? e.details : [];
      const fields = details
        .filter((d): d is Record<string, unknown> => !!d && typeof d === 'object')
        .map((d) => ({ field: String(d.field ?? ''), message: String(d.description ?? d.type ?? '') }));
      const code = typeof e.code === 'string' ? e.code : typeof e.type === 'string' ? e.type : undefined;
      return new ApiError(status, String(e.message ?? `HTTP ${status}`), code, fields);
    }
  }
  return new ApiError(status, `HTTP ${status}`, undefined, []);
}

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface ConsoleClientOptions {
  /** Base URL of the core, e.g. `http://127.0.0.1:8080` ('' = the page's own origin). */
  baseUrl: string;
  /** Admin token (sent as a bearer token; also valid as an API key). */
  token?: string | null;
  /** fetch to use (tests inject one); the global fetch by default. */
  fetch?: FetchLike;
}

/** Chunks of a streamed chat completion. */
export interface ChatStreamEvents {
  onDelta(text: string): void;
  /** Usage when the server sends it (stream_options.include_usage). */
  onUsage?(usage: { prompt_tokens: number; completion_tokens: number }): void;
}

/** Reads an SSE body and yields each `data:` payload (without the prefix). */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let sep: number;
      while ((sep = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const frame = buffer.slice(0, sep);
        buffer = buffer.slice(sep).replace(/^\r?\n\r?\n/, '');
        const data = frame
          .split(/\r?\n/)
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).replace(/^ /, ''))
          .join('\n');
        if (data) yield data;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * The typed HTTP client the dashboard (and any local tool) uses: one method per endpoint of the
 * contract it needs, errors as {@link ApiError} with every bad field.
 */
export class ConsoleClient {
  private token: string | null;
  private readonly fetchImpl: FetchLike;
  readonly baseUrl: string;

  constructor(options: ConsoleClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/$/, '');
    this.token = options.token ?? null;
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
  }

  setToken(token: string | null): void {
    this.token = token;
  }
  getToken(): string | null {
    return this.token;
  }

  /** Raw request: JSON in, JSON (or text) out; non-2xx → ApiError; network failure → NetworkError. */
  async request<T>(method: string, path: string, body?: unknown, init: RequestInit = {}): Promise<T> {
    const res = await this.send(method, path, body, init);
    const text = await res.text();
    const type = res.headers.get('content-type') ?? '';
    const parsed: unknown = type.includes('json') && text ? JSON.parse(text) : text;
    if (!res.ok) throw parseErrorBody(res.status, parsed);
    return parsed as T;
  }

  private async send(method: string, path: string, body?: unknown, init: RequestInit = {}): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    // A FormData body (uploads) is sent as multipart/form-data, with the boundary fetch chooses.
    const form = typeof FormData !== 'undefined' && body instanceof FormData;
    if (body !== undefined && !form) headers['content-type'] = 'application/json';
    try {
      return await this.fetchImpl(`${this.baseUrl}${path}`, { ...init, method, headers, body: body === undefined ? undefined : form ? body : JSON.stringify(body) });
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err;
      throw new NetworkError(`cannot reach the console at ${this.baseUrl || 'this origin'}: ${(err as Error).message}`);
    }
  }

  // --- core ---
  health() {
    return this.request<{ status: string; uptime: number; version: string }>('GET', '/health');
  }
  healthDetails() {
    return this.request<HealthDetails>('GET', '/api/v1/health/details');
  }
  /** Exchanges the one-time login code from the start-up link for the admin token. */
  exchangeLoginCode(code: string) {
    return this.request<{ token: string }>('POST', '/api/console/session', { code });
  }
  /** Checks the current token against an admin endpoint. */
  async checkAdmin(): Promise<boolean> {
    try {
      await this.request('GET', '/api/console/session');
      return true;
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return false;
      throw err;
    }
  }
  logs(filter: LogFilter & { limit?: number } = {}) {
    return this.request<{ records: ConsoleLogRecord[] }>('GET', `/api/console/logs${query({ ...filter })}`);
  }
  config() {
    return this.request<ConsoleConfigView>('GET', '/api/console/config');
  }
  configSchema() {
    return this.request<Record<string, unknown>>('GET', '/api/console/config/schema');
  }
  patchConfig(patch: Record<string, unknown>) {
    return this.request<ConsoleConfigView>('PATCH', '/api/console/config', patch);
  }
  reloadConfig() {
    return this.request<ConsoleConfigView>('POST', '/api/console/config/reload');
  }

  // --- limiter (§6) ---
  limiterStatus() {
    return this.request<LimiterStatus>('GET', '/api/limiter/status');
  }
  limiterReset() {
    return this.request<LimiterResetResult>('POST', '/api/limiter/admin/reset');
  }

  // --- monitoring (§7) ---
  gpuLock(lockKey = 'gpu_lock:0') {
    return this.request<GpuLockStatus>('GET', `/api/v1/monitoring/gpu-lock/status${query({ lock_key: lockKey })}`);
  }
  heartbeats() {
    return this.request<HeartbeatsAll>('GET', '/api/v1/monitoring/heartbeat/all');
  }
  releaseLock(lockKey: string) {
    return this.request<LockReleaseResult>('POST', '/api/v1/monitoring/lock/release', { lock_key: lockKey, task_name: 'dashboard' });
  }
  cleanupHeartbeats() {
    return this.request<{ success: boolean; cleaned_dead_tasks: number }>('POST', '/api/v1/monitoring/heartbeat/cleanup');
  }

  // --- engine & models (§3, §5) ---
  models() {
    return this.request<ModelsList>('GET', '/api/v1/models');
  }
  openAiModels() {
    return this.request<OpenAiModelList>('GET', '/v1/models');
  }
  loadModel(id: string) {
    return this.request<unknown>('POST', `/api/v1/models/${encodeURIComponent(id)}/load`);
  }
  unloadModel(id: string) {
    return this.request<unknown>('POST', `/api/v1/models/${encodeURIComponent(id)}/unload`);
  }
  catalog() {
    return this.request<{ models: CatalogEntry[] }>('GET', '/api/v1/library/catalog').then((r) => r.models);
  }
  libraryFiles() {
    return this.request<{ dir: string; files: LibraryFile[] }>('GET', '/api/v1/library/files');
  }
  downloads() {
    return this.request<{ downloads: DownloadInfo[] }>('GET', '/api/v1/library/downloads').then((r) => r.downloads);
  }
  startDownload(uri: string) {
    return this.request<DownloadInfo>('POST', '/api/v1/library/downloads', { uri });
  }
  cancelDownload(id: string) {
    return this.request<unknown>('DELETE', `/api/v1/library/downloads/${encodeURIComponent(id)}`);
  }

  /**
   * Streams a chat completion (`POST /v1/chat/completions`, stream: true); resolves when the
   * stream ends or `signal` aborts it. Errors before the first chunk throw ApiError.
   */
  async chatStream(params: ChatParams, events: ChatStreamEvents, signal?: AbortSignal): Promise<{ finishReason: string | null }> {
    const res = await this.send('POST', '/v1/chat/completions', { ...params, stream: true, stream_options: { include_usage: true } }, signal ? { signal } : {});
    if (!res.ok || !res.body) {
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // plain text
      }
      throw parseErrorBody(res.status, parsed);
    }
    let finishReason: string | null = null;
    for await (const data of readSse(res.body)) {
      if (data === '[DONE]') break;
      let chunk: { error?: unknown; choices?: Array<{ delta?: { content?: string }; finish_reason?: string | null }>; usage?: { prompt_tokens: number; completion_tokens: number } };
      try {
        chunk = JSON.parse(data) as typeof chunk;
      } catch {
        continue;
      }
      if (chunk.error) throw parseErrorBody(500, chunk);
      const choice = chunk.choices?.[0];
      if (choice?.delta?.content) events.onDelta(choice.delta.content);
      if (choice?.finish_reason) finishReason = choice.finish_reason;
      if (chunk.usage) events.onUsage?.(chunk.usage);
    }
    return { finishReason };
  }

  // --- training (§4) ---
  trainingList() {
    return this.request<TrainingList>('GET', '/api/v1/training/list');
  }
  trainingStatus(jobId: string) {
    return this.request<TrainingStatus>('GET', `/api/v1/training/status/${encodeURIComponent(jobId)}`);
  }
  startTraining(body: TrainingStartRequest) {
    return this.request<{ jobId: string; status: string }>('POST', '/api/v1/training/start', body);
  }
  trainingLoss(jobId: string, afterStep = -1) {
    return this.request<TrainingLoss>('GET', `/api/v1/training/${encodeURIComponent(jobId)}/loss${query({ afterStep })}`);
  }
  trainingLogs(jobId: string, afterId = 0) {
    return this.request<TrainingLogs>('GET', `/api/v1/training/${encodeURIComponent(jobId)}/logs${query({ afterId })}`);
  }
  /** Uploaded training datasets (`DATA_DIR/datasets/`). */
  trainingDatasets() {
    return this.request<DatasetListResponse>('GET', '/api/v1/training/datasets');
  }
  /** One dataset's details with a preview of its first rows. */
  trainingDataset(name: string) {
    return this.request<DatasetDetails>('GET', `/api/v1/training/datasets/${encodeURIComponent(name)}`);
  }
  /** Uploads a dataset file (validated by the console: bad rows → ApiError 400 with one field error per row). */
  uploadTrainingDataset(file: Blob, filename: string) {
    const form = new FormData();
    form.append('file', file, filename);
    return this.request<DatasetDetails>('POST', '/api/v1/training/datasets', form);
  }
  cancelTraining(jobId: string) {
    return this.request<{ jobId: string; status: string }>('POST', `/api/v1/training/cancel/${encodeURIComponent(jobId)}`);
  }

  // --- runtime (§8) ---
  runtimeMode() {
    return this.request<RuntimeMode>('GET', '/api/runtime/mode');
  }
  gatewayStatus() {
    return this.request<GatewayStatus>('GET', '/api/runtime/gateway/status');
  }
  startRuntime(body: RuntimeStartRequest) {
    return this.request<{ status: string; run_id: string; pid: number }>('POST', '/api/runtime/start', body);
  }
  stopRuntime() {
    return this.request<{ status: string; message: string }>('POST', '/api/runtime/stop');
  }
  processes() {
    return this.request<{ processes: ProcessInfo[] }>('GET', '/api/runtime/processes').then((r) => r.processes);
  }
  startProcess(name: string) {
    return this.request<ProcessInfo>('POST', `/api/runtime/processes/${encodeURIComponent(name)}/start`);
  }
  stopProcess(name: string) {
    return this.request<ProcessInfo>('POST', `/api/runtime/processes/${encodeURIComponent(name)}/stop`);
  }
  /** Admin: the last lines of a process's log. */
  processLogs(name: string, lines = 200) {
    return this.request<{ name: string; file: string; lines: string[] }>('GET', `/api/runtime/processes/${encodeURIComponent(name)}/logs${query({ lines })}`).then((r) => r.lines);
  }
}

function query(params: Record<string, string | number | boolean | undefined>): string {
  const entries = Object.entries(params).filter(([, v]) => v !== undefined && v !== '');
  if (entries.length === 0) return '';
  return `?${entries.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`).join('&')}`;
}
