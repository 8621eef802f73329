import { stat } from 'node:fs/promises';


/** What the library learns from a GGUF header. */
export interface GgufSummary {
  architecture?: string;
  contextLength?: number;
  /** `general.name`, when present. */
  name?: string;
  /** Why the file is not a usable GGUF; absent when it parsed and its tensor data fits the file. */
  error?: string;
}

// Bytes per block and elements per block of the common ggml tensor types, used to check that the
// tensor data the header describes is really in the file (a truncated download parses otherwise:
// the header is at the start). Types not listed are checked by their start offset only.
const TYPE_LAYOUT: Readonly<Record<number, readonly [bytes: number, elements: number]>> = {
  0: [4, 1], // F32
  1: [2, 1], // F16
  2: [18, 32], // Q4_0
  3: [20, 32], // Q4_1
  6: [22, 32], // Q5_0
  7: [24, 32], // Q5_1
  8: [34, 32], // Q8_0
  9: [36, 32], // Q8_1
  10: [84, 256], // Q2_K
  11: [110, 256], // Q3_K
  12: [144, 256], // Q4_K
  13: [176, 256], // Q5_K
  14: [210, 256], // Q6_K
  15: [292, 256], // Q8_K
  24: [1, 1], // I8
  25: [2, 1], // I16
  26: [4, 1], // I32
  27: [8, 1], // I64
  28: [8, 1], // F64
  30: [2, 1], // BF16
};

function tensorBytes(type: number, dims: readonly (number | bigint)[]): number | undefined {
  const layout = TYPE_LAYOUT[type];
  if (!layout) return undefined;
  const elements = dims.reduce<number>((n, d) => n * Number(d), 1);
  return Math.ceil(elements / layout[1]) * layout[0];
}

function message(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.length > 300 ? `${text.slice(0, 297)}...` : text;
}

/**
 * Reads a GGUF file's header with node-llama-cpp's `readGgufFileInfo` and checks that the tensor
 * data it describes fits in the file. Never throws: a file that is not a usable GGUF comes back
 * with `error` set to the reason.
 */
export async function inspectGguf(path: string): Promise<GgufSummary> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    return { error: `cannot read file: ${message(err)}` };
  }
  if (size < 24) return { error: `not a GGUF file: only ${size} bytes` };
  try {
    // Loaded on first use: node-llama-cpp's import is heavy and most starts never need it.
    const { readGgufFileInfo } = await import('node-llama-cpp');
    const info = await readGgufFileInfo(path, { sourceType: 'filesystem', logWarnings: false, spliceSplitFiles: false });
    const general = info.metadata.general as { architecture?: unknown; name?: unknown } | undefined;
    const architecture = typeof general?.architecture === 'string' ? general.architecture : undefined;
    const ctx = (info.architectureMetadata as { context_length?: unknown } | undefined)?.context_length;
    const summary: GgufSummary = {
      ...(architecture ? { architecture } : {}),
      ...(typeof ctx === 'number' || typeof ctx === 'bigint' ? { contextLength: Number(ctx) } : {}),
      ...(typeof general?.name === 'string' ? { name: general.name } : {}),
    };
    const dataStart = info.infoEndOffset;
    if (dataStart === undefined || dataStart > size) return { ...summary, error: `truncated GGUF: header ends at byte ${dataStart ?? '?'} but the file has ${size} bytes` };
    let needed = dataStart;
    for (const t of info.tensorInfo ?? []) {
      const start = dataStart + Number(t.offset);
      const bytes = tensorBytes(Number(t.ggmlType), t.dimensions);
      needed = Math.max(needed, start + (bytes ?? 1));
    }
    if (needed > size) return { ...summary, error: `truncated GGUF: tensor data needs ${needed} bytes but the file has ${size}` };
    if (!architecture) return { ...summary, error: 'GGUF header has no general.architecture' };
    return summary;
  } catch (err) {
    return { error: `invalid GGUF: ${message(err)}` };
  }
}
