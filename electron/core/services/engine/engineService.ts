import { availableParallelism } from 'node:os';
import type {
  ChatHistoryItem,
  ChatWrapper,
  ChatModelFunctions,
  GbnfJsonSchema,
  Llama,
  LlamaContext,
  LlamaContextSequence,
  LlamaEmbeddingContext,
  LlamaGrammar,
  LlamaModel,
  Token,
} from 'node-llama-cpp';

/** node-llama-cpp is loaded on first use (its import costs ~0.7 s and ~25 MB at start-up). */
const llamaCpp = () => import('node-llama-cpp');

/** How long after start-up the backend is detected (when `engine.detectOnStart`). */
const DETECT_DELAY_MS = 1500;
import type { Logger } from 'pino';
import type { ChatMessage, ChatTool, ModelDetails, ModelStatus, ModelSummary, ResponseFormat } from '../../../../shared/contracts/engine.js';
import type { EngineConfig } from '../../../../shared/contracts/config/engine.js';
import type { Priority } from '../../../../shared/contracts/priority.js';
import type { Clock, TimerHandle } from '../../base/clock.js';
import type { ConfigStore } from '../../base/config.js';
import { AppError, ErrorCode, invalidRequest } from '../../base/errors.js';
import type { ComponentHealth } from '../../base/health.js';
import { BaseService } from '../../base/lifecycle.js';
import type { MetricsRegistry } from '../../base/metrics.js';
import type { LocalAdapterFile, LocalModelFile, ModelFilesPort } from '../../base/ports.js';
import { ADAPTER_SEPARATOR } from '../../base/adapters.js';
import { chooseBackend, selfTestBackend, type BackendChoice, type SelfTestResult } from './backendSelfTest.js';
import { toChatHistory, toFunctions } from './chatHistory.js';
import { EngineMetrics, type EngineRoute, type RequestOutcome } from './engineMetrics.js';
import { WaitQueue, type QueuePosition, type WaitingRequest } from './waitQueue.js';

export type { EngineRoute } from './engineMetrics.js';
export type { QueuePosition, WaitingRequest } from './waitQueue.js';

export interface EngineServiceOptions {
  config: ConfigStore;
  clock: Clock;
  logger: Logger;
  metrics: MetricsRegistry;
  /** The model library (models service). */
  models: ModelFilesPort;
  /** Runs one backend's self-test (default: a probe child process, backendSelfTest.ts). */
  selfTest?: (backend: BackendChoice) => Promise<SelfTestResult>;
}

/** Sampling settings of one generation, already validated by the adapter. */
export interface SamplingParams {
  maxTokens: number;
  /** 0 = greedy. */
  temperature: number;
  topP?: number;
  /** llama.cpp repeat penalty (1 = off). */
  repeatPenalty?: number;
  frequencyPenalty?: number;
  presencePenalty?: number;
  seed?: number;
  stop?: readonly string[];
}

export type FinishReason = 'stop' | 'length' | 'tool_calls';

/** How one request is run: who asked, how urgent, and the callbacks the adapter streams with. */
export interface RunOptions {
  route: EngineRoute;
  priority: Priority;
  /** Request id (shown in the status endpoint's waiting list). */
  requestId: string;
  /** Aborting frees the request's queue place or sequence at once. */
  signal?: AbortSignal;
  /** Idle seconds before this model unloads (overrides engine.idleTtlSeconds for the model). */
  ttlSeconds?: number;
  /** Called when the request has to wait, and whenever its place changes. */
  onQueued?(position: QueuePosition): void;
  /** Called when the request holds a sequence and starts (before any text). */
  onStart?(): void;
  /** Each piece of generated text with the number of tokens it came from. */
  onText?(text: string, tokens: number): void;
}

export interface CompletionInput {
  modelId: string | undefined;
  prompt: string;
  params: SamplingParams;
  /** LoRA adapter name (contract §3.1 `adapter`): must be one of the model's `loraAdapters`. */
  adapter?: string | null;
}

export interface ChatInput {
  modelId: string | undefined;
  messages: readonly ChatMessage[];
  params: SamplingParams;
  responseFormat?: ResponseFormat;
  tools?: readonly ChatTool[];
  toolChoice?: 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } };
}

export interface ToolCallResult {
  id: string;
  name: string;
  /** JSON text of the arguments. */
  arguments: string;
}

export interface GenerationResult {
  modelId: string;
  text: string;
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
  /** Generated token ids (for exact comparisons across surfaces). */
  tokens: Token[];
  toolCalls?: ToolCallResult[];
  /** Milliseconds waiting for a sequence, from start to first token, and generating in total. */
  queueMs: number;
  ttftMs: number;
  durationMs: number;
  /** True when the client went away and generation stopped early. */
  aborted: boolean;
}

export interface EmbeddingResult {
  modelId: string;
  vectors: number[][];
  promptTokens: number;
}

/** The engine at a glance, cheap and synchronous (the dashboard's live stream reads it). */
export interface EngineSnapshot {
  backend: string | null;
  loadedModels: Array<{ id: string; activeSequences: number; parallel: number; queued: number; contextSize: number; idleTtlSeconds: number; lastUsedAt: number }>;
  loading: string[];
  queue: { depth: Record<Priority, number>; total: number; maxSize: number };
  activeSequences: number;
  /** Generated tokens per second over the last 10 s (all models). */
  tokensPerSecond: number;
  /** Set while a training job holds the GPU: who, since when, and what the engine does meanwhile. */
  gpuLent: GpuLent | null;
}

/** The GPU is lent to a training job (see `GpuTenantPort`). */
export interface GpuLent {
  holder: string;
  purpose: string;
  gpuId: number;
  policy: 'unload' | 'cpu' | 'keep';
  since: number;
}

interface LoadedModel {
  id: string;
  file: LocalModelFile;
  model: LlamaModel;
  context: LlamaContext;
  contextSize: number;
  parallel: number;
  active: number;
  ttlSeconds: number;
  lastUsedMono: number;
  lastUsedAt: number;
  idleTimer: TimerHandle | null;
  estimateBytes: number;
  embedding: Promise<LlamaEmbeddingContext> | null;
  /** A request is using the embedding context (others wait in the queue under `<id>#embed`). */
  embeddingBusy: boolean;
  chatWrapper: ChatWrapper;
  /** Moving average of a request's sequence time (ms), for queue ETAs. */
  avgRequestMs: number;
  /** The file changed on disk: unload as soon as the model is idle. */
  stale: boolean;
  /**
   * Sequences no request is using, kept for the next one. A sequence is reused, never disposed and
   * recreated: node-llama-cpp reclaims a disposed sequence's id only later, so a fresh
   * `getSequence()` right after `dispose()` fails with "No sequences left". Reuse also keeps the KV
   * cache of the previous prompt, which node-llama-cpp shares with the next request's common prefix.
   */
  freeSequences: LlamaContextSequence[];
  /** Requests between `ensureLoaded` and the end of their generation (see `ensureLoaded`'s `pin`). */
  pins: number;
  /** Layers on the GPU (0 = the model runs on the CPU). */
  gpuLayers: number;
}

const DEFAULT_ETA_MS = 2000;

/** A model the engine serves: a library file, or a LoRA adapter applied to its base file. */
type ServedFile = LocalModelFile & { adapter?: LocalAdapterFile };

/** Who waits when a model cannot be loaded yet (the request's priority, id and queue-place callback). */
type LoadWaiter = Pick<RunOptions, 'priority' | 'requestId' | 'onQueued'>;

/** Queue key of the requests waiting for room to load model `id` (model ids never contain ':'). */
const loadKey = (id: string): string => `load:${id}`;
const isLoadKey = (key: string): boolean => key.startsWith('load:');
/** Queue key of the requests waiting for model `id`'s embedding context. */
const embedKey = (id: string): string => `${id}#embed`;
const RATE_WINDOW_MS = 10_000;

function cpuCount(): number {
  return availableParallelism();
}

/**
 * Local inference on node-llama-cpp (contract §3, §5). Owns the Llama backend, the loaded models
 * (each with `parallel` context sequences), the priority wait queue for sequences, idle unloading
 * and the engine metrics. Knows nothing of HTTP or gRPC: adapters call run*() with callbacks.
 */
export class EngineService extends BaseService {
  readonly name = 'engine';
  private llamaPromise: Promise<Llama> | null = null;
  private llama: Llama | null = null;
  private backendError: string | null = null;
  /** The GPU self-tests run when the backend was chosen (health shows them). */
  private selfTests: SelfTestResult[] = [];
  /**
   * One probe per backend per start: a failed detection is retried on the next request, and must
   * not spawn another probe each time (a driver update needs a restart anyway).
   */
  private readonly selfTestRuns = new Map<BackendChoice, Promise<SelfTestResult>>();
  private readonly loaded = new Map<string, LoadedModel>();
  private readonly loading = new Map<string, Promise<LoadedModel>>();
  /** Loads that have passed `makeRoom` (id → estimated bytes): they count against the budget and model count. */
  private readonly reserved = new Map<string, number>();
  /** Set while a training job holds the GPU (see `yieldGpu`). */
  private gpuLent: GpuLent | null = null;
  /** Why a model file failed to load, remembered for that version of the file (size + mtime). */
  private readonly loadErrors = new Map<string, { message: string; sizeBytes: number; modifiedAt: number }>();
  private readonly generations = new Set<Promise<unknown>>();
  private readonly queue: WaitQueue;
  private readonly metrics: EngineMetrics;
  private readonly log: Logger;
  private readonly rateBuckets: Array<{ at: number; tokens: number }> = [];
  private readonly inflight = new Set<AbortController>();
  private stopping = false;
  private toolCallCounter = 0;

  constructor(private readonly options: EngineServiceOptions) {
    super();
    this.log = options.logger;
    this.queue = new WaitQueue({
      maxSize: () => this.cfg().queueMaxSize,
      estimate: (key, position) => {
        if (isLoadKey(key)) return position * DEFAULT_ETA_MS;
        const m = this.loaded.get(key);
        const parallel = m?.parallel ?? this.cfg().parallel;
        return Math.ceil(position / parallel) * (m?.avgRequestMs ?? DEFAULT_ETA_MS);
      },
      now: () => options.clock.monotonic(),
    });
    this.metrics = new EngineMetrics(options.metrics, {
      depth: () => this.queue.depthByPriority(),
      active: () => this.activeSequences(),
      loaded: () => this.loaded.size,
    });
  }

  private cfg(): EngineConfig {
    return this.options.config.get().engine;
  }

  protected async onStart(): Promise<void> {
    this.stopping = false;
    this.selfTestRuns.clear();
    this.disposables.defer(this.options.models.onChange(() => void this.reconcile().catch((err: unknown) => this.log.warn({ err }, 'model library reconcile failed'))));
    if (this.cfg().detectOnStart) {
      // In the background, a moment after start-up: loading node-llama-cpp and its native backend
      // blocks the event loop for a while, so it must not delay the listeners. Failures show in health.
      const timer = this.options.clock.setTimeout(() => void this.backend().catch(() => undefined), DETECT_DELAY_MS);
      this.disposables.defer(() => timer.cancel());
    }
  }

  protected override async onStop(): Promise<void> {
    this.stopping = true;
    this.queue.rejectAll(new AppError(ErrorCode.UNAVAILABLE, 'The engine is stopping'));
    for (const c of this.inflight) c.abort(new AppError(ErrorCode.UNAVAILABLE, 'The engine is stopping'));
    // Generations stop at their next token once aborted; wait for them before freeing the models.
    await Promise.allSettled([...this.generations, ...this.loading.values()]);
    for (const id of [...this.loaded.keys()]) await this.unloadNow(id);
    const pending = this.llamaPromise;
    this.llamaPromise = null;
    if (pending) {
      const llama = await pending.catch(() => null);
      await llama?.dispose();
    }
    this.llama = null;
  }

  // ------------------------------------------------------------------ backend

  /** getLlama once, with the configured backend and threads (contract: CUDA → Vulkan → Metal → CPU). */
  private backend(): Promise<Llama> {
    if (this.llamaPromise) return this.llamaPromise;
    const cfg = this.cfg();
    const gpu = cfg.gpu === 'false' ? false : cfg.gpu;
    const log = this.log;
    const detect = async (): Promise<Llama> => {
      const { getLlama, getLlamaGpuTypes, LlamaLogLevel } = await llamaCpp();
      const chosen = await this.selfTestedBackend(gpu, () => getLlamaGpuTypes('supported'));
      const llama = await getLlama({
        gpu: chosen,
        build: 'never',
        progressLogs: false,
        skipDownload: true,
        logLevel: LlamaLogLevel.warn,
        logger: (level, message) => {
          const text = message.trim();
          if (text === '') return;
          if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) log.error({ llama: true }, text);
          else if (level === LlamaLogLevel.warn) log.warn({ llama: true }, text);
          else log.debug({ llama: true }, text);
        },
        ...(cfg.threads > 0 ? { maxThreads: cfg.threads } : {}),
      });
      // node-llama-cpp falls back to another backend when the forced one cannot run here; a forced
      // backend means that one or an error, never a silent fallback.
      if (gpu !== 'auto' && llama.gpu !== gpu) {
        const got = llama.gpu === false ? 'cpu' : llama.gpu;
        await llama.dispose();
        throw new Error(`node-llama-cpp could only start '${got}' on this machine`);
      }
      return llama;
    };
    this.llamaPromise = detect().then(
      (llama) => {
        this.llama = llama;
        this.backendError = null;
        log.info({ gpu: llama.gpu, requested: cfg.gpu, cpuMathCores: llama.cpuMathCores }, 'inference backend ready');
        return llama;
      },
      (err: unknown) => {
        const raw = (err as Error).message;
        const reason = /NoBinaryFound/i.test(raw) ? `no usable ${cfg.gpu} build of llama.cpp on this machine (missing driver or runtime?); use engine.gpu 'auto' or 'false'` : raw;
        this.backendError = `backend '${cfg.gpu}' is not available: ${reason}`;
        this.llamaPromise = null;
        log.error({ err, requested: cfg.gpu }, 'inference backend failed');
        throw new AppError(ErrorCode.INSUFFICIENT_RESOURCES, `Inference backend '${cfg.gpu}' is not available: ${reason}`, { cause: err });
      },
    );
    return this.llamaPromise;
  }

  /**
   * With `engine.gpuSelfTest`, a GPU backend is used only after a child process generated a few
   * tokens on it: `auto` takes the first GPU backend that passes (else the CPU), a forced backend
   * that fails is an error. Without it, node-llama-cpp's own choice stands.
   */
  private async selfTestedBackend(gpu: 'auto' | BackendChoice, supported: () => Promise<readonly BackendChoice[]>): Promise<'auto' | BackendChoice> {
    this.selfTests = [];
    if (gpu === false || !this.cfg().gpuSelfTest) return gpu;
    const probe = this.options.selfTest ?? ((b: BackendChoice) => selfTestBackend(b));
    const test = (b: BackendChoice): Promise<SelfTestResult> => {
      let run = this.selfTestRuns.get(b);
      if (!run) this.selfTestRuns.set(b, (run = probe(b)));
      return run;
    };
    if (gpu !== 'auto') {
      const r = await test(gpu);
      this.selfTests = [r];
      if (!r.ok) throw new Error(`the ${gpu} backend failed its self-test: ${r.reason ?? 'unknown reason'}${r.hint ? `. ${r.hint}` : ''}`);
      return gpu;
    }
    const { choice, tests } = await chooseBackend(await supported(), test);
    this.selfTests = tests;
    for (const t of tests) {
      if (!t.ok) this.log.warn({ backend: t.backend, reason: t.reason, hint: t.hint }, `GPU backend ${t.backend} failed its self-test; not using it`);
    }
    return choice;
  }

  /** Threads used for contexts: config, or the physical cores node-llama-cpp finds useful for math. */
  private threads(llama: Llama): number {
    const t = this.cfg().threads;
    return t > 0 ? t : Math.max(1, llama.cpuMathCores || cpuCount());
  }

  /** The backend node-llama-cpp picked (`cuda`, `vulkan`, `metal` or `cpu`), or null before detection. */
  backendName(): string | null {
    if (!this.llama) return null;
    return this.llama.gpu === false ? 'cpu' : this.llama.gpu;
  }

  async health(): Promise<ComponentHealth> {
    const cfg = this.cfg();
    const total = await this.options.models.list().then((l) => l.length, () => undefined);
    const status: 'UP' | 'DOWN' = this.running && this.backendError === null ? 'UP' : 'DOWN';
    return {
      status,
      details: {
        backend: this.backendName(),
        requestedBackend: cfg.gpu,
        ...(this.backendError ? { error: this.backendError } : {}),
        ...(this.selfTests.length > 0 ? { selfTests: this.selfTests } : {}),
        ...(this.gpuLent ? { gpuLentTo: this.gpuLent } : {}),
        threads: this.llama ? this.threads(this.llama) : cfg.threads,
        models: { total, loaded: this.loaded.size, ready: this.loaded.size },
        parallel: cfg.parallel,
        queue: { waiting: this.queue.size, maxSize: cfg.queueMaxSize },
        activeSequences: this.activeSequences(),
      },
    };
  }

  // ------------------------------------------------------------------ models

  private activeSequences(): number {
    let n = 0;
    for (const m of this.loaded.values()) n += m.active;
    return n;
  }

  private statusOf(file: LocalModelFile): ModelStatus {
    if (this.loaded.has(file.id)) return 'ready';
    if (this.loading.has(file.id)) return 'loading';
    if (file.error || this.loadErrorFor(file)) return 'error';
    return 'unloaded';
  }

  private setLoadError(file: LocalModelFile, message: string): void {
    this.loadErrors.set(file.id, { message, sizeBytes: file.sizeBytes, modifiedAt: file.modifiedAt });
  }

  /** The remembered load error, unless the file changed since (a replaced file gets a fresh try). */
  private loadErrorFor(file: LocalModelFile): string | undefined {
    const e = this.loadErrors.get(file.id);
    return e && e.sizeBytes === file.sizeBytes && e.modifiedAt === file.modifiedAt ? e.message : undefined;
  }

  /**
   * The library changed (a file added, replaced or deleted): a loaded model whose file is gone or
   * different is unloaded once idle, so the next request loads the new file.
   */
  private async reconcile(): Promise<void> {
    const files = new Map((await this.servedFiles()).map((f) => [f.id, f]));
    for (const m of [...this.loaded.values()]) {
      const f = files.get(m.id);
      if (f && f.sizeBytes === m.file.sizeBytes && f.modifiedAt === m.file.modifiedAt) continue;
      m.stale = true;
      if (!this.inUse(m)) {
        this.log.info({ model: m.id }, 'model file changed or removed; unloading');
        await this.unloadNow(m.id);
      }
    }
  }

  private summary(file: LocalModelFile): ModelSummary {
    const error = file.error ?? this.loadErrorFor(file);
    const loaded = this.loaded.get(file.id);
    return {
      id: file.id,
      name: file.displayName ?? file.id,
      engine: 'node-llama-cpp',
      status: this.statusOf(file),
      capabilities: ['inference', 'stream', 'embeddings'],
      ...(loaded ? { maxModelLen: loaded.contextSize } : file.contextLength ? { maxModelLen: file.contextLength } : {}),
      ...(error ? { error } : {}),
    };
  }

  async listModels(): Promise<ModelSummary[]> {
    const files = await this.servedFiles();
    const adapters = new Map<string, string[]>();
    for (const f of files) if (f.adapter) adapters.set(f.adapter.base, [...(adapters.get(f.adapter.base) ?? []), f.adapter.name]);
    return files.map((f) => {
      const names = adapters.get(f.id);
      return { ...this.summary(f), ...(names ? { loraAdapters: names } : {}) };
    });
  }

  /** LoRA adapters whose base is in the library (none when the library does not publish adapters). */
  private async adapterFiles(): Promise<LocalAdapterFile[]> {
    return (await this.options.models.adapters?.()) ?? [];
  }

  /** `<base>+<adapter>` as a servable file: the base's GGUF with the adapter applied to its context. */
  private served(base: LocalModelFile, adapter: LocalAdapterFile): ServedFile {
    return {
      ...base,
      id: `${base.id}${ADAPTER_SEPARATOR}${adapter.name}`,
      displayName: `${base.displayName ?? base.id} + ${adapter.name}`,
      modifiedAt: Math.max(base.modifiedAt, adapter.modifiedAt),
      sizeBytes: base.sizeBytes + adapter.sizeBytes,
      adapter,
    };
  }

  /** Every model the engine can serve: the library's files, then each adapter on its base. */
  private async servedFiles(): Promise<ServedFile[]> {
    const files: ServedFile[] = await this.options.models.list();
    const byId = new Map(files.map((f) => [f.id, f]));
    const out = [...files];
    for (const a of await this.adapterFiles()) {
      const base = byId.get(a.base);
      if (base) out.push(this.served(base, a));
    }
    return out;
  }

  /** 404 MODEL_NOT_FOUND (listing the ids there are) for an unknown id; `<base>+<adapter>` names an adapter on its base. */
  private async fileFor(id: string): Promise<ServedFile> {
    const sep = id.indexOf(ADAPTER_SEPARATOR);
    if (sep < 0) {
      const file = await this.options.models.get(id);
      if (file) return file;
    } else {
      const base = await this.options.models.get(id.slice(0, sep));
      const adapter = (await this.adapterFiles()).find((a) => a.base === base?.id && a.name === id.slice(sep + 1));
      if (base && adapter) return this.served(base, adapter);
    }
    const ids = (await this.servedFiles()).map((f) => f.id);
    throw new AppError(ErrorCode.MODEL_NOT_FOUND, `Model '${id}' not found; available: ${ids.length > 0 ? ids.join(', ') : '(none: put a .gguf file in the models folder)'}`, {
      details: [{ type: 'model_not_found', field: 'modelId', description: `Model '${id}' is not in the model library` }],
    });
  }

  /**
   * The model a request runs on: `modelId`, or with the §3.1 `adapter` field `<modelId>+<adapter>`
   * (400 when the model has no such adapter).
   */
  private async withAdapter(modelId: string, adapter: string | null | undefined): Promise<string> {
    if (!adapter) return modelId;
    const names = (await this.adapterFiles()).filter((a) => a.base === modelId).map((a) => a.name);
    if (!names.includes(adapter)) {
      throw invalidRequest(`Model '${modelId}' has no LoRA adapter '${adapter}' (loraAdapters: ${names.length > 0 ? names.join(', ') : 'none'})`, [
        { type: 'adapter_not_found', field: 'adapter', description: `'${adapter}' is not one of the model's loraAdapters` },
      ]);
    }
    return `${modelId}${ADAPTER_SEPARATOR}${adapter}`;
  }

  async getModel(id: string): Promise<ModelDetails> {
    const file = await this.fileFor(id);
    const s = this.summary(file);
    const loaded = this.loaded.get(id);
    const cfg = this.cfg();
    return {
      id: s.id,
      name: s.name,
      engine: s.engine,
      modelPath: file.path.split(/[\\/]/).pop() ?? file.id,
      status: s.status,
      capabilities: s.capabilities,
      sizeBytes: file.sizeBytes,
      ...(file.architecture ? { architecture: file.architecture } : {}),
      ...(s.error ? { error: s.error } : {}),
      config: {
        ...(file.contextLength ? { maxModelLen: file.contextLength } : {}),
        ...(loaded ? { contextSize: loaded.contextSize } : {}),
        parallel: loaded?.parallel ?? cfg.parallel,
        gpuLayers: loaded ? loaded.model.gpuLayers : cfg.gpuLayers,
        idleTtlSeconds: loaded?.ttlSeconds ?? cfg.idleTtlSeconds,
      },
      activeSequences: loaded?.active ?? 0,
      queued: this.queue.sizeFor(id),
    };
  }

  /** The id a request means: `default` or nothing → engine.defaultModel or the library's first model. */
  async resolveModelId(requested: string | undefined): Promise<string> {
    if (requested !== undefined && requested !== '' && requested !== 'default') return requested;
    const configured = this.cfg().defaultModel;
    if (configured) return configured;
    const loadedFirst = this.loaded.keys().next();
    if (!loadedFirst.done) return loadedFirst.value;
    const files = (await this.options.models.list()).filter((f) => !f.error);
    const first = files[0];
    if (!first) throw new AppError(ErrorCode.MODEL_NOT_FOUND, "No model to serve 'default': the models folder has no usable .gguf file");
    return first.id;
  }

  /** Loads a model (or returns it when loaded); concurrent callers share one load. */
  async load(id: string, ttlSeconds?: number): Promise<ModelDetails> {
    const m = await this.ensureLoaded(id, ttlSeconds);
    this.scheduleIdle(m);
    return this.getModel(id);
  }

  /** Unloads a model; 409 while requests use it. */
  async unload(id: string): Promise<ModelDetails> {
    await this.fileFor(id);
    const m = this.loaded.get(id);
    if (m && this.inUse(m)) {
      throw new AppError(ErrorCode.CONFLICT, `Model '${id}' is in use (${m.active} generating, ${this.queue.sizeFor(id)} waiting); try again when idle`);
    }
    const pending = this.loading.get(id);
    if (pending) await pending.catch(() => undefined);
    await this.unloadNow(id);
    return this.getModel(id);
  }

  private async unloadNow(id: string): Promise<void> {
    const m = this.loaded.get(id);
    if (!m) return;
    this.loaded.delete(id);
    m.idleTimer?.cancel();
    m.idleTimer = null;
    const emb = m.embedding;
    m.embedding = null;
    if (emb) await (await emb.catch(() => null))?.dispose();
    await m.context.dispose();
    await m.model.dispose();
    this.log.info({ model: id }, 'model unloaded');
  }

  /** A model is in use while a request holds or waits for one of its sequences, or is about to (pinned). */
  private inUse(m: LoadedModel): boolean {
    return m.active > 0 || m.pins > 0 || m.embeddingBusy || this.queue.sizeFor(m.id) > 0 || this.queue.sizeFor(embedKey(m.id)) > 0;
  }

  private scheduleIdle(m: LoadedModel): void {
    m.idleTimer?.cancel();
    m.idleTimer = null;
    if (this.inUse(m) || this.stopping) return;
    // An idle model can be evicted: a request waiting for room to load another one looks again.
    this.queue.grantWhere(isLoadKey);
    if (m.stale) {
      void this.unloadNow(m.id).catch((err: unknown) => this.log.error({ err, model: m.id }, 'unload of a changed model failed'));
      return;
    }
    if (m.ttlSeconds <= 0) return;
    m.idleTimer = this.options.clock.setTimeout(() => {
      m.idleTimer = null;
      if (this.loaded.get(m.id) !== m || this.inUse(m)) return;
      this.log.info({ model: m.id, idleSeconds: m.ttlSeconds }, 'unloading idle model');
      void this.unloadNow(m.id).catch((err: unknown) => this.log.error({ err, model: m.id }, 'idle unload failed'));
    }, m.ttlSeconds * 1000);
  }

  /**
   * The loaded model `id`, loading it when needed; concurrent callers share one load. With `pin`, the
   * model is returned pinned (see `unpin`), so it cannot be evicted before the caller's generation.
   */
  private async ensureLoaded(id: string, ttlSeconds?: number, waiter?: LoadWaiter, pin = false): Promise<LoadedModel> {
    for (;;) {
      if (this.stopping || !this.running) throw new AppError(ErrorCode.UNAVAILABLE, 'The engine is not running');
      let m = this.loaded.get(id);
      if (!m) {
        const file = await this.fileFor(id);
        let pending = this.loading.get(id);
        if (!pending) {
          pending = this.loadFile(file, ttlSeconds, waiter).finally(() => {
            this.loading.delete(id);
            this.reserved.delete(id);
            // A finished or failed load may leave room (or a model to evict) for a waiting one.
            this.queue.grantWhere(isLoadKey);
          });
          this.loading.set(id, pending);
        }
        m = await pending;
        // Evicted for another load before this request could pin it: load it again.
        if (this.loaded.get(id) !== m) continue;
      }
      if (ttlSeconds !== undefined) m.ttlSeconds = ttlSeconds;
      if (pin) m.pins++;
      return m;
    }
  }

  /** Ends a pin of `ensureLoaded(..., pin = true)`; the model may then go idle. */
  private unpin(m: LoadedModel): void {
    m.pins--;
    this.scheduleIdle(m);
  }


  private async loadFile(file: ServedFile, ttlSeconds: number | undefined, waiter: LoadWaiter | undefined): Promise<LoadedModel> {
    const cfg = this.cfg();
    const name = file.path.split(/[\\/]/).pop() ?? file.id;
    if (file.error) {
      this.setLoadError(file, file.error);
      throw new AppError(ErrorCode.MODEL_NOT_READY, `Cannot load model '${file.id}' from ${name}: ${file.error}`, {
        details: [{ type: 'model_file', field: 'modelId', description: `${name}: ${file.error}` }],
      });
    }
    const llama = await this.backend();
    const t0 = this.options.clock.monotonic();
    let estimateBytes = file.sizeBytes;
    let contextSize: number;
    try {
      const info = await (await llamaCpp()).readGgufFileInfo(file.path, { logWarnings: false });
      const trained = info.architectureMetadata?.context_length ?? file.contextLength ?? 4096;
      contextSize = cfg.contextSize > 0 ? cfg.contextSize : Math.min(Number(trained) || 4096, 4096);
      // The whole footprint (weights + KV cache of every sequence), wherever the layers end up.
      const insights = await (await llamaCpp()).GgufInsights.from(info, llama);
      const modelReq = await insights.estimateModelResourceRequirementsV2({ gpuLayers: 0 });
      const ctxReq = await insights.estimateContextResourceRequirementsV2({ contextSize, modelGpuLayers: 0, sequences: cfg.parallel });
      estimateBytes = modelReq.cpuRam + modelReq.gpuVram + ctxReq.cpuRam + ctxReq.gpuVram;
    } catch (err) {
      const reason = (err as Error).message;
      this.setLoadError(file, `not a readable GGUF file: ${reason}`);
      throw new AppError(ErrorCode.MODEL_NOT_READY, `Cannot load model '${file.id}': ${name} is not a readable GGUF file (${reason})`, {
        details: [{ type: 'model_file', field: 'modelId', description: `${name}: ${reason}` }],
        cause: err,
      });
    }
    await this.waitForGpu(file, waiter);
    await this.makeRoom(file, estimateBytes, waiter);
    let model: LlamaModel | null = null;
    try {
      const onCpu = this.gpuLent?.policy === 'cpu';
      if (onCpu) this.log.info({ model: file.id, holder: this.gpuLent?.holder }, 'the GPU is lent to a training job: loading on the CPU');
      model = await llama.loadModel({ modelPath: file.path, gpuLayers: onCpu ? 0 : cfg.gpuLayers === 'auto' ? 'auto' : cfg.gpuLayers });
      // An adapter model shares the base's file (memory-mapped, so its pages are shared with a loaded base on the CPU).
      const lora = file.adapter ? { lora: { adapters: [{ filePath: file.adapter.path }] } } : {};
      const context = await model.createContext({ contextSize, sequences: cfg.parallel, threads: this.threads(llama), ...lora });
      const loaded: LoadedModel = {
        id: file.id,
        file,
        model,
        context,
        contextSize: context.contextSize,
        parallel: cfg.parallel,
        active: 0,
        ttlSeconds: ttlSeconds ?? cfg.idleTtlSeconds,
        lastUsedMono: this.options.clock.monotonic(),
        lastUsedAt: this.options.clock.now(),
        idleTimer: null,
        estimateBytes,
        embedding: null,
        embeddingBusy: false,
        avgRequestMs: DEFAULT_ETA_MS,
        freeSequences: [],
        pins: 0,
        gpuLayers: model.gpuLayers,
        chatWrapper: (await llamaCpp()).resolveChatWrapper(model),
        stale: false,
      };
      this.loaded.set(file.id, loaded);
      this.loadErrors.delete(file.id);
      this.log.info({ model: file.id, file: name, ms: Math.round(this.options.clock.monotonic() - t0), contextSize: loaded.contextSize, parallel: loaded.parallel, gpuLayers: model.gpuLayers }, 'model loaded');
      return loaded;
    } catch (err) {
      await model?.dispose().catch(() => undefined);
      const reason = (err as Error).message;
      this.setLoadError(file, reason);
      this.log.error({ err, model: file.id, file: name }, 'model load failed');
      throw new AppError(ErrorCode.INSUFFICIENT_RESOURCES, `Cannot load model '${file.id}' from ${name}: ${reason}`, {
        details: [{ type: 'model_load', field: 'modelId', description: `${name}: ${reason}` }],
        cause: err,
      });
    }
  }

  /**
   * While a training job holds the GPU under the `unload` policy, a load waits (by priority, in the
   * engine queue) until the job ends, for at most `engine.loadWaitSeconds`; then 503 with the reason.
   */
  private async waitForGpu(file: LocalModelFile, waiter: LoadWaiter | undefined): Promise<void> {
    const deadline = this.options.clock.monotonic() + this.cfg().loadWaitSeconds * 1000;
    while (this.gpuLent?.policy === 'unload') {
      const lent = this.gpuLent;
      const busy = () =>
        new AppError(ErrorCode.UNAVAILABLE, `Model '${file.id}' cannot be loaded: the GPU is lent to training job ${lent.holder} (training.enginePolicy "unload"); retry when it ends, or set training.enginePolicy to "cpu"`, {
          headers: { 'retry-after': '30' },
        });
      await this.waitForLoadTurn(file, waiter, deadline, busy);
    }
  }

  /**
   * Waits in the engine queue (by priority, under `load:<id>`) until something that may let this load
   * go on happens (a model goes idle, a load ends, the GPU comes back), or throws `busy()` at the deadline.
   */
  private async waitForLoadTurn(file: LocalModelFile, waiter: LoadWaiter | undefined, deadline: number, busy: () => AppError): Promise<void> {
    const left = deadline - this.options.clock.monotonic();
    if (!waiter || left <= 0 || this.stopping) throw busy();
    const timeout = new AbortController();
    const timer = this.options.clock.setTimeout(() => timeout.abort(busy()), left);
    try {
      await this.queue.wait(waiter.requestId, loadKey(file.id), waiter.priority, timeout.signal, waiter.onQueued);
    } finally {
      timer.cancel();
    }
  }

  /**
   * Unloads idle models (least recently used first) until `bytes` more fit the budget and the model
   * count. When every loaded model is busy, a request waits by priority (in the engine queue, under
   * `load:<id>`) until one goes idle, as Ollama's scheduler does, for at most `engine.loadWaitSeconds`.
   */
  private async makeRoom(file: LocalModelFile, bytes: number, waiter: LoadWaiter | undefined): Promise<void> {
    const cfg = this.cfg();
    const budget = cfg.memoryBudgetMb * 1024 * 1024;
    const name = file.path.split(/[\\/]/).pop() ?? file.id;
    const mib = (b: number) => Math.ceil(b / 1024 / 1024);
    if (budget > 0 && bytes > budget) {
      const reason = `needs about ${mib(bytes)} MiB (weights + ${cfg.parallel}-sequence context), more than engine.memoryBudgetMb ${cfg.memoryBudgetMb}`;
      this.setLoadError(file, reason);
      throw new AppError(ErrorCode.INSUFFICIENT_RESOURCES, `Cannot load model '${file.id}' from ${name}: it ${reason}`, {
        details: [{ type: 'model_too_big', field: 'modelId', description: `${name} ${reason}` }],
      });
    }
    const used = () => [...this.loaded.values()].reduce((a, m) => a + m.estimateBytes, 0) + [...this.reserved.values()].reduce((a, b) => a + b, 0);
    const fits = () => (budget === 0 || used() + bytes <= budget) && this.loaded.size + this.reserved.size + 1 <= cfg.maxLoadedModels;
    const deadline = this.options.clock.monotonic() + cfg.loadWaitSeconds * 1000;
    while (!fits()) {
      const idle = [...this.loaded.values()].filter((m) => !this.inUse(m)).sort((a, b) => a.lastUsedMono - b.lastUsedMono)[0];
      if (idle) {
        this.log.info({ model: idle.id, for: file.id }, 'unloading least recently used model to make room');
        await this.unloadNow(idle.id);
        continue;
      }
      const busy = () =>
        new AppError(ErrorCode.INSUFFICIENT_RESOURCES, `Cannot load model '${file.id}' from ${name}: the loaded models stayed busy for ${cfg.loadWaitSeconds}s and no room is left (about ${mib(used())} MiB used of ${budget > 0 ? `${cfg.memoryBudgetMb} MiB` : 'no budget'}, ${this.loaded.size} of ${cfg.maxLoadedModels} models)`, {
          headers: { 'retry-after': '5' },
        });
      // Wait until a model goes idle or a load ends (scheduleIdle / the load's finally grant us), then look again.
      await this.waitForLoadTurn(file, waiter, deadline, busy);
    }
    this.reserved.set(file.id, bytes);
  }

  // ------------------------------------------------------------------ sequences

  /**
   * Waits (by priority) for a free sequence of `m`, then takes it. A freed slot passes straight
   * from `release` to the granted waiter (`active` is never decremented in between), so a request
   * arriving meanwhile cannot jump the queue.
   */
  private async acquire(m: LoadedModel, opts: RunOptions): Promise<LlamaContextSequence> {
    m.idleTimer?.cancel();
    m.idleTimer = null;
    if (m.active >= m.parallel || this.queue.sizeFor(m.id) > 0) {
      await this.queue.wait(opts.requestId, m.id, opts.priority, opts.signal, opts.onQueued);
    } else {
      m.active++;
    }
    try {
      return m.freeSequences.pop() ?? m.context.getSequence();
    } catch (err) {
      this.releaseSlot(m);
      throw err;
    }
  }

  /**
   * Returns the sequence to the model's free list (cleared when its request failed or was aborted,
   * since its state is then unknown), then hands the slot to the next waiter.
   */
  private async release(m: LoadedModel, sequence: LlamaContextSequence, sequenceMs: number, clean: boolean): Promise<void> {
    m.avgRequestMs = m.avgRequestMs * 0.8 + sequenceMs * 0.2;
    m.lastUsedMono = this.options.clock.monotonic();
    m.lastUsedAt = this.options.clock.now();
    try {
      if (!clean && !sequence.disposed) await sequence.clearHistory();
      if (!sequence.disposed && this.loaded.get(m.id) === m) m.freeSequences.push(sequence);
    } catch (err) {
      this.options.logger.warn({ err, modelId: m.id }, 'a context sequence could not be cleared; it is dropped');
      if (!sequence.disposed) sequence.dispose();
    }
    this.releaseSlot(m);
  }

  private releaseSlot(m: LoadedModel): void {
    if (this.loaded.get(m.id) === m && !this.stopping && this.queue.grant(m.id)) return;
    m.active--;
    this.scheduleIdle(m);
  }

  private recordTokens(n: number): void {
    const now = this.options.clock.monotonic();
    const bucketAt = Math.floor(now / 1000) * 1000;
    const last = this.rateBuckets[this.rateBuckets.length - 1];
    if (last && last.at === bucketAt) last.tokens += n;
    else this.rateBuckets.push({ at: bucketAt, tokens: n });
    while (this.rateBuckets.length > 0 && this.rateBuckets[0]!.at < now - RATE_WINDOW_MS) this.rateBuckets.shift();
  }

  // ------------------------------------------------------------------ generation

  private stopTriggers(params: SamplingParams): string[] | undefined {
    const stops = (params.stop ?? []).filter((s) => s !== '');
    return stops.length > 0 ? stops : undefined;
  }

  private samplingOptions(params: SamplingParams) {
    const repeat =
      (params.repeatPenalty !== undefined && params.repeatPenalty !== 1) || params.frequencyPenalty || params.presencePenalty
        ? {
            penalty: params.repeatPenalty ?? 1,
            ...(params.frequencyPenalty ? { frequencyPenalty: params.frequencyPenalty } : {}),
            ...(params.presencePenalty ? { presencePenalty: params.presencePenalty } : {}),
          }
        : false;
    return {
      temperature: params.temperature,
      ...(params.topP !== undefined ? { topP: params.topP } : {}),
      ...(params.seed !== undefined ? { seed: params.seed } : {}),
      repeatPenalty: repeat as false | { penalty: number; frequencyPenalty?: number; presencePenalty?: number },
    };
  }

  private tooLong(field: string, promptTokens: number, contextSize: number): AppError {
    return invalidRequest(`The prompt is ${promptTokens} tokens; the model's context holds ${contextSize} per request (prompt + generated tokens)`, [
      { type: 'context_length_exceeded', field, description: `${promptTokens} prompt tokens exceed the context size ${contextSize}` },
    ]);
  }

  /**
   * One generation with its bookkeeping: sequence acquired by priority, metrics, the sequence freed
   * at once on abort or error, the next waiter granted.
   */
  private async withSequence<T extends { completionTokens: number; promptTokens: number; aborted: boolean }>(
    m: LoadedModel,
    opts: RunOptions,
    body: (sequence: LlamaContextSequence, track: { onTokens: (n: number) => void; signal: AbortSignal }) => Promise<T>,
  ): Promise<T & { queueMs: number; ttftMs: number; durationMs: number }> {
    const clock = this.options.clock;
    const labels = { route: opts.route, priority: opts.priority };
    const tQueue = clock.monotonic();
    const controller = new AbortController();
    const onAbort = () => controller.abort(opts.signal?.reason);
    if (opts.signal?.aborted) controller.abort(opts.signal.reason);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    this.inflight.add(controller);
    try {
      const sequence = await this.acquire(m, { ...opts, signal: controller.signal });
      const tStart = clock.monotonic();
      this.metrics.queueWait.observe({ priority: opts.priority }, (tStart - tQueue) / 1000);
      let tFirst: number | null = null;
      let generated = 0;
      let clean = false;
      try {
        opts.onStart?.();
        const work = body(sequence, {
          signal: controller.signal,
          onTokens: (n) => {
            if (tFirst === null) tFirst = clock.monotonic();
            generated += n;
            this.recordTokens(n);
          },
        });
        this.generations.add(work);
        const result = await work.finally(() => this.generations.delete(work));
        clean = !result.aborted;
        const tEnd = clock.monotonic();
        const first = tFirst ?? tEnd;
        this.metrics.tokens.inc({ ...labels, direction: 'in' }, result.promptTokens);
        this.metrics.tokens.inc({ ...labels, direction: 'out' }, result.completionTokens);
        if (tFirst !== null) this.metrics.ttft.observe(labels, (first - tStart) / 1000);
        if (generated > 1 && tEnd > first) this.metrics.tokensPerSecond.observe(labels, (generated - 1) / ((tEnd - first) / 1000));
        return { ...result, queueMs: tStart - tQueue, ttftMs: first - tStart, durationMs: tEnd - tStart };
      } finally {
        await this.release(m, sequence, clock.monotonic() - tStart, clean);
      }
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      this.inflight.delete(controller);
    }
  }

  /**
   * Runs one request and counts it once in `console_inference_requests_total`: success, cancelled
   * (the client went away), rejected (a 4xx: bad input, unknown model, queue full) or error.
   */
  private async counted<R>(opts: RunOptions, run: () => Promise<R>, aborted: (r: R) => boolean = () => false): Promise<R> {
    let outcome: RequestOutcome = 'error';
    try {
      const result = await run();
      outcome = aborted(result) ? 'cancelled' : 'success';
      return result;
    } catch (err) {
      if (opts.signal?.aborted) outcome = 'cancelled';
      else if (err instanceof AppError && err.status >= 400 && err.status < 500) outcome = 'rejected';
      throw err;
    } finally {
      this.metrics.requests.inc({ surface: opts.route, status: outcome });
    }
  }

  /** Counts a request its adapter refused before it reached the engine (a malformed body). */
  recordRejected(route: EngineRoute): void {
    this.metrics.requests.inc({ surface: route, status: 'rejected' });
  }

  /** Raw text completion (`/v1/completions`, `/api/v1/inference*`, gRPC StreamPredict). */
  complete(input: CompletionInput, opts: RunOptions): Promise<GenerationResult> {
    return this.counted(opts, () => this.runCompletion(input, opts), (r) => r.aborted);
  }

  private async runCompletion(input: CompletionInput, opts: RunOptions): Promise<GenerationResult> {
    const modelId = await this.withAdapter(await this.resolveModelId(input.modelId), input.adapter);
    const m = await this.ensureLoaded(modelId, opts.ttlSeconds, opts, true);
    try {
      const promptTokens = m.model.tokenize(input.prompt).length + (m.model.tokens.bos !== null ? 1 : 0);
      if (promptTokens >= m.contextSize) throw this.tooLong('prompt', promptTokens, m.contextSize);
      const maxTokens = Math.min(input.params.maxTokens, m.contextSize - promptTokens);
      const result = await this.withSequence(m, opts, async (sequence, track) => {
        const { LlamaCompletion } = await llamaCpp();
        const completion = new LlamaCompletion({ contextSequence: sequence });
        const tokens: Token[] = [];
        try {
          const out = await completion.generateCompletionWithMeta(input.prompt, {
            ...this.samplingOptions(input.params),
            maxTokens,
            signal: track.signal,
            stopOnAbortSignal: true,
            customStopTriggers: this.stopTriggers(input.params),
            onToken: (t) => {
              tokens.push(...t);
              track.onTokens(t.length);
            },
            onTextChunk: (chunk) => opts.onText?.(chunk, 1),
          });
          const finishReason: FinishReason = out.metadata.stopReason === 'maxTokens' ? 'length' : 'stop';
          return { text: out.response, finishReason, promptTokens, completionTokens: tokens.length, tokens, aborted: out.metadata.stopReason === 'abort' || track.signal.aborted };
        } finally {
          completion.dispose();
        }
      });
      return { modelId, ...result };
    } finally {
      this.unpin(m);
    }
  }

  /** Chat completion (`/v1/chat/completions`) with the model's chat template, grammars and tools. */
  chat(input: ChatInput, opts: RunOptions): Promise<GenerationResult> {
    return this.counted(opts, () => this.runChat(input, opts), (r) => r.aborted);
  }

  private async runChat(input: ChatInput, opts: RunOptions): Promise<GenerationResult> {
    const history: ChatHistoryItem[] = toChatHistory(input.messages);
    const modelId = await this.resolveModelId(input.modelId);
    const m = await this.ensureLoaded(modelId, opts.ttlSeconds, opts, true);
    try {
      const llama = await this.backend();
      let grammar: LlamaGrammar | undefined;
      if (input.responseFormat?.type === 'json_object') grammar = await llama.getGrammarFor('json');
      else if (input.responseFormat?.type === 'json_schema') {
        try {
          grammar = await llama.createGrammarForJsonSchema(input.responseFormat.json_schema.schema as GbnfJsonSchema as never);
        } catch (err) {
          throw invalidRequest(`response_format.json_schema.schema cannot be used: ${(err as Error).message}`, [
            { type: 'unsupported_schema', field: 'response_format.json_schema.schema', description: (err as Error).message },
          ]);
        }
      }
      const useTools = input.tools !== undefined && input.tools.length > 0 && input.toolChoice !== 'none';
      if (useTools && grammar) {
        throw invalidRequest('tools and response_format json cannot be combined', [{ type: 'unsupported', field: 'response_format', description: 'not supported together with tools' }]);
      }
      if (useTools && (input.toolChoice === 'required' || typeof input.toolChoice === 'object')) {
        // node-llama-cpp lets the model decide when to call a function; it cannot force one.
        throw invalidRequest("tool_choice can be 'auto' or 'none' with local models (a call cannot be forced)", [
          { type: 'unsupported', field: 'tool_choice', description: "only 'auto' and 'none' are supported by the local engine" },
        ]);
      }
      const functions: ChatModelFunctions | undefined = useTools ? toFunctions(input.tools!) : undefined;
      // Prompt length with the model's chat template (tools are documented in the system prompt),
      // checked before the request takes a sequence.
      const state = m.chatWrapper.generateContextState({ chatHistory: history, ...(functions ? { availableFunctions: functions } : {}) });
      const promptTokens = state.contextText.tokenize(m.model.tokenizer).length;
      if (promptTokens >= m.contextSize) throw this.tooLong('messages', promptTokens, m.contextSize);
      const maxTokens = Math.min(input.params.maxTokens, m.contextSize - promptTokens);
      const result = await this.withSequence(m, opts, async (sequence, track) => {
        const { LlamaChat } = await llamaCpp();
        const chat = new LlamaChat({ contextSequence: sequence, chatWrapper: m.chatWrapper });
        try {
          const tokens: Token[] = [];
          const common = {
            ...this.samplingOptions(input.params),
            maxTokens,
            signal: track.signal,
            stopOnAbortSignal: true,
            customStopTriggers: this.stopTriggers(input.params),
            onToken: (t: Token[]) => {
              tokens.push(...t);
              track.onTokens(t.length);
            },
            onTextChunk: (chunk: string) => opts.onText?.(chunk, 1),
          };
          const out = functions
            ? await chat.generateResponse(history, { ...common, functions, maxParallelFunctionCalls: 1 })
            : await chat.generateResponse(history, { ...common, ...(grammar ? { grammar } : {}) });
          const calls = (out.functionCalls ?? []).map((c) => ({ id: `call_${(++this.toolCallCounter).toString(36)}${Math.random().toString(36).slice(2, 10)}`, name: c.functionName, arguments: JSON.stringify(c.params ?? {}) }));
          const reason = out.metadata.stopReason;
          const finishReason: FinishReason = calls.length > 0 ? 'tool_calls' : reason === 'maxTokens' ? 'length' : 'stop';
          return {
            text: out.response,
            finishReason,
            promptTokens,
            completionTokens: tokens.length,
            tokens,
            ...(calls.length > 0 ? { toolCalls: calls } : {}),
            aborted: reason === 'abort' || track.signal.aborted,
          };
        } finally {
          chat.dispose();
        }
      });
      return { modelId, ...result };
    } finally {
      this.unpin(m);
    }
  }

  /** Embeddings (`/v1/embeddings`): one vector per input, from an embedding context of the model. */
  embed(modelIdRequested: string | undefined, inputs: readonly string[], opts: RunOptions): Promise<EmbeddingResult> {
    return this.counted(opts, () => this.runEmbedding(modelIdRequested, inputs, opts));
  }

  private async runEmbedding(modelIdRequested: string | undefined, inputs: readonly string[], opts: RunOptions): Promise<EmbeddingResult> {
    const modelId = await this.resolveModelId(modelIdRequested);
    const m = await this.ensureLoaded(modelId, opts.ttlSeconds, opts, true);
    try {
      const llama = await this.backend();
      for (const [i, text] of inputs.entries()) {
        const n = m.model.tokenize(text).length + 1;
        if (n >= m.contextSize) throw this.tooLong(inputs.length > 1 ? `input.${i}` : 'input', n, m.contextSize);
      }
      if (!m.embedding) {
        m.embedding = m.model.createEmbeddingContext({ contextSize: m.contextSize, threads: this.threads(llama) });
        m.embedding.catch(() => (m.embedding = null));
      }
      const ctx = await m.embedding;
      // The embedding context serves one request at a time; others wait in the engine queue by
      // X-Priority (under `<id>#embed`), and stop() waits for the running one (never disposing it mid-use).
      const key = embedKey(m.id);
      if (m.embeddingBusy || this.queue.sizeFor(key) > 0) await this.queue.wait(opts.requestId, key, opts.priority, opts.signal, opts.onQueued);
      else m.embeddingBusy = true;
      const run = (async () => {
        const vectors: number[][] = [];
        let tokens = 0;
        for (const text of inputs) {
          if (opts.signal?.aborted) throw opts.signal.reason ?? new Error('aborted');
          const e = await ctx.getEmbeddingFor(text);
          vectors.push([...e.vector]);
          tokens += m.model.tokenize(text).length;
        }
        return { vectors, tokens };
      })();
      this.generations.add(run);
      const { vectors, tokens } = await run.finally(() => {
        this.generations.delete(run);
        // The context passes straight to the next waiter, as a sequence does.
        if (this.stopping || !this.queue.grant(key)) m.embeddingBusy = false;
      });
      m.lastUsedMono = this.options.clock.monotonic();
      this.scheduleIdle(m);
      this.metrics.tokens.inc({ route: opts.route, priority: opts.priority, direction: 'in' }, tokens);
      return { modelId, vectors, promptTokens: tokens };
    } finally {
      this.unpin(m);
    }
  }

  // ------------------------------------------------------------------ status

  /** Tokens per chunk on the seed's SSE streams and gRPC StreamPredict. */
  chunkSize(): number {
    return this.cfg().streamChunkSize;
  }

  waiting(): WaitingRequest[] {
    return this.queue.list();
  }

  snapshot(): EngineSnapshot {
    const now = this.options.clock.monotonic();
    let tokens = 0;
    for (const b of this.rateBuckets) if (b.at >= now - RATE_WINDOW_MS) tokens += b.tokens;
    return {
      backend: this.backendName(),
      loadedModels: [...this.loaded.values()].map((m) => ({
        id: m.id,
        activeSequences: m.active,
        parallel: m.parallel,
        queued: this.queue.sizeFor(m.id),
        contextSize: m.contextSize,
        idleTtlSeconds: m.ttlSeconds,
        lastUsedAt: m.lastUsedAt,
      })),
      loading: [...this.loading.keys()],
      queue: { depth: this.queue.depthByPriority(), total: this.queue.size, maxSize: this.cfg().queueMaxSize },
      activeSequences: this.activeSequences(),
      tokensPerSecond: Math.round((tokens / (RATE_WINDOW_MS / 1000)) * 10) / 10,
      gpuLent: this.gpuLent,
    };
  }

  // ------------------------------------------------------------------ sharing the GPU with training

  /**
   * A training job holds the GPU: with `unload` every model leaves memory (a busy one as soon as its
   * generations end) and new loads wait for `reclaimGpu`; with `cpu` models reload with no GPU
   * layers; `keep` changes nothing. Resolves once no model is left on the GPU.
   */
  async yieldGpu(claim: { gpuId: number; holder: string; purpose: string; policy: 'unload' | 'cpu' | 'keep' }): Promise<void> {
    if (claim.policy === 'keep') {
      this.log.info({ holder: claim.holder }, 'a training job holds the GPU; engine.policy keep: models stay loaded');
      return;
    }
    this.gpuLent = { ...claim, since: this.options.clock.now() };
    this.log.info({ holder: claim.holder, policy: claim.policy }, 'a training job holds the GPU: engine models leave it');
    // On a CPU-only backend the trainer runs on the same cores: `unload` frees them too.
    const cpuOnly = this.backendName() === 'cpu';
    const leaving = [...this.loaded.values()].filter((m) => m.gpuLayers !== 0 || (cpuOnly && claim.policy === 'unload'));
    for (const m of leaving) {
      m.stale = true; // unloaded as soon as it is idle (scheduleIdle)
      if (!this.inUse(m)) await this.unloadNow(m.id);
    }
    const deadline = this.options.clock.monotonic() + this.cfg().loadWaitSeconds * 1000;
    while ([...this.loaded.values()].some((m) => leaving.includes(m)) && this.options.clock.monotonic() < deadline) {
      await new Promise<void>((resolve) => this.options.clock.setTimeout(resolve, 50));
    }
  }

  /** The job ended: models load on the GPU again; requests that waited for it go on. */
  reclaimGpu(holder: string): void {
    if (this.gpuLent?.holder !== holder) return;
    const policy = this.gpuLent.policy;
    this.gpuLent = null;
    this.log.info({ holder }, 'the GPU is back: engine models may use it again');
    // Models loaded on the CPU meanwhile go back to the GPU when idle.
    if (policy === 'cpu') for (const m of this.loaded.values()) if (m.gpuLayers === 0 && this.cfg().gpuLayers !== 0) m.stale = true;
    while (this.queue.grantWhere(isLoadKey));
  }
}
