import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/**
 * What a fine-tuning job will train on a GGUF base: LoRA targets (the seed's Hugging Face module
 * names mapped to llama.cpp tensor names) or, for full fine-tuning, the tensors llama.cpp's
 * optimizer really updates (F32 only, never `token_embd`). Pure functions over the base's tensor
 * list, so the HTTP layer can refuse a job that would train nothing before it is queued.
 */

/** A tensor of the base model as its GGUF header describes it (ggml order: dims[0] is the input width). */
export interface BaseTensor {
  name: string;
  dims: number[];
  /** ggml type id (0 = F32, 1 = F16, 8 = Q8_0, ...). */
  type: number;
}

export interface BaseModelInfo {
  architecture: string;
  tensors: BaseTensor[];
  chatTemplate: string | undefined;
}

/** One LoRA target as the trainer takes it: `<name>.lora_a` is [nIn, r], `<name>.lora_b` is [r, nOut]. */
export interface LoraTarget {
  name: string;
  nIn: number;
  nOut: number;
}

/** Hugging Face (PEFT) module names → the GGUF tensor kind llama.cpp names them. */
export const HF_TO_GGUF: Readonly<Record<string, string>> = {
  q_proj: 'attn_q',
  k_proj: 'attn_k',
  v_proj: 'attn_v',
  o_proj: 'attn_output',
  gate_proj: 'ffn_gate',
  up_proj: 'ffn_up',
  down_proj: 'ffn_down',
  lm_head: 'output',
};

/** The block weights `all-linear` stands for (PEFT's meaning: every linear layer but the output head). */
const ALL_LINEAR = ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'];

const GGML_F32 = 0;

/** `blk.3.attn_q.weight` → `attn_q`; `output.weight` → `output`; other names → undefined. */
function kindOf(name: string): string | undefined {
  const m = /^(?:blk\.\d+\.)?([a-z_0-9]+)\.weight$/.exec(name);
  return m?.[1];
}

/** The kinds of 2-D weights a LoRA can target in this model (for error messages). */
export function targetableKinds(tensors: readonly BaseTensor[]): string[] {
  const kinds = new Set<string>();
  for (const t of tensors) {
    const kind = kindOf(t.name);
    if (kind && t.dims.length === 2 && kind !== 'token_embd') kinds.add(kind);
  }
  return [...kinds].sort();
}

export type LoraPlanResult =
  | { ok: true; targets: LoraTarget[]; trainableParams: number; kinds: string[] }
  | { ok: false; unknown: string[]; available: string[] };

/**
 * Maps `targetModules` (HF names, GGUF kinds, `all-linear`, `output`) to the model's 2-D weights.
 * A module that matches no tensor of the model makes the whole plan fail, naming it.
 */
export function planLora(tensors: readonly BaseTensor[], targetModules: readonly string[], rank: number): LoraPlanResult {
  const available = targetableKinds(tensors);
  const kinds = new Set<string>();
  const unknown: string[] = [];
  for (const raw of targetModules) {
    const module = raw.trim();
    if (module === 'all-linear') {
      const present = ALL_LINEAR.filter((k) => available.includes(k));
      if (present.length === 0) unknown.push(module);
      for (const k of present) kinds.add(k);
      continue;
    }
    const kind = HF_TO_GGUF[module] ?? module;
    if (available.includes(kind)) kinds.add(kind);
    else unknown.push(module);
  }
  if (unknown.length > 0) return { ok: false, unknown, available };
  const targets: LoraTarget[] = [];
  for (const t of tensors) {
    const kind = kindOf(t.name);
    if (!kind || !kinds.has(kind) || t.dims.length !== 2) continue;
    targets.push({ name: t.name, nIn: t.dims[0]!, nOut: t.dims[1]! });
  }
  const trainableParams = targets.reduce((a, t) => a + rank * (t.nIn + t.nOut), 0);
  return { ok: true, targets, trainableParams, kinds: [...kinds].sort() };
}

/** Parameters full fine-tuning really updates: llama.cpp's optimizer takes F32 tensors only, never `token_embd`. */
export function fullTrainableParams(tensors: readonly BaseTensor[]): { params: number; matrices: number } {
  let params = 0;
  let matrices = 0;
  for (const t of tensors) {
    if (t.type !== GGML_F32 || t.name === 'token_embd.weight') continue;
    params += t.dims.reduce((a, b) => a * b, 1);
    if (t.dims.length === 2) matrices++;
  }
  return { params, matrices };
}

/** Reads the base's architecture, tensor list and chat template from its GGUF header (no weights). */
export async function readBaseModel(path: string): Promise<BaseModelInfo> {
  const { readGgufFileInfo } = await import('node-llama-cpp');
  const info = await readGgufFileInfo(path, { logWarnings: false });
  const meta = info.metadata as { general?: { architecture?: string }; tokenizer?: { chat_template?: string } };
  return {
    architecture: String(meta.general?.architecture ?? 'llama'),
    tensors: (info.fullTensorInfo ?? []).map((t) => ({ name: t.name, dims: t.dimensions.map(Number), type: Number(t.ggmlType) })),
    chatTemplate: meta.tokenizer?.chat_template,
  };
}

/** sha256 of a file, streamed (lineage of bases and datasets). */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}
