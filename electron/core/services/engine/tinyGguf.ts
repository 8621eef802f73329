// A random-weight llama GGUF (F32, F16, Q8_0 or Q4_0 weights, byte-level vocab, a ChatML chat template) that
// node-llama-cpp loads and generates from. The same seed always gives the same bytes, so tests can
// compare token streams across HTTP, gRPC and direct node-llama-cpp. Layout per docs/notes "A tiny GGUF that node-llama-cpp loads".
import { closeSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { prng } from '../../base/prng.js';

/** The dimensions of the generated llama model. */
export interface ModelShape {
  embed: number;
  layers: number;
  ffn: number;
  heads: number;
  kvHeads: number;
  /** At least 259 + 41 (control, byte and plain tokens); the rest are filler tokens `tokN`. */
  vocab: number;
  context: number;
}

/**
 * `tiny` (the default, ~490 KB, what tests use), `small` (~60M parameters, 8 layers: a training
 * benchmark with real work per step) and `1b`, a Llama-3.2-1B-sized body (2048 wide,
 * 16 layers, GQA 32/8) with a 32k vocabulary, ~2.4 GB in F16: random weights, so its text is noise,
 * but its memory traffic and compute per token are those of a real 1B model (GPU benchmarks).
 */
export const MODEL_SHAPES = {
  tiny: { embed: 64, layers: 2, ffn: 128, heads: 4, kvHeads: 4, vocab: 300, context: 512 },
  small: { embed: 512, layers: 8, ffn: 1536, heads: 8, kvHeads: 8, vocab: 32000, context: 1024 },
  '1b': { embed: 2048, layers: 16, ffn: 8192, heads: 32, kvHeads: 8, vocab: 32000, context: 4096 },
} as const satisfies Record<string, ModelShape>;
export type ModelShapeName = keyof typeof MODEL_SHAPES;

export interface TinyModelOptions {
  /** PRNG seed for the weights (default 1). */
  seed?: number;
  /** `general.name` (default `tiny-llama`). */
  name?: string;
  /** Dimensions (default `tiny`). */
  shape?: ModelShapeName | ModelShape;
  /** Storage type of the 2-D weights (default `f32`; norms stay F32). `q8_0`/`q4_0` quantize them as llama.cpp does. */
  type?: TinyModelType;
  /** `tokenizer.chat_template` (default {@link TINY_CHAT_TEMPLATE}); `null` writes none. */
  chatTemplate?: string | null;
}

export type TinyModelType = 'f32' | 'f16' | 'q8_0' | 'q4_0';
export const TINY_MODEL_TYPES: readonly TinyModelType[] = ['f32', 'f16', 'q8_0', 'q4_0'];

/** ggml tensor type ids, `general.file_type` values and bytes per 32-value block. */
const GGML_TYPES = {
  f32: { id: 0, fileType: 0, blockBytes: 128 },
  f16: { id: 1, fileType: 1, blockBytes: 64 },
  q4_0: { id: 2, fileType: 2, blockBytes: 18 },
  q8_0: { id: 8, fileType: 7, blockBytes: 34 },
} as const;
type GgmlTypeId = (typeof GGML_TYPES)[TinyModelType]['id'];

const ALIGNMENT = 32;
/** `<unk>`, `<s>`, `</s>` and the 256 byte tokens come first. */
const FIRST_PLAIN_TOKEN = 3 + 256;

/** ChatML, which node-llama-cpp recognises; short so a tiny context is not filled by the wrapper. */
export const TINY_CHAT_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// GGUF value types
const T_U32 = 4;
const T_I32 = 5;
const T_F32 = 6;
const T_BOOL = 7;
const T_STRING = 8;
const T_ARRAY = 9;

type MetaValue =
  | { t: 'u32'; v: number }
  | { t: 'f32'; v: number }
  | { t: 'bool'; v: boolean }
  | { t: 'str'; v: string }
  | { t: 'strs'; v: string[] }
  | { t: 'f32s'; v: number[] }
  | { t: 'i32s'; v: number[] };

class ByteWriter {
  private chunks: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  i32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }
  u64(v: number | bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  pad(to: number): void {
    const rem = this.length % to;
    if (rem !== 0) this.push(Buffer.alloc(to - rem));
  }
  toBuffer(): Buffer {
    return Buffer.concat(this.chunks, this.length);
  }
}


function vocabulary(size: number): { tokens: string[]; scores: number[]; types: number[] } {
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3];
  for (let i = 0; i < 256; i++) {
    tokens.push(`<0x${i.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6);
  }
  const plain = ['▁', ...'abcdefghijklmnopqrstuvwxyz', ...'ABCDEFGHIJ', ...'.,!?'];
  for (const p of plain) {
    tokens.push(p);
    types.push(1);
  }
  if (size < tokens.length) throw new Error(`vocab must be at least ${tokens.length}`);
  while (tokens.length < size) {
    tokens.push(`tok${tokens.length}`);
    types.push(1);
  }
  const scores = tokens.map((_, i) => (types[i] === 1 ? -(i - 259) : 0));
  return { tokens, scores, types };
}

/** IEEE half from a float (round to nearest; the values here are small and finite). */
function toHalf(value: number): number {
  const f = new Float32Array([value]);
  const x = new Uint32Array(f.buffer)[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 127 + 15;
  const mant = x & 0x7fffff;
  if (exp <= 0) return sign | (exp < -10 ? 0 : ((mant | 0x800000) >> (14 - exp)) & 0x3ff);
  if (exp >= 31) return sign | 0x7c00;
  return sign | (exp << 10) | ((mant + 0x1000) >> 13);
}

interface Plan {
  header: Buffer;
  tensors: Array<{ name: string; dims: number[]; init: 'norm' | 'rand'; type: GgmlTypeId; bytes: number }>;
  shape: ModelShape;
  seed: number;
}

function plan(options: TinyModelOptions): Plan {
  const seed = options.seed ?? 1;
  const shape: ModelShape = typeof options.shape === 'object' ? options.shape : MODEL_SHAPES[options.shape ?? 'tiny'];
  const weightType = GGML_TYPES[options.type ?? 'f32'];
  const { embed, layers, ffn, heads, kvHeads, context } = shape;
  const { tokens, scores, types } = vocabulary(shape.vocab);
  const vocab = tokens.length;
  const kvDim = (embed / heads) * kvHeads;

  const meta: Array<[string, MetaValue]> = [
    ['general.architecture', { t: 'str', v: 'llama' }],
    ['general.name', { t: 'str', v: options.name ?? 'tiny-llama' }],
    ['general.file_type', { t: 'u32', v: weightType.fileType }],
    ['general.alignment', { t: 'u32', v: ALIGNMENT }],
    ['llama.context_length', { t: 'u32', v: context }],
    ['llama.embedding_length', { t: 'u32', v: embed }],
    ['llama.block_count', { t: 'u32', v: layers }],
    ['llama.feed_forward_length', { t: 'u32', v: ffn }],
    ['llama.attention.head_count', { t: 'u32', v: heads }],
    ['llama.attention.head_count_kv', { t: 'u32', v: kvHeads }],
    ['llama.attention.layer_norm_rms_epsilon', { t: 'f32', v: 1e-5 }],
    ['llama.rope.dimension_count', { t: 'u32', v: embed / heads }],
    ['llama.rope.freq_base', { t: 'f32', v: 10000 }],
    ['tokenizer.ggml.model', { t: 'str', v: 'llama' }],
    ['tokenizer.ggml.tokens', { t: 'strs', v: tokens }],
    ['tokenizer.ggml.scores', { t: 'f32s', v: scores }],
    ['tokenizer.ggml.token_type', { t: 'i32s', v: types }],
    ['tokenizer.ggml.unknown_token_id', { t: 'u32', v: 0 }],
    ['tokenizer.ggml.bos_token_id', { t: 'u32', v: 1 }],
    ['tokenizer.ggml.eos_token_id', { t: 'u32', v: 2 }],
    ['tokenizer.ggml.add_bos_token', { t: 'bool', v: true }],
    ['tokenizer.ggml.add_eos_token', { t: 'bool', v: false }],
  ];
  const chatTemplate = options.chatTemplate === undefined ? TINY_CHAT_TEMPLATE : options.chatTemplate;
  if (chatTemplate !== null) meta.push(['tokenizer.chat_template', { t: 'str', v: chatTemplate }]);

  // [name, dims (ggml order, innermost first), init]
  const list: Array<[string, number[], 'norm' | 'rand']> = [
    ['token_embd.weight', [embed, vocab], 'rand'],
    ['output_norm.weight', [embed], 'norm'],
    ['output.weight', [embed, vocab], 'rand'],
  ];
  for (let i = 0; i < layers; i++) {
    list.push(
      [`blk.${i}.attn_norm.weight`, [embed], 'norm'],
      [`blk.${i}.attn_q.weight`, [embed, embed], 'rand'],
      [`blk.${i}.attn_k.weight`, [embed, kvDim], 'rand'],
      [`blk.${i}.attn_v.weight`, [embed, kvDim], 'rand'],
      [`blk.${i}.attn_output.weight`, [embed, embed], 'rand'],
      [`blk.${i}.ffn_norm.weight`, [embed], 'norm'],
      [`blk.${i}.ffn_gate.weight`, [embed, ffn], 'rand'],
      [`blk.${i}.ffn_up.weight`, [embed, ffn], 'rand'],
      [`blk.${i}.ffn_down.weight`, [ffn, embed], 'rand'],
    );
  }
  const tensors = list.map(([name, dims, init]) => {
    const t = dims.length > 1 ? weightType : GGML_TYPES.f32;
    return { name, dims, init, type: t.id, bytes: (dims.reduce((a, b) => a * b, 1) / 32) * t.blockBytes };
  });

  const w = new ByteWriter();
  w.push(Buffer.from('GGUF', 'ascii'));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(meta.length);
  for (const [key, value] of meta) {
    w.str(key);
    switch (value.t) {
      case 'u32':
        w.u32(T_U32);
        w.u32(value.v);
        break;
      case 'f32':
        w.u32(T_F32);
        w.f32(value.v);
        break;
      case 'bool':
        w.u32(T_BOOL);
        w.push(Buffer.from([value.v ? 1 : 0]));
        break;
      case 'str':
        w.u32(T_STRING);
        w.str(value.v);
        break;
      case 'strs':
        w.u32(T_ARRAY);
        w.u32(T_STRING);
        w.u64(value.v.length);
        for (const s of value.v) w.str(s);
        break;
      case 'f32s':
        w.u32(T_ARRAY);
        w.u32(T_F32);
        w.u64(value.v.length);
        for (const f of value.v) w.f32(f);
        break;
      case 'i32s':
        w.u32(T_ARRAY);
        w.u32(T_I32);
        w.u64(value.v.length);
        for (const n of value.v) w.i32(n);
        break;
    }
  }
  let offset = 0;
  for (const t of tensors) {
    w.str(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.type);
    w.u64(offset);
    offset += Math.ceil(t.bytes / ALIGNMENT) * ALIGNMENT;
  }
  w.pad(ALIGNMENT);
  return { header: w.toBuffer(), tensors, shape, seed };
}

/** Yields the tensor data (each padded to the alignment), one tensor at a time. */
function* tensorData(p: Plan): Generator<Buffer> {
  const rand = prng(p.seed);
  const gaussian = (): number => {
    const u = Math.max(rand(), 1e-12);
    const v = rand();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
  // F16 weights are drawn from a table of 65536 N(0, 0.02²) halves (two table indices per PRNG
  // draw): a 1B model is generated in seconds instead of minutes.
  let halves: Uint16Array | null = null;
  const { embed } = p.shape;
  for (const t of p.tensors) {
    const n = t.dims.reduce((a, b) => a * b, 1);
    const data = Buffer.alloc(Math.ceil(t.bytes / ALIGNMENT) * ALIGNMENT);
    // Output rows of control and byte tokens are zero (the draw is still made, so the other
    // weights do not depend on this choice): greedy decoding then yields plain text and never
    // ends early, so `max_tokens` bounds every greedy generation and outputs are readable.
    const zeroBelow = t.name === 'output.weight' ? FIRST_PLAIN_TOKEN * embed : 0;
    if (t.type === 0) {
      for (let i = 0; i < n; i++) {
        const value = t.init === 'norm' ? 1 : gaussian() * 0.02;
        data.writeFloatLE(i < zeroBelow ? 0 : value, i * 4);
      }
    } else if (t.type === 2 || t.type === 8) {
      const values = new Float32Array(n);
      for (let i = 0; i < n; i++) values[i] = i < zeroBelow ? (gaussian(), 0) : gaussian() * 0.02;
      if (t.type === 8) quantizeQ8_0(values, data);
      else quantizeQ4_0(values, data);
    } else {
      halves ??= Uint16Array.from({ length: 65536 }, () => toHalf(gaussian() * 0.02));
      const out = new Uint16Array(data.buffer, data.byteOffset, n);
      for (let i = 0; i < n; i += 2) {
        const r = (rand() * 4294967296) >>> 0;
        out[i] = halves[r & 0xffff]!;
        if (i + 1 < n) out[i + 1] = halves[r >>> 16]!;
      }
      out.fill(0, 0, Math.min(zeroBelow, n));
    }
    yield data;
  }
}

/** llama.cpp's reference Q8_0: blocks of 32 values as an F16 scale (max |x| / 127) and 32 int8. */
function quantizeQ8_0(values: Float32Array, out: Buffer): void {
  for (let b = 0; b < values.length / 32; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(values[b * 32 + j]!));
    const d = amax / 127;
    const id = d ? 1 / d : 0;
    const o = b * 34;
    out.writeUInt16LE(toHalf(d), o);
    for (let j = 0; j < 32; j++) out.writeInt8(Math.round(values[b * 32 + j]! * id), o + 2 + j);
  }
}

/** llama.cpp's reference Q4_0: an F16 scale (the signed max / -8) and 32 nibbles, x[j] low and x[j+16] high. */
function quantizeQ4_0(values: Float32Array, out: Buffer): void {
  for (let b = 0; b < values.length / 32; b++) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = values[b * 32 + j]!;
      if (Math.abs(v) > amax) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = max / -8;
    const id = d ? 1 / d : 0;
    const o = b * 18;
    out.writeUInt16LE(toHalf(d), o);
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(15, Math.trunc(values[b * 32 + j]! * id + 8.5));
      const q1 = Math.min(15, Math.trunc(values[b * 32 + j + 16]! * id + 8.5));
      out[o + 2 + j] = q0 | (q1 << 4);
    }
  }
}

/** Builds the GGUF bytes in memory (the tiny shape is about 490 KB). */
export function buildTinyModel(options: TinyModelOptions = {}): Buffer {
  const p = plan(options);
  return Buffer.concat([p.header, ...tensorData(p)]);
}

/** Writes the model to `path` (atomically: temp file, then rename), one tensor at a time. */
export function writeTinyModel(path: string, options: TinyModelOptions = {}): string {
  const out = resolve(path);
  mkdirSync(dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  const p = plan(options);
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, p.header);
    for (const chunk of tensorData(p)) writeSync(fd, chunk);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, out);
  return out;
}

