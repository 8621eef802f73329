/**
 * Response (and request) shapes of the service APIs the dashboard reads, derived from the contract
 * schemas in shared/contracts/ (`Static<typeof Schema>`): what the server validates and serializes
 * is what the client is typed against, so the two cannot drift. The names are the client's.
 */
import type { Static } from '@sinclair/typebox';
import type { ChatCompletionRequest, ChatMessage as ContractChatMessage, ModelListResponse, ModelSummary, OpenAiModelList as ContractOpenAiModelList } from '../contracts/engine.js';
import type { LimiterResetResponse, LimiterStatus as ContractLimiterStatus } from '../contracts/limiter.js';
import type { CatalogEntry as ContractCatalogEntry, DownloadView, ModelFileView } from '../contracts/models.js';
import type { ForceReleaseResponse, GpuReading, HeartbeatAllResponse, LockStatusResponse } from '../contracts/monitoring.js';
import type { ComponentsHealthResponse, ConsoleConfigView as ContractConsoleConfigView } from '../contracts/ops.js';
import type { GatewayStatusResponse, ProcessInfo as ContractProcessInfo, RuntimeModeResponse, RuntimeStartRequest as ContractRuntimeStartRequest } from '../contracts/runtime.js';
import type { ListTrainingResponse, LogsResponse, LossResponse, StartTrainingInput, TrainingJobStatus } from '../contracts/training.js';

/** §6.7 `GET /api/limiter/status`. */
export type LimiterStatus = Static<typeof ContractLimiterStatus>;

/** §6.8 `POST /api/limiter/admin/reset`. */
export type LimiterResetResult = Static<typeof LimiterResetResponse>;

/** §7.1 `GET /api/v1/monitoring/gpu-lock/status`. */
export type GpuLockStatus = Static<typeof LockStatusResponse>;

/** §7.4 `GET /api/v1/monitoring/heartbeat/all`. */
export type HeartbeatsAll = Static<typeof HeartbeatAllResponse>;

/** §7.6 `POST /api/v1/monitoring/lock/release`. */
export type LockReleaseResult = Static<typeof ForceReleaseResponse>;

/** One GPU of the live snapshot's telemetry; a machine may have no GPU, so everything but the index is optional. */
export type GpuDevice = Pick<Static<typeof GpuReading>, 'index'> & Partial<Static<typeof GpuReading>>;

/** §5.1 `GET /api/v1/models`. */
export type ModelInfo = Static<typeof ModelSummary>;
export type ModelsList = Static<typeof ModelListResponse>;

/** `GET /v1/models` (OpenAI list). */
export type OpenAiModelList = Static<typeof ContractOpenAiModelList>;

/** Model library catalog entry (`GET /api/v1/library/catalog`). */
export type CatalogEntry = Static<typeof ContractCatalogEntry>;

/** A model download (`/api/v1/library/downloads`). */
export type DownloadInfo = Static<typeof DownloadView>;

/** A local model file (`GET /api/v1/library/files`). */
export type LibraryFile = Static<typeof ModelFileView>;

/** §4.2 training status. */
export type TrainingStatus = Static<typeof TrainingJobStatus>;

/** `GET /api/v1/training/{jobId}/loss` (incremental with `afterStep`). */
export type TrainingLoss = Static<typeof LossResponse>;

/** `GET /api/v1/training/{jobId}/logs` (incremental with `afterId`). */
export type TrainingLogs = Static<typeof LogsResponse>;

/** §4.4 training list. */
export type TrainingList = Static<typeof ListTrainingResponse>;

/** §4.1 request: everything with a default may be left out. */
export type TrainingStartRequest = StartTrainingInput;

/** §8.2 `GET /api/runtime/gateway/status`. */
export type GatewayStatus = Static<typeof GatewayStatusResponse>;

/** §8.1 `GET /api/runtime/mode`. */
export type RuntimeMode = Static<typeof RuntimeModeResponse>;

/** A supervised process (`GET /api/runtime/processes`). */
export type ProcessInfo = Static<typeof ContractProcessInfo>;

/** §8.5 request. */
export type RuntimeStartRequest = Static<typeof ContractRuntimeStartRequest>;

/** §9 `GET /api/v1/health/details`. */
export type HealthDetails = Static<typeof ComponentsHealthResponse>;

/** `GET /api/console/config`. */
export type ConsoleConfigView = Static<typeof ContractConsoleConfigView>;

/** A chat message as the dashboard's chat sends it: plain text of the system, the user or the assistant. */
export type ChatMessage = Omit<Static<typeof ContractChatMessage>, 'role' | 'content'> & { role: 'system' | 'user' | 'assistant'; content: string };

/** The OpenAI chat request the dashboard sends. */
export type ChatParams = Pick<Static<typeof ChatCompletionRequest>, 'model' | 'max_tokens' | 'temperature' | 'top_p'> & { messages: ChatMessage[] };
