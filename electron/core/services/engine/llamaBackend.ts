import { availableParallelism } from 'node:os';
import type { Llama } from 'node-llama-cpp';
import type { Logger } from 'pino';
import type { EngineConfig } from '../../../../shared/contracts/config/engine.js';
import { AppError, ErrorCode } from '../../base/errors.js';
import type { Disposable } from '../../base/lifecycle.js';
import { chooseBackend, selfTestBackend, type BackendChoice, type SelfTestResult } from './backendSelfTest.js';

/** node-llama-cpp is loaded on first use (its import costs ~0.7 s and ~25 MB at start-up). */
export const llamaCpp = () => import('node-llama-cpp');

export interface LlamaBackendOptions {
  config: () => EngineConfig;
  logger: Logger;
  /** Runs one backend's self-test (default: a probe child process, backendSelfTest.ts). */
  selfTest?: (backend: BackendChoice) => Promise<SelfTestResult>;
}

/**
 * The node-llama-cpp backend: detected once (contract: CUDA → Vulkan → Metal → CPU, or the forced
 * `engine.gpu`), GPU backends self-tested first with `engine.gpuSelfTest`, and the thread count
 * contexts use. A failed detection is remembered for health and retried on the next `get()`.
 */
export class LlamaBackend implements Disposable {
  private llamaPromise: Promise<Llama> | null = null;
  private llama: Llama | null = null;
  private failure: string | null = null;
  /** The GPU self-tests run when the backend was chosen (health shows them). */
  private tests: SelfTestResult[] = [];
  /**
   * One probe per backend per start: a failed detection is retried on the next request, and must
   * not spawn another probe each time (a driver update needs a restart anyway).
   */
  private readonly selfTestRuns = new Map<BackendChoice, Promise<SelfTestResult>>();

  constructor(private readonly options: LlamaBackendOptions) {}

  /** Forgets the probes of a previous start. */
  reset(): void {
    this.selfTestRuns.clear();
  }

  /** Why detection failed (null when it has not, or has not run). */
  get error(): string | null {
    return this.failure;
  }

  get selfTests(): readonly SelfTestResult[] {
    return this.tests;
  }

  /** The backend node-llama-cpp picked (`cuda`, `vulkan`, `metal` or `cpu`), or null before detection. */
  name(): string | null {
    if (!this.llama) return null;
    return this.llama.gpu === false ? 'cpu' : this.llama.gpu;
  }

  /** Threads used for contexts: config, or the physical cores node-llama-cpp finds useful for math. */
  threads(llama: Llama | null = this.llama): number {
    const t = this.options.config().threads;
    if (!llama) return t;
    return t > 0 ? t : Math.max(1, llama.cpuMathCores || availableParallelism());
  }

  /** getLlama once, with the configured backend and threads. */
  get(): Promise<Llama> {
    if (this.llamaPromise) return this.llamaPromise;
    const cfg = this.options.config();
    const gpu = cfg.gpu === 'false' ? false : cfg.gpu;
    const log = this.options.logger;
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
        this.failure = null;
        log.info({ gpu: llama.gpu, requested: cfg.gpu, cpuMathCores: llama.cpuMathCores }, 'inference backend ready');
        return llama;
      },
      (err: unknown) => {
        const raw = (err as Error).message;
        const reason = /NoBinaryFound/i.test(raw) ? `no usable ${cfg.gpu} build of llama.cpp on this machine (missing driver or runtime?); use engine.gpu 'auto' or 'false'` : raw;
        this.failure = `backend '${cfg.gpu}' is not available: ${reason}`;
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
    this.tests = [];
    if (gpu === false || !this.options.config().gpuSelfTest) return gpu;
    const probe = this.options.selfTest ?? ((b: BackendChoice) => selfTestBackend(b));
    const test = (b: BackendChoice): Promise<SelfTestResult> => {
      let run = this.selfTestRuns.get(b);
      if (!run) this.selfTestRuns.set(b, (run = probe(b)));
      return run;
    };
    if (gpu !== 'auto') {
      const r = await test(gpu);
      this.tests = [r];
      if (!r.ok) throw new Error(`the ${gpu} backend failed its self-test: ${r.reason ?? 'unknown reason'}${r.hint ? `. ${r.hint}` : ''}`);
      return gpu;
    }
    const { choice, tests } = await chooseBackend(await supported(), test);
    this.tests = tests;
    for (const t of tests) {
      if (!t.ok) this.options.logger.warn({ backend: t.backend, reason: t.reason, hint: t.hint }, `GPU backend ${t.backend} failed its self-test; not using it`);
    }
    return choice;
  }

  /** Frees the native backend (after every model is unloaded). */
  async dispose(): Promise<void> {
    const pending = this.llamaPromise;
    this.llamaPromise = null;
    if (pending) {
      const llama = await pending.catch(() => null);
      await llama?.dispose();
    }
    this.llama = null;
  }
}
