/**
 * LoRA adapters published by training and served by the engine. They live in
 * `<models dir>/adapters/<name>.gguf`, each with `<name>.json` (this sidecar) naming its base model
 * and its lineage. The engine serves one as the model id `<base>+<name>`.
 */

/** Sub-folder of the models dir that holds adapters (the model library lists only the top level). */
export const ADAPTERS_DIR = 'adapters';

/** Separator of a base model id and an adapter name in a model id (model ids never contain it). */
export const ADAPTER_SEPARATOR = '+';

export interface AdapterSidecar {
  /** Model id of the base in the models dir; null when the base was a file elsewhere. */
  base: string | null;
  basePath: string;
  jobId: string;
  baseModel: string;
  baseSha256: string;
  datasetSha256: string;
  method: 'lora' | 'full';
  trainableParams: number;
  hyperParams: Record<string, unknown>;
  finalLoss?: number;
  finalValLoss?: number;
  completedAt: string;
}
