// `npm run make-tiny-model -- OUT.gguf [--seed N]`: writes a tiny random-weight llama GGUF (F32,
// byte-level vocab, a ChatML chat template) that node-llama-cpp loads and generates from. The same
// seed always gives the same bytes, so tests can compare token streams across HTTP, gRPC and
// direct node-llama-cpp. Layout per docs/notes "A tiny GGUF that node-llama-cpp loads".
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface TinyModelOptions {
  /** PRNG seed for the weights (default 1). */
  seed?: number;
  /** `general.name` (default `tiny-llama`). */
  name?: string;
}

const ALIGNMENT = 32;
const EMBED = 64;
const LAYERS = 2;
const FFN = 128;
const HEADS = 4;
const CONTEXT = 512;
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

/** mulberry32: tiny, fast, deterministic. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function vocabulary(): { tokens: string[]; scores: number[]; types: number[] } {
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
  const scores = tokens.map((_, i) => (types[i] === 1 ? -(i - 259) : 0));
  return { tokens, scores, types };
}

/** Builds the GGUF bytes in memory (about 490 KB). */
export function buildTinyModel(options: TinyModelOptions = {}): Buffer {
  const seed = options.seed ?? 1;
  const { tokens, scores, types } = vocabulary();
  const vocab = tokens.length;
  const rand = prng(seed);
  const gaussian = (): number => {
    const u = Math.max(rand(), 1e-12);
    const v = rand();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };

  const meta: Array<[string, MetaValue]> = [
    ['general.architecture', { t: 'str', v: 'llama' }],
    ['general.name', { t: 'str', v: options.name ?? 'tiny-llama' }],
    ['general.file_type', { t: 'u32', v: 0 }],
    ['general.alignment', { t: 'u32', v: ALIGNMENT }],
    ['llama.context_length', { t: 'u32', v: CONTEXT }],
    ['llama.embedding_length', { t: 'u32', v: EMBED }],
    ['llama.block_count', { t: 'u32', v: LAYERS }],
    ['llama.feed_forward_length', { t: 'u32', v: FFN }],
    ['llama.attention.head_count', { t: 'u32', v: HEADS }],
    ['llama.attention.head_count_kv', { t: 'u32', v: HEADS }],
    ['llama.attention.layer_norm_rms_epsilon', { t: 'f32', v: 1e-5 }],
    ['llama.rope.dimension_count', { t: 'u32', v: EMBED / HEADS }],
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
    ['tokenizer.chat_template', { t: 'str', v: TINY_CHAT_TEMPLATE }],
  ];

  // [name, dims (ggml order, innermost first), init]
  const tensors: Array<[string, number[], 'norm' | 'rand']> = [
    ['token_embd.weight', [EMBED, vocab], 'rand'],
    ['output_norm.weight', [EMBED], 'norm'],
    ['output.weight', [EMBED, vocab], 'rand'],
  ];
  for (let i = 0; i < LAYERS; i++) {
    tensors.push(
      [`blk.${i}.attn_norm.weight`, [EMBED], 'norm'],
      [`blk.${i}.attn_q.weight`, [EMBED, EMBED], 'rand'],
      [`blk.${i}.attn_k.weight`, [EMBED, EMBED], 'rand'],
      [`blk.${i}.attn_v.weight`, [EMBED, EMBED], 'rand'],
      [`blk.${i}.attn_output.weight`, [EMBED, EMBED], 'rand'],
      [`blk.${i}.ffn_norm.weight`, [EMBED], 'norm'],
      [`blk.${i}.ffn_gate.weight`, [EMBED, FFN], 'rand'],
      [`blk.${i}.ffn_up.weight`, [EMBED, FFN], 'rand'],
      [`blk.${i}.ffn_down.weight`, [FFN, EMBED], 'rand'],
    );
  }

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
  const sizes: number[] = [];
  for (const [name, dims] of tensors) {
    w.str(name);
    w.u32(dims.length);
    for (const d of dims) w.u64(d);
    w.u32(0); // GGML_TYPE_F32
    w.u64(offset);
    const bytes = dims.reduce((a, b) => a * b, 1) * 4;
    sizes.push(bytes);
    offset += Math.ceil(bytes / ALIGNMENT) * ALIGNMENT;
  }
  w.pad(ALIGNMENT);
  for (let t = 0; t < tensors.length; t++) {
    const [, dims, init] = tensors[t]!;
    const n = dims.reduce((a, b) => a * b, 1);
    const data = Buffer.alloc(n * 4);
    const [name] = tensors[t]!;
    for (let i = 0; i < n; i++) {
      let value = init === 'norm' ? 1 : gaussian() * 0.02;
      // Output rows of control and byte tokens are zero (the draw is still made, so the other
      // weights do not depend on this choice): greedy decoding then yields plain ASCII and never
      // ends early, so \`max_tokens\` bounds every greedy generation and outputs are readable.
      if (name === 'output.weight' && Math.floor(i / EMBED) < FIRST_PLAIN_TOKEN) value = 0;
      data.writeFloatLE(value, i * 4);
    }
    w.push(data);
    w.pad(ALIGNMENT);
  }
  return w.toBuffer();
}

/** Writes the model to `path` (atomically: temp file, then rename). */
export function writeTinyModel(path: string, options: TinyModelOptions = {}): string {
  const out = resolve(path);
  mkdirSync(dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  writeFileSync(tmp, buildTinyModel(options));
  renameSync(tmp, out);
  return out;
}

function main(argv: string[]): void {
  let seed = 1;
  let out: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--seed') {
      seed = Number(argv[++i]);
      if (!Number.isInteger(seed) || seed < 0) throw new Error('--seed needs a non-negative integer');
    } else if (a.startsWith('--seed=')) {
      seed = Number(a.slice(7));
      if (!Number.isInteger(seed) || seed < 0) throw new Error('--seed needs a non-negative integer');
    } else if (!a.startsWith('-')) out = a;
    else throw new Error(`unknown option ${a}`);
  }
  if (!out) {
    process.stderr.write('usage: npm run make-tiny-model -- OUT.gguf [--seed N]\n');
    process.exit(2);
  }
  const path = writeTinyModel(out, { seed });
  process.stdout.write(`${path}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main(process.argv.slice(2));
