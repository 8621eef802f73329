import { writeFileSync } from 'node:fs';

/** Options for a minimal GGUF v3 file (header, a few metadata keys, one F32 tensor). */
export interface TinyGgufOptions {
  architecture?: string;
  name?: string;
  contextLength?: number;
  /** Extra bytes of tensor data (F32 elements) to make the file bigger, e.g. for download tests. */
  elements?: number;
  /** Fill value pattern seed, so two files can differ. */
  seed?: number;
}

function str(value: string): Buffer {
  const body = Buffer.from(value, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(body.length));
  return Buffer.concat([len, body]);
}
function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value);
  return b;
}
function u64(value: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(value));
  return b;
}

const TYPE_UINT32 = 4;
const TYPE_STRING = 8;

/**
 * Bytes of a minimal valid GGUF v3 file: `general.architecture`, `general.name`,
 * `<arch>.context_length`, `general.alignment` 32 and one F32 tensor of `elements` values.
 * readGgufFileInfo parses it; it is not a loadable model (tests of the model library only).
 */
export function tinyGguf(options: TinyGgufOptions = {}): Buffer {
  const arch = options.architecture ?? 'llama';
  const elements = options.elements ?? 8;
  const kvs: Buffer[] = [
    Buffer.concat([str('general.architecture'), u32(TYPE_STRING), str(arch)]),
    Buffer.concat([str('general.name'), u32(TYPE_STRING), str(options.name ?? 'tiny')]),
    Buffer.concat([str('general.alignment'), u32(TYPE_UINT32), u32(32)]),
    Buffer.concat([str(`${arch}.context_length`), u32(TYPE_UINT32), u32(options.contextLength ?? 512)]),
  ];
  const tensorInfo = Buffer.concat([str('weight'), u32(1), u64(elements), u32(0 /* F32 */), u64(0)]);
  const header = Buffer.concat([Buffer.from('GGUF', 'ascii'), u32(3), u64(1), u64(kvs.length), ...kvs, tensorInfo]);
  const pad = (32 - (header.length % 32)) % 32;
  const data = Buffer.alloc(elements * 4);
  let x = (options.seed ?? 1) >>> 0;
  for (let i = 0; i < elements; i++) {
    x = (x * 1664525 + 1013904223) >>> 0;
    data.writeFloatLE((x / 0xffffffff - 0.5) * 0.04, i * 4);
  }
  return Buffer.concat([header, Buffer.alloc(pad), data]);
}

export function writeTinyGguf(path: string, options: TinyGgufOptions = {}): Buffer {
  const bytes = tinyGguf(options);
  writeFileSync(path, bytes);
  return bytes;
}
