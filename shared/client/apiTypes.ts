/**
 * Response shapes of the service APIs the dashboard reads, as the contract (docs/API.md) gives
 * them. Fields the contract marks optional or nullable are optional here; the dashboard never
 * assumes more than the contract promises.
 */

/** §6.7 `GET /api/limiter/status`. */
export interface LimiterStatus {
  requests: { total: number; nvidia: number; passthrough: number; ratelimited: number };
  errors: { queue_full_rejects: number; upstream_errors: number };
  queue: {
    max_size: number;
    current_size: number;
    total_enqueued: number;
    total_dequeued: number;
    total_dropped: number;
    depth_by_priority?: Record<string, number>;
    per_priority?: Record<string, number>;
    full_policy?: string;
    utilization?: number;
  };
  token_bucket: { tokens: number; capacity: number; rate_per_minute: number; utilization: number };
  retreat: { state: 'normal' | 'retreat' | 'recover' | string; effective_rpm: number; base_rpm: number; upstream_429_rate: number };
  uptime_seconds: number;
  /** Per-provider status where the limiter serves several providers (keyed by provider name). */
  providers?: Record<string, Omit<LimiterStatus, 'providers' | 'uptime_seconds'> & { uptime_seconds?: number }>;
}

/** §7.1 `GET /api/v1/monitoring/gpu-lock/status`. */
export interface GpuLockStatus {
  lock_key: string;
  is_locked: boolean;
  lock_holder: string | null;
  ttl_seconds: number | null;
  timestamp: number;
  lock_age: number | null;
  lock_type?: string;
  health?: { status: string; last_check: number; issues: string[] };
  recent_history?: Array<{ action: string; task_name: string; timestamp: number; success: boolean }>;
}

/** §7.4 `GET /api/v1/monitoring/heartbeat/all`. */
export interface HeartbeatsAll {
  active_tasks: Record<string, { task_name: string; last_update: number; status: string; progress?: number }>;
  dead_tasks: Array<{ task_id: string; last_update?: number | null; status?: string }>;
  orphaned_tasks: Array<{ task_id: string; last_update: number; timeout: boolean }>;
  statistics: { total_tasks: number; active_count: number; dead_count: number; orphaned_count: number; average_heartbeat_interval: number };
  timestamp: number;
}

/** §7.6 `POST /api/v1/monitoring/lock/release`. */
export interface LockReleaseResult {
  success: boolean;
  message: string;
  lock_key: string;
  task_name: string;
}

/** GPU telemetry (monitoring's snapshot); fields optional because a machine may have no GPU. */
export interface GpuDevice {
  index: number;
  name?: string;
  utilizationGpu?: number | null;
  memoryUsedMiB?: number | null;
  memoryTotalMiB?: number | null;
  temperatureC?: number | null;
  powerDrawW?: number | null;
}

/** §5.1 `GET /api/v1/models`. */
export interface ModelInfo {
  id: string;
  name?: string;
  engine?: string;
  status: 'ready' | 'loading' | 'error' | 'unloaded' | string;
  capabilities?: string[];
  maxModelLen?: number;
  loraAdapters?: string[];
  sizeBytes?: number;
}
export interface ModelsList {
  models: ModelInfo[];
}

/** `GET /v1/models` (OpenAI list). */
export interface OpenAiModelList {
  object: 'list';
  data: Array<{ id: string; object: string; created?: number; owned_by?: string }>;
}

/** Model library catalog entry (`GET /api/v1/library/catalog`). */
export interface CatalogEntry {
  id?: string;
  name: string;
  uri: string;
  sizeBytes?: number;
  license?: string;
  description?: string;
}

/** A model download (`/api/v1/library/downloads`, the models library's DownloadView). */
export interface DownloadInfo {
  id: string;
  uri: string;
  name: string;
  status: 'queued' | 'downloading' | 'verifying' | 'completed' | 'failed' | 'cancelled' | string;
  bytesDone: number;
  bytesTotal: number | null;
  /** 0–1, null while the size is unknown. */
  progress: number | null;
  speedBytesPerSecond: number;
  etaSeconds: number | null;
  error?: string;
}

/** A local model file (`GET /api/v1/library/files`). */
export interface LibraryFile {
  id: string;
  path?: string;
  sizeBytes?: number;
  architecture?: string;
  error?: string;
}

/** §4.2 training status. */
export interface TrainingStatus {
  jobId: string;
  status: 'queued' | 'running' | 'paused' | 'completed' | 'failed' | 'cancelled' | string;
  baseModel?: string;
  progress?: { currentEpoch?: number; currentStep?: number; totalSteps?: number; loss?: number; learningRate?: number; valLoss?: number };
  elapsedTimeSeconds?: number;
  estimatedTimeRemainingSeconds?: number;
  createdAt?: string;
  startedAt?: string;
  completedAt?: string;
  error?: string;
  /** What the job trains: the method and how many parameters the optimizer updates. */
  method?: 'lora' | 'full';
  trainableParams?: number;
  /** The trained model once completed (usable in Chat; a LoRA adapter is `<base>+<adapter>`). */
  result?: { modelId: string; modelPath: string; adapter?: string };
}

/** `GET /api/v1/training/{jobId}/loss` (incremental with `afterStep`). */
export interface TrainingLoss {
  jobId: string;
  points: Array<{ step: number; epoch: number; loss: number }>;
  validation: Array<{ step: number; epoch: number; valLoss: number }>;
}

/** `GET /api/v1/training/{jobId}/logs` (incremental with `afterId`). */
export interface TrainingLogs {
  jobId: string;
  lines: Array<{ id: number; at: string; level: string; message: string }>;
}
/** §4.4 training list. */
export interface TrainingList {
  jobs: Array<{ jobId: string; baseModel: string; status: string; createdAt: string; completedAt?: string | null }>;
  total: number;
  limit: number;
  offset: number;
}
/** §4.1 request. */
export interface TrainingStartRequest {
  baseModel: string;
  outputDir: string;
  datasetPath: string;
  hyperParams?: Partial<{
    batchSize: number;
    learningRate: number;
    epochs: number;
    maxSeqLength: number;
    loraRank: number;
    loraAlpha: number;
    loraDropout: number;
    saveSteps: number;
    evalSteps: number;
    method: 'lora' | 'full';
    lrScheduler: 'constant' | 'linear' | 'cosine';
    warmupSteps: number;
    weightDecay: number;
  }>;
  loraConfig?: { r?: number; loraAlpha?: number; loraDropout?: number; targetModules?: string[]; bias?: 'none' | 'all' | 'lora_only' };
}

/** §8.2 `GET /api/runtime/gateway/status`. */
export interface GatewayStatus {
  is_running: boolean;
  port: number;
  run_id?: string | null;
  process_status?: 'running' | 'exited' | 'not_running' | string | null;
  pid?: number | null;
}
/** §8.1 `GET /api/runtime/mode`. */
export interface RuntimeMode {
  mode: 'live' | 'backtest' | 'stopped' | string;
  is_backtest: boolean;
  run_id: string | null;
  schedule_mode: string | null;
  is_running: boolean;
}
/** A supervised process (`GET /api/runtime/processes`). */
export interface ProcessInfo {
  name: string;
  configured: boolean;
  state: 'not_running' | 'starting' | 'running' | 'stopping' | 'exited' | 'backoff' | 'failed' | string;
  process_status: string;
  pid: number | null;
  started_at: string | null;
  uptime_seconds: number | null;
  restarts: number;
  exit_code: number | null;
  run_id: string | null;
  mode: string | null;
  last_error: string | null;
  orphan: { pid: number; message: string } | null;
}

/** §8.5 request. */
export interface RuntimeStartRequest {
  mode: 'live' | 'backtest';
  tickers: string[];
  initial_cash?: number;
  margin_requirement?: number;
  start_date?: string;
  end_date?: string;
  schedule_mode?: 'daily' | 'interval';
}

/** §9 `GET /api/v1/health/details` (per component). */
export interface HealthDetails {
  status?: string;
  components?: Record<string, { status: string; details?: Record<string, unknown> }>;
  [component: string]: unknown;
}

/** `GET /api/console/config`. */
export interface ConsoleConfigView {
  config: Record<string, unknown>;
  file: unknown;
  overridden: string[];
  /** What pins each overridden path: `env CONSOLE_HTTP_PORT`, `flag --port`. */
  pinnedBy?: Record<string, string>;
  path: string;
}

/** OpenAI chat message. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}
export interface ChatParams {
  model: string;
  messages: ChatMessage[];
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
}
