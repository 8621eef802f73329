import type { ChatWrapper, LlamaContext, LlamaContextSequence, LlamaEmbeddingContext, LlamaModel } from 'node-llama-cpp';
import type { Logger } from 'pino';
import type { ModelDetails, ModelStatus, ModelSummary } from '../../../../shared/contracts/engine.js';
import type { EngineConfig } from '../../../../shared/contracts/config/engine.js';
import { ADAPTER_SEPARATOR } from '../../base/adapters.js';
import type { Clock, TimerHandle } from '../../base/clock.js';
import { AppError, ErrorCode, invalidRequest } from '../../base/errors.js';
import type { Disposable } from '../../base/lifecycle.js';
import type { LocalAdapterFile, LocalModelFile, ModelFilesPort } from '../../base/ports.js';
import { llamaCpp, type LlamaBackend } from './llamaBackend.js';
import { DEFAULT_ETA_MS, type SchedulableModel, type SequenceScheduler, type Waiter } from './sequenceScheduler.js';

/** A model the engine serves: a library file, or a LoRA adapter applied to its base file. */
export type ServedFile = LocalModelFile & { adapter?: LocalAdapterFile };

/** The GPU is lent to a training job (see `GpuTenantPort`). */
export interface GpuLent {
  holder: string;
  purpose: string;
  gpuId: number;
  policy: 'unload' | 'cpu' | 'keep';
  since: number;
}

/** Who waits when a model cannot be loaded yet (the request's priority, id and queue-place callback). */
export type LoadWaiter = Omit<Waiter, 'signal'>;

/** One loaded model: its weights, its context (`parallel` sequences) and an embedding context made on demand. */
export class LoadedModel implements SchedulableModel, Disposable {
  active = 0;
  avgRequestMs = DEFAULT_ETA_MS;
  readonly freeSequences: LlamaContextSequence[] = [];
  embeddingBusy = false;
  /** Requests between `ensureLoaded` and the end of their generation (see `ensureLoaded`'s `pin`). */
  pins = 0;
  /** The file changed on disk (or the GPU is lent): unload as soon as the model is idle. */
  stale = false;
  ttlSeconds: number;
  lastUsedMono: number;
  lastUsedAt: number;
  idleTimer: TimerHandle | null = null;
  private embedding: Promise<LlamaEmbeddingContext> | null = null;

  constructor(
    readonly file: ServedFile,
    readonly model: LlamaModel,
    readonly context: LlamaContext,
    readonly parallel: number,
    /** Estimated bytes (weights + KV cache of every sequence), counted against the memory budget. */
    readonly estimateBytes: number,
    readonly chatWrapper: ChatWrapper,
    ttlSeconds: number,
    private readonly clock: Clock,
  ) {
    this.ttlSeconds = ttlSeconds;
    this.lastUsedMono = clock.monotonic();
    this.lastUsedAt = clock.now();
  }

  get id(): string {
    return this.file.id;
  }
  get contextSize(): number {
    return this.context.contextSize;
  }
  /** Layers on the GPU (0 = the model runs on the CPU). */
  get gpuLayers(): number {
    return this.model.gpuLayers;
  }

  cancelIdle(): void {
    this.idleTimer?.cancel();
    this.idleTimer = null;
  }

  touch(): void {
    this.lastUsedMono = this.clock.monotonic();
    this.lastUsedAt = this.clock.now();
  }

  /** The model's embedding context, created on first use (a failed creation is retried next time). */
  embeddingContext(threads: number): Promise<LlamaEmbeddingContext> {
    if (!this.embedding) {
      const created = this.model.createEmbeddingContext({ contextSize: this.contextSize, threads });
      this.embedding = created;
      created.catch(() => {
        if (this.embedding === created) this.embedding = null;
      });
    }
    return this.embedding;
  }

  async dispose(): Promise<void> {
    this.cancelIdle();
    const emb = this.embedding;
    this.embedding = null;
    if (emb) await (await emb.catch(() => null))?.dispose();
    await this.context.dispose();
    await this.model.dispose();
  }
}

export interface ModelPoolOptions {
  config: () => EngineConfig;
  clock: Clock;
  logger: Logger;
  /** The model library (models service). */
  models: ModelFilesPort;
  backend: LlamaBackend;
  scheduler: SequenceScheduler<LoadedModel>;
  /** Why the engine takes no new work now (loads are then refused with it); null while it runs. */
  refusal: () => AppError | null;
}

/** What a request refused or aborted because the engine drains or stops gets (503). */
export const stoppingError = (): AppError => new AppError(ErrorCode.UNAVAILABLE, 'The engine is stopping');

const fileName = (file: LocalModelFile): string => file.path.split(/[\\/]/).pop() ?? file.id;

/**
 * The loaded models: loads shared by concurrent callers, a memory budget and model count (least
 * recently used idle models unloaded for room, busy ones waited for), idle unloading, reloading a
 * changed file, and lending the GPU to training. Also the catalogue of what can be served.
 */
export class ModelPool {
  private readonly loaded = new Map<string, LoadedModel>();
  private readonly loading = new Map<string, Promise<LoadedModel>>();
  /** Loads that have passed `makeRoom` (id → estimated bytes): they count against the budget and model count. */
  private readonly reserved = new Map<string, number>();
  /** Why a model file failed to load, remembered for that version of the file (size + mtime). */
  private readonly loadErrors = new Map<string, { message: string; sizeBytes: number; modifiedAt: number }>();
  /** Set while a training job holds the GPU (see `yieldGpu`). */
  private lent: GpuLent | null = null;
  private stopping = false;

  constructor(private readonly options: ModelPoolOptions) {}

  private cfg(): EngineConfig {
    return this.options.config();
  }

  open(): void {
    this.stopping = false;
  }

  /** Refuses new loads and idle timers; `unloadAll` then frees what is loaded. */
  close(): void {
    this.stopping = true;
  }

  /** Loads in progress (stop waits for them before unloading). */
  pendingLoads(): Promise<unknown>[] {
    return [...this.loading.values()];
  }

  async unloadAll(): Promise<void> {
    for (const id of [...this.loaded.keys()]) await this.unloadNow(id);
  }

  get size(): number {
    return this.loaded.size;
  }

  get gpuLent(): GpuLent | null {
    return this.lent;
  }

  get(id: string): LoadedModel | undefined {
    return this.loaded.get(id);
  }

  models(): LoadedModel[] {
    return [...this.loaded.values()];
  }

  loadingIds(): string[] {
    return [...this.loading.keys()];
  }

  activeSequences(): number {
    let n = 0;
    for (const m of this.loaded.values()) n += m.active;
    return n;
  }

  isCurrent(m: LoadedModel): boolean {
    return this.loaded.get(m.id) === m;
  }

  // ------------------------------------------------------------------ catalogue

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
  async reconcile(): Promise<void> {
    const files = new Map((await this.servedFiles()).map((f) => [f.id, f]));
    for (const m of [...this.loaded.values()]) {
      const f = files.get(m.id);
      if (f && f.sizeBytes === m.file.sizeBytes && f.modifiedAt === m.file.modifiedAt) continue;
      m.stale = true;
      if (!this.inUse(m)) {
        this.options.logger.info({ model: m.id }, 'model file changed or removed; unloading');
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
  async withAdapter(modelId: string, adapter: string | null | undefined): Promise<string> {
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
      modelPath: fileName(file),
      status: s.status,
      capabilities: s.capabilities,
      sizeBytes: file.sizeBytes,
      ...(file.architecture ? { architecture: file.architecture } : {}),
      ...(s.error ? { error: s.error } : {}),
      config: {
        ...(file.contextLength ? { maxModelLen: file.contextLength } : {}),
        ...(loaded ? { contextSize: loaded.contextSize } : {}),
        parallel: loaded?.parallel ?? cfg.parallel,
        gpuLayers: loaded ? loaded.gpuLayers : cfg.gpuLayers,
        idleTtlSeconds: loaded?.ttlSeconds ?? cfg.idleTtlSeconds,
      },
      activeSequences: loaded?.active ?? 0,
      queued: this.options.scheduler.queuedFor(id),
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

  // ------------------------------------------------------------------ load and unload

  /** Loads a model (or returns it when loaded), then lets it go idle. */
  async load(id: string, ttlSeconds?: number): Promise<void> {
    const m = await this.ensureLoaded(id, ttlSeconds);
    this.scheduleIdle(m);
  }

  /** Unloads a model; 409 while requests use it. */
  async unload(id: string): Promise<void> {
    await this.fileFor(id);
    const m = this.loaded.get(id);
    if (m && this.inUse(m)) {
      throw new AppError(ErrorCode.CONFLICT, `Model '${id}' is in use (${m.active} generating, ${this.options.scheduler.queuedFor(id)} waiting); try again when idle`);
    }
    const pending = this.loading.get(id);
    if (pending) await pending.catch(() => undefined);
    await this.unloadNow(id);
  }

  private async unloadNow(id: string): Promise<void> {
    const m = this.loaded.get(id);
    if (!m) return;
    this.loaded.delete(id);
    await m.dispose();
    this.options.logger.info({ model: id }, 'model unloaded');
  }

  /** A model is in use while a request holds or waits for one of its sequences, or is about to (pinned). */
  private inUse(m: LoadedModel): boolean {
    return m.active > 0 || m.pins > 0 || m.embeddingBusy || this.options.scheduler.hasWaiters(m.id);
  }

  /** The model may have gone idle: unload it now (stale), or when its idle TTL passes. */
  scheduleIdle(m: LoadedModel): void {
    m.cancelIdle();
    if (this.inUse(m) || this.stopping) return;
    // An idle model can be evicted: a request waiting for room to load another one looks again.
    this.options.scheduler.loadMayProceed();
    const log = this.options.logger;
    if (m.stale) {
      void this.unloadNow(m.id).catch((err: unknown) => log.error({ err, model: m.id }, 'unload of a changed model failed'));
      return;
    }
    if (m.ttlSeconds <= 0) return;
    m.idleTimer = this.options.clock.setTimeout(() => {
      m.idleTimer = null;
      if (this.loaded.get(m.id) !== m || this.inUse(m)) return;
      log.info({ model: m.id, idleSeconds: m.ttlSeconds }, 'unloading idle model');
      void this.unloadNow(m.id).catch((err: unknown) => log.error({ err, model: m.id }, 'idle unload failed'));
    }, m.ttlSeconds * 1000);
  }

  /**
   * The loaded model `id`, loading it when needed; concurrent callers share one load. With `pin`, the
   * model is returned pinned (see `unpin`), so it cannot be evicted before the caller's generation.
   */
  async ensureLoaded(id: string, ttlSeconds?: number, waiter?: LoadWaiter, pin = false): Promise<LoadedModel> {
    for (;;) {
      const refused = this.stopping ? stoppingError() : this.options.refusal();
      if (refused) throw refused;
      let m = this.loaded.get(id);
      if (!m) {
        const file = await this.fileFor(id);
        let pending = this.loading.get(id);
        if (!pending) {
          pending = this.loadFile(file, ttlSeconds, waiter).finally(() => {
            this.loading.delete(id);
            this.reserved.delete(id);
            // A finished or failed load may leave room (or a model to evict) for a waiting one.
            this.options.scheduler.loadMayProceed();
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
  unpin(m: LoadedModel): void {
    m.pins--;
    this.scheduleIdle(m);
  }

  private async loadFile(file: ServedFile, ttlSeconds: number | undefined, waiter: LoadWaiter | undefined): Promise<LoadedModel> {
    const cfg = this.cfg();
    const log = this.options.logger;
    const name = fileName(file);
    if (file.error) {
      this.setLoadError(file, file.error);
      throw new AppError(ErrorCode.MODEL_NOT_READY, `Cannot load model '${file.id}' from ${name}: ${file.error}`, {
        details: [{ type: 'model_file', field: 'modelId', description: `${name}: ${file.error}` }],
      });
    }
    const llama = await this.options.backend.get();
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
      const onCpu = this.lent?.policy === 'cpu';
      if (onCpu) log.info({ model: file.id, holder: this.lent?.holder }, 'the GPU is lent to a training job: loading on the CPU');
      model = await llama.loadModel({ modelPath: file.path, gpuLayers: onCpu ? 0 : cfg.gpuLayers === 'auto' ? 'auto' : cfg.gpuLayers });
      // An adapter model shares the base's file (memory-mapped, so its pages are shared with a loaded base on the CPU).
      const lora = file.adapter ? { lora: { adapters: [{ filePath: file.adapter.path }] } } : {};
      const context = await model.createContext({ contextSize, sequences: cfg.parallel, threads: this.options.backend.threads(llama), ...lora });
      const chatWrapper = (await llamaCpp()).resolveChatWrapper(model);
      const loaded = new LoadedModel(file, model, context, cfg.parallel, estimateBytes, chatWrapper, ttlSeconds ?? cfg.idleTtlSeconds, this.options.clock);
      this.loaded.set(file.id, loaded);
      this.loadErrors.delete(file.id);
      log.info({ model: file.id, file: name, ms: Math.round(this.options.clock.monotonic() - t0), contextSize: loaded.contextSize, parallel: loaded.parallel, gpuLayers: model.gpuLayers }, 'model loaded');
      return loaded;
    } catch (err) {
      await model?.dispose().catch(() => undefined);
      const reason = (err as Error).message;
      this.setLoadError(file, reason);
      log.error({ err, model: file.id, file: name }, 'model load failed');
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
    while (this.lent?.policy === 'unload') {
      const lent = this.lent;
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
      await this.options.scheduler.waitToLoad(file.id, { ...waiter, signal: timeout.signal });
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
    const name = fileName(file);
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
        this.options.logger.info({ model: idle.id, for: file.id }, 'unloading least recently used model to make room');
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

  // ------------------------------------------------------------------ sharing the GPU with training

  /**
   * A training job holds the GPU: with `unload` every model leaves memory (a busy one as soon as its
   * generations end) and new loads wait for `reclaimGpu`; with `cpu` models reload with no GPU
   * layers; `keep` changes nothing. Resolves once no model is left on the GPU.
   */
  async yieldGpu(claim: { gpuId: number; holder: string; purpose: string; policy: 'unload' | 'cpu' | 'keep' }): Promise<void> {
    const log = this.options.logger;
    if (claim.policy === 'keep') {
      log.info({ holder: claim.holder }, 'a training job holds the GPU; engine.policy keep: models stay loaded');
      return;
    }
    this.lent = { ...claim, since: this.options.clock.now() };
    log.info({ holder: claim.holder, policy: claim.policy }, 'a training job holds the GPU: engine models leave it');
    // On a CPU-only backend the trainer runs on the same cores: `unload` frees them too.
    const cpuOnly = this.options.backend.name() === 'cpu';
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
    if (this.lent?.holder !== holder) return;
    const policy = this.lent.policy;
    this.lent = null;
    this.options.logger.info({ holder }, 'the GPU is back: engine models may use it again');
    // Models loaded on the CPU meanwhile go back to the GPU when idle.
    if (policy === 'cpu') for (const m of this.loaded.values()) if (m.gpuLayers === 0 && this.cfg().gpuLayers !== 0) m.stale = true;
    this.options.scheduler.wakeAllLoads();
  }
}
