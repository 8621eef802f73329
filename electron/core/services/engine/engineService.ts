import type { ChatHistoryItem, ChatModelFunctions, GbnfJsonSchema, LlamaContextSequence, LlamaGrammar, Token } from 'node-llama-cpp';
import type { Logger } from 'pino';
import type { ChatMessage, ChatTool, ModelDetails, ModelSummary, ResponseFormat } from '../../../../shared/contracts/engine.js';
import type { EngineConfig } from '../../../../shared/contracts/config/engine.js';
import type { Priority } from '../../../../shared/contracts/priority.js';
import type { Clock } from '../../base/clock.js';
import type { ConfigStore } from '../../base/config.js';
import { AppError, invalidRequest } from '../../base/errors.js';
import type { ComponentHealth } from '../../base/health.js';
import { BaseService, drainUntil } from '../../base/lifecycle.js';
import type { MetricsRegistry } from '../../base/metrics.js';
import type { ModelFilesPort } from '../../base/ports.js';
import type { BackendChoice, SelfTestResult } from './backendSelfTest.js';
import { toChatHistory, toFunctions } from './chatHistory.js';
import { EngineMetrics, type EngineRoute, type RequestOutcome } from './engineMetrics.js';
import { EventChannel, type GenerateOptions, type GenerationEvent, type GenerationRequest } from './generation.js';
import { LlamaBackend, llamaCpp } from './llamaBackend.js';
import { ModelPool, stoppingError, type GpuLent, type LoadedModel } from './modelPool.js';
import { SequenceScheduler } from './sequenceScheduler.js';
import type { QueuePosition, WaitingRequest } from './waitQueue.js';

/** How long after start-up the backend is detected (when `engine.detectOnStart`). */
const DETECT_DELAY_MS = 1500;


export type { EngineRoute } from './engineMetrics.js';
export type { GenerateOptions, GenerationEvent, GenerationRequest } from './generation.js';
export type { GpuLent } from './modelPool.js';
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

const RATE_WINDOW_MS = 10_000;

/**
 * Local inference on node-llama-cpp (contract §3, §5): a facade over the backend (`LlamaBackend`),
 * the loaded models (`ModelPool`) and the priority scheduling of their sequences
 * (`SequenceScheduler`); it runs generations and keeps the engine metrics. Knows nothing of HTTP
 * or gRPC: adapters encode the events of `generate()` (and the result of `embed()`).
 */
export class EngineService extends BaseService {
  readonly name = 'engine';
  private readonly backend: LlamaBackend;
  private readonly scheduler: SequenceScheduler<LoadedModel>;
  private readonly pool: ModelPool;
  private readonly generations = new Set<Promise<unknown>>();
  /** Every request accepted (generations and embeddings), from its call to its last event: what a drain waits for. */
  private readonly accepted = new Set<Promise<unknown>>();
  private readonly metrics: EngineMetrics;
  private readonly log: Logger;
  private readonly rateBuckets: Array<{ at: number; tokens: number }> = [];
  private readonly inflight = new Set<AbortController>();
  private toolCallCounter = 0;

  constructor(private readonly options: EngineServiceOptions) {
    super();
    this.log = options.logger;
    const config = () => this.cfg();
    this.backend = new LlamaBackend({ config, logger: options.logger, ...(options.selfTest ? { selfTest: options.selfTest } : {}) });
    this.scheduler = new SequenceScheduler<LoadedModel>({
      logger: options.logger,
      now: () => options.clock.monotonic(),
      maxQueue: () => this.cfg().queueMaxSize,
      defaultParallel: () => this.cfg().parallel,
      model: (id) => this.pool.get(id),
      isCurrent: (m) => this.pool.isCurrent(m),
      settled: (m) => this.pool.scheduleIdle(m),
    });
    this.pool = new ModelPool({ config, clock: options.clock, logger: options.logger, models: options.models, backend: this.backend, scheduler: this.scheduler, refusal: () => this.refusal('The engine') });
    this.metrics = new EngineMetrics(options.metrics, {
      depth: () => this.scheduler.depthByPriority(),
      active: () => this.pool.activeSequences(),
      loaded: () => this.pool.size,
    });
  }

  private cfg(): EngineConfig {
    return this.options.config.get().engine;
  }

  protected async onStart(): Promise<void> {
    this.scheduler.open();
    this.pool.open();
    this.backend.reset();
    this.disposables.defer(this.options.models.onChange(() => void this.pool.reconcile().catch((err: unknown) => this.log.warn({ err }, 'model library reconcile failed'))));
    if (this.cfg().detectOnStart) {
      // In the background, a moment after start-up: loading node-llama-cpp and its native backend
      // blocks the event loop for a while, so it must not delay the listeners. Failures show in health.
      const timer = this.options.clock.setTimeout(() => void this.backend.get().catch(() => undefined), DETECT_DELAY_MS);
      this.disposables.defer(() => timer.cancel());
    }
  }


  /**
   * Drains: new requests are refused (503, see `refusal`), and so is every accepted request that
   * does not yet hold a sequence or the embedding context (waiting in the queue, for room to load,
   * or for its model to load): it has produced nothing yet, so a 503 now loses no work and lets its
   * client retry elsewhere at once instead of waiting for a deadline that may abort it anyway.
   * Generations already running go on until they end or `deadline` fires; onStop aborts the rest.
   */
  protected override async onDrain(deadline: AbortSignal): Promise<void> {
    this.scheduler.close(stoppingError());
    await drainUntil(deadline, Promise.allSettled([...this.accepted]));
  }

  protected override async onStop(): Promise<void> {
    const stopping = stoppingError();
    this.pool.close();
    this.scheduler.close(stopping);
    for (const c of this.inflight) c.abort(stopping);
    // Generations stop at their next token once aborted; wait for them before freeing the models.
    await Promise.allSettled([...this.generations, ...this.pool.pendingLoads()]);
    await this.pool.unloadAll();
    await this.backend.dispose();
  }

  /** The backend node-llama-cpp picked (`cuda`, `vulkan`, `metal` or `cpu`), or null before detection. */
  backendName(): string | null {
    return this.backend.name();
  }

  async health(): Promise<ComponentHealth> {
    const cfg = this.cfg();
    const total = await this.options.models.list().then((l) => l.length, () => undefined);
    const error = this.backend.error;
    const selfTests = this.backend.selfTests;
    const gpuLent = this.pool.gpuLent;
    const status: 'UP' | 'DOWN' = this.running && error === null ? 'UP' : 'DOWN';
    return {
      status,
      details: {
        backend: this.backendName(),
        requestedBackend: cfg.gpu,
        ...(error ? { error } : {}),
        ...(selfTests.length > 0 ? { selfTests } : {}),
        ...(gpuLent ? { gpuLentTo: gpuLent } : {}),
        threads: this.backend.threads(),
        models: { total, loaded: this.pool.size, ready: this.pool.size },
        parallel: cfg.parallel,
        queue: { waiting: this.scheduler.size, maxSize: cfg.queueMaxSize },
        activeSequences: this.pool.activeSequences(),
      },
    };
  }

  // ------------------------------------------------------------------ models

  listModels(): Promise<ModelSummary[]> {
    return this.pool.listModels();
  }

  getModel(id: string): Promise<ModelDetails> {
    return this.pool.getModel(id);
  }

  /** The id a request means: `default` or nothing → engine.defaultModel or the library's first model. */
  resolveModelId(requested: string | undefined): Promise<string> {
    return this.pool.resolveModelId(requested);
  }

  /** Loads a model (or returns it when loaded); concurrent callers share one load. */
  async load(id: string, ttlSeconds?: number): Promise<ModelDetails> {
    await this.pool.load(id, ttlSeconds);
    return this.getModel(id);
  }

  /** Unloads a model; 409 while requests use it. */
  async unload(id: string): Promise<ModelDetails> {
    await this.pool.unload(id);
    return this.getModel(id);
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
      const sequence = await this.scheduler.acquire(m, { ...opts, signal: controller.signal });
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
        // Aborted by the engine (it stops), not by its client: an error, not a short answer.
        if (result.aborted && controller.signal.aborted && !opts.signal?.aborted) throw controller.signal.reason;
        clean = !result.aborted;
        const tEnd = clock.monotonic();
        const first = tFirst ?? tEnd;
        this.metrics.tokens.inc({ ...labels, direction: 'in' }, result.promptTokens);
        this.metrics.tokens.inc({ ...labels, direction: 'out' }, result.completionTokens);
        if (tFirst !== null) this.metrics.ttft.observe(labels, (first - tStart) / 1000);
        if (generated > 1 && tEnd > first) this.metrics.tokensPerSecond.observe(labels, (generated - 1) / ((tEnd - first) / 1000));
        return { ...result, queueMs: tStart - tQueue, ttftMs: first - tStart, durationMs: tEnd - tStart };
      } finally {
        await this.scheduler.release(m, sequence, clock.monotonic() - tStart, clean);
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
  private async runCompletion(input: CompletionInput, opts: RunOptions): Promise<GenerationResult> {
    const modelId = await this.pool.withAdapter(await this.pool.resolveModelId(input.modelId), input.adapter);
    const m = await this.pool.ensureLoaded(modelId, opts.ttlSeconds, opts, true);
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
      this.pool.unpin(m);
    }
  }

  /** Chat completion (`/v1/chat/completions`) with the model's chat template, grammars and tools. */
  private async runChat(input: ChatInput, opts: RunOptions): Promise<GenerationResult> {
    const history: ChatHistoryItem[] = toChatHistory(input.messages);
    const modelId = await this.pool.resolveModelId(input.modelId);
    const m = await this.pool.ensureLoaded(modelId, opts.ttlSeconds, opts, true);
    try {
      const llama = await this.backend.get();
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
      this.pool.unpin(m);
    }
  }

  /**
   * One generation (completion or chat) as a stream of `GenerationEvent`s: the pipeline every
   * surface (OpenAI SSE and JSON, the seed API's SSE and JSON, gRPC) encodes. It starts at once;
   * aborting `opts.signal` frees its queue place or sequence, and the stream still ends with `done`
   * (aborted) or `error`. Never throws: a failure is the last event. The only way to run a
   * generation; `collect()` (generation.ts) runs one to its end. While the engine drains or is
   * stopped, the stream is one `error` (503 UNAVAILABLE).
   */
  generate(request: GenerationRequest, opts: GenerateOptions): AsyncIterable<GenerationEvent> {
    const events = new EventChannel<GenerationEvent>();
    const run: RunOptions = {
      ...opts,
      onQueued: (position) => events.push({ type: 'queued', position }),
      onStart: () => events.push({ type: 'started' }),
      onText: (text, tokens) => events.push({ type: 'text', text, tokens }),
    };
    const work = this.admit(run, () => (request.kind === 'chat' ? this.runChat(request.input, run) : this.runCompletion(request.input, run)), (r) => r.aborted);
    void work
      .then(
        (result) => events.push({ type: 'done', result }),
        (error: unknown) => events.push({ type: 'error', error }),
      )
      .finally(() => events.close());
    return events;
  }

  /** Embeddings (`/v1/embeddings`): one vector per input, from an embedding context of the model. */
  embed(modelIdRequested: string | undefined, inputs: readonly string[], opts: RunOptions): Promise<EmbeddingResult> {
    return this.admit(opts, () => this.runEmbedding(modelIdRequested, inputs, opts));
  }

  /**
   * Accepts a request (or refuses it at once, 503, when the engine does not run), counts it, and
   * tracks it until it ends so that a drain can wait for it.
   */
  private admit<R>(opts: RunOptions, run: () => Promise<R>, aborted?: (r: R) => boolean): Promise<R> {
    const refused = this.refusal('The engine');
    const work = this.counted(opts, refused ? () => Promise.reject(refused) : run, aborted);
    if (refused) return work;
    const tracked = work.then(
      () => undefined,
      () => undefined,
    );
    this.accepted.add(tracked);
    void tracked.then(() => this.accepted.delete(tracked));
    return work;
  }

  private async runEmbedding(modelIdRequested: string | undefined, inputs: readonly string[], opts: RunOptions): Promise<EmbeddingResult> {
    const modelId = await this.pool.resolveModelId(modelIdRequested);
    const m = await this.pool.ensureLoaded(modelId, opts.ttlSeconds, opts, true);
    try {
      const llama = await this.backend.get();
      for (const [i, text] of inputs.entries()) {
        const n = m.model.tokenize(text).length + 1;
        if (n >= m.contextSize) throw this.tooLong(inputs.length > 1 ? `input.${i}` : 'input', n, m.contextSize);
      }
      const ctx = await m.embeddingContext(this.backend.threads(llama));
      // The embedding context serves one request at a time; others wait in the engine queue by
      // X-Priority, and stop() waits for the running one (never disposing it mid-use).
      await this.scheduler.acquireEmbedding(m, opts);
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
        this.scheduler.releaseEmbedding(m);
      });
      m.lastUsedMono = this.options.clock.monotonic();
      this.pool.scheduleIdle(m);
      this.metrics.tokens.inc({ route: opts.route, priority: opts.priority, direction: 'in' }, tokens);
      return { modelId, vectors, promptTokens: tokens };
    } finally {
      this.pool.unpin(m);
    }
  }

  // ------------------------------------------------------------------ status

  /** Tokens per chunk on the seed's SSE streams and gRPC StreamPredict. */
  chunkSize(): number {
    return this.cfg().streamChunkSize;
  }

  waiting(): WaitingRequest[] {
    return this.scheduler.waiting();
  }

  snapshot(): EngineSnapshot {
    const now = this.options.clock.monotonic();
    let tokens = 0;
    for (const b of this.rateBuckets) if (b.at >= now - RATE_WINDOW_MS) tokens += b.tokens;
    return {
      backend: this.backendName(),
      loadedModels: this.pool.models().map((m) => ({
        id: m.id,
        activeSequences: m.active,
        parallel: m.parallel,
        queued: this.scheduler.queuedFor(m.id),
        contextSize: m.contextSize,
        idleTtlSeconds: m.ttlSeconds,
        lastUsedAt: m.lastUsedAt,
      })),
      loading: this.pool.loadingIds(),
      queue: { depth: this.scheduler.depthByPriority(), total: this.scheduler.size, maxSize: this.cfg().queueMaxSize },
      activeSequences: this.pool.activeSequences(),
      tokensPerSecond: Math.round((tokens / (RATE_WINDOW_MS / 1000)) * 10) / 10,
      gpuLent: this.pool.gpuLent,
    };
  }

  // ------------------------------------------------------------------ sharing the GPU with training

  /**
   * A training job holds the GPU: with `unload` every model leaves memory (a busy one as soon as its
   * generations end) and new loads wait for `reclaimGpu`; with `cpu` models reload with no GPU
   * layers; `keep` changes nothing. Resolves once no model is left on the GPU.
   */
  yieldGpu(claim: { gpuId: number; holder: string; purpose: string; policy: 'unload' | 'cpu' | 'keep' }): Promise<void> {
    return this.pool.yieldGpu(claim);
  }

  /** The job ended: models load on the GPU again; requests that waited for it go on. */
  reclaimGpu(holder: string): void {
    this.pool.reclaimGpu(holder);
  }
}
