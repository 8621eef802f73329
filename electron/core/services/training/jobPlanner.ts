import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { ConfigStore } from '../../base/config.js';
import { AppError, ErrorCode, invalidRequest, type ErrorDetail } from '../../base/errors.js';
import type { ModelFilesPort } from '../../base/ports.js';
import type { StartTrainingRequest } from '../../../../shared/contracts/training.js';
import { datasetRequestProblems } from './datasets.js';
import type { TrainingPlan } from './jobStore.js';
import { fullTrainableParams, planLora, readBaseModel, type BaseModelInfo, type BaseTensor } from './loraPlan.js';
import { checkExistingFile, checkOutputDir, isInside, modelIdFrom, resolveRoots } from './pathPolicy.js';

const GGML_TYPE_NAMES: Record<number, string> = { 0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 8: 'Q8_0', 10: 'Q2_K', 11: 'Q3_K', 12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K', 30: 'BF16' };

/** The storage types of a model's weight matrices, e.g. "Q4_K and Q6_K". */
function describeTypes(tensors: readonly BaseTensor[]): string {
  const types = [...new Set(tensors.filter((t) => t.dims.length === 2).map((t) => GGML_TYPE_NAMES[t.type] ?? `ggml type ${t.type}`))];
  return types.join(' and ');
}

export interface JobPlannerOptions {
  config: ConfigStore;
  /** The console's data dir (relative paths resolve here; outputs default under `training/outputs`). */
  dataDir: string;
  /** The models dir (absolute, real path). */
  modelsDir: () => string;
  /** Resolves `baseModel` ids; without it ids are looked up as `<modelsDir>/<id>.gguf`. */
  models?: ModelFilesPort;
}

/**
 * Turns a training request into a job plan before it is queued: paths checked against the allowed
 * roots, the dataset's rows checked, the base model resolved, and (llama backend) the method and
 * LoRA targets decided. Every problem is a 400 listing each bad field.
 */
export class JobPlanner {
  constructor(private readonly options: JobPlannerOptions) {}

  private get cfg() {
    return this.options.config.get().training;
  }

  /** Validates a request (every bad field listed) and decides what the job will run. */
  async plan(request: StartTrainingRequest): Promise<TrainingPlan> {
    const cfg = this.cfg;
    const backend = cfg.backend;
    const details: ErrorDetail[] = [];
    const roots = await resolveRoots([this.options.dataDir, ...cfg.allowedRoots]);
    if (backend === 'command' && cfg.command.executable === '') {
      throw new AppError(ErrorCode.UNAVAILABLE, 'training.backend is "command" but training.command.executable is not configured');
    }
    const dataset = await checkExistingFile(request.datasetPath, this.options.dataDir, roots);
    if (!dataset.ok) details.push({ type: 'invalid_path', field: 'datasetPath', description: dataset.description });
    // Dataset contents (datasets.ts): every bad row is a 400 before the job is queued.
    else details.push(...(await datasetRequestProblems(dataset.path, backend)));
    const outputBase = join(this.options.dataDir, 'training', 'outputs');
    const output = await checkOutputDir(request.outputDir, outputBase, roots);
    if (!output.ok) details.push({ type: 'invalid_path', field: 'outputDir', description: output.description });
    const modelsDir = this.options.modelsDir();
    if (output.ok && isInside(modelsDir, output.path)) {
      details.push({ type: 'invalid_path', field: 'outputDir', description: 'must not be inside the models dir (the finished model is published there by itself)' });
    }
    const model = await this.resolveBaseModel(request.baseModel, backend, [...roots, modelsDir]);
    if (model.kind === 'invalid') details.push({ type: 'invalid_path', field: 'baseModel', description: model.description });
    if (details.length > 0 || !dataset.ok || !output.ok || model.kind === 'invalid') throw invalidRequest('Invalid training request', details);
    if (model.kind === 'missing') {
      throw new AppError(ErrorCode.MODEL_NOT_FOUND, `Model '${request.baseModel}' is not in the models dir (${modelsDir}); download or import it first`, {
        details: [{ type: 'model_not_found', field: 'baseModel', description: model.description }],
      });
    }
    const fallback = `trained-${randomBytes(3).toString('hex')}`;
    const base: TrainingPlan = {
      backend,
      modelPath: model.path,
      datasetPath: dataset.path,
      outputDir: output.path,
      outputModelId: modelIdFrom(basename(output.path), fallback),
    };
    return backend === 'llama' ? { ...base, ...(await this.planMethod(request, model.path)) } : base;
  }

  /**
   * What the llama backend will train: LoRA (targets mapped to the base's tensors) or full
   * fine-tuning (only where the base has F32 weights). A request that would train nothing, or that
   * asks for what llama.cpp cannot do, is refused here, before it is queued.
   */
  private async planMethod(request: StartTrainingRequest, modelPath: string): Promise<Partial<TrainingPlan>> {
    let info: BaseModelInfo;
    try {
      info = await readBaseModel(modelPath);
    } catch (err) {
      throw invalidRequest('Invalid training request', [{ type: 'invalid_model', field: 'baseModel', description: `not a readable GGUF file: ${(err as Error).message}` }]);
    }
    const hp = request.hyperParams;
    const details: ErrorDetail[] = [];
    const full = fullTrainableParams(info.tensors);
    const method = hp.method ?? (request.loraConfig !== undefined || full.matrices === 0 ? 'lora' : 'full');
    let extra: Partial<TrainingPlan> = {};
    if (method === 'full') {
      if (request.loraConfig !== undefined) {
        details.push({ type: 'conflict', field: 'loraConfig', description: 'hyperParams.method is "full"; LoRA values apply to method "lora" only' });
      }
      if (full.matrices === 0) {
        details.push({
          type: 'nothing_to_train',
          field: 'hyperParams.method',
          description: `full fine-tuning would train nothing on this base: llama.cpp's optimizer updates F32 tensors only, and its weight matrices are ${describeTypes(info.tensors)}. Use method "lora" (the default for such models)`,
        });
      }
      extra = { method, trainableParams: full.params, architecture: info.architecture };
    } else {
      const lc = request.loraConfig;
      const rank = lc?.r ?? hp.loraRank;
      if (lc?.bias !== undefined && lc.bias !== 'none') {
        details.push({ type: 'unsupported', field: 'loraConfig.bias', description: `"${lc.bias}": the llama backend trains LoRA A/B matrices only (llama.cpp adapters carry no biases); use "none"` });
      }
      const targetModules = lc?.targetModules ?? ['q_proj', 'v_proj'];
      const lora = planLora(info.tensors, targetModules, rank);
      if (!lora.ok) {
        details.push({
          type: 'unknown_target_module',
          field: 'loraConfig.targetModules',
          description: `${lora.unknown.map((m) => `'${m}'`).join(', ')} match no weight of this model; its weights are ${lora.available.join(', ')} (Hugging Face names q_proj k_proj v_proj o_proj gate_proj up_proj down_proj, all-linear and output are mapped to these)`,
        });
      } else {
        extra = { method, trainableParams: lora.trainableParams, architecture: info.architecture, loraTargets: lora.targets };
      }
    }
    if (details.length > 0) throw invalidRequest('Invalid training request', details);
    return extra;
  }

  private async resolveBaseModel(
    input: string,
    backend: 'llama' | 'command',
    roots: string[],
  ): Promise<{ kind: 'ok'; path: string } | { kind: 'missing'; description: string } | { kind: 'invalid'; description: string }> {
    const looksLikePath = input.startsWith('/') || input.startsWith('.') || input.includes('\\') || input.endsWith('.gguf');
    if (!looksLikePath && !input.includes('/')) {
      // a model id of the models dir
      if (this.options.models) {
        try {
          const file = await this.options.models.get(input);
          if (file) return { kind: 'ok', path: file.path };
        } catch (err) {
          if (err instanceof AppError) return { kind: 'invalid', description: err.details?.[0]?.description ?? err.message };
          throw err;
        }
      } else {
        const candidate = join(this.options.modelsDir(), `${input}.gguf`);
        if (/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(input) && existsSync(candidate)) return { kind: 'ok', path: candidate };
      }
      return { kind: 'missing', description: `no model '${input}' in the models dir` };
    }
    if (looksLikePath) {
      const file = await checkExistingFile(input, this.options.dataDir, roots);
      if (!file.ok) return { kind: 'invalid', description: file.description };
      if (!file.path.endsWith('.gguf')) return { kind: 'invalid', description: 'must be a .gguf file' };
      return { kind: 'ok', path: file.path };
    }
    // `org/name` (a Hugging Face id): only an external trainer can fetch it.
    if (backend === 'command') return { kind: 'ok', path: input };
    // The seed's shape: a Hugging Face id that the model catalog knows (its GGUF repo), downloaded or not.
    const entry = await this.catalogEntryFor(input);
    if (entry) {
      const file = await this.options.models?.get(entry.id).catch(() => undefined);
      if (file) return { kind: 'ok', path: file.path };
      return {
        kind: 'missing',
        description: `'${input}' is the catalog's '${entry.id}' (${entry.uri}), which is not downloaded yet: POST /api/v1/library/downloads {"uri": "${entry.uri}", "name": "${entry.id}"} (or the Models page), then train on '${entry.id}'`,
      };
    }
    return { kind: 'missing', description: `'${input}' is not a local model; download it into the models dir first (the llama backend trains local GGUF files)` };
  }

  /** The catalog entry whose `hf:` repo is `repo` (with or without a `-GGUF` suffix), if any. */
  private async catalogEntryFor(repo: string): Promise<{ id: string; uri: string } | undefined> {
    const catalog = await this.options.models?.catalog?.().catch(() => undefined);
    const want = repo.toLowerCase().replace(/-gguf$/, '');
    return catalog?.models.find((m) => {
      const r = /^hf:([^:]+)/.exec(m.uri)?.[1]?.toLowerCase().replace(/-gguf$/, '');
      return r === want;
    });
  }
}
