// `npm run make-tiny-model -- OUT.gguf [--seed N] [--shape tiny|small|1b] [--type f32|f16|q8_0|q4_0]`: writes a
// random-weight llama GGUF (electron/core/services/engine/tinyGguf.ts; the engine's backend
// self-test uses the same generator). The same seed always gives the same bytes, so tests can
// compare token streams across HTTP, gRPC and direct node-llama-cpp.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MODEL_SHAPES, TINY_MODEL_TYPES, writeTinyModel, type ModelShapeName, type TinyModelType } from '../electron/core/services/engine/tinyGguf.js';

export * from '../electron/core/services/engine/tinyGguf.js';

function main(argv: string[]): void {
  const usage = 'usage: npm run make-tiny-model -- OUT.gguf [--seed N] [--shape tiny|small|1b] [--type f32|f16|q8_0|q4_0]\n';
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { seed: { type: 'string' }, shape: { type: 'string' }, type: { type: 'string' } } });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${usage}`);
    process.exit(2);
  }
  const { values, positionals } = parsed;
  const seed = Number(values.seed ?? 1);
  const errors: string[] = [];
  if (!Number.isInteger(seed) || seed < 0) errors.push('--seed needs a non-negative integer');
  const shape = values.shape ?? 'tiny';
  if (!(shape in MODEL_SHAPES)) errors.push(`--shape must be one of ${Object.keys(MODEL_SHAPES).join(', ')}`);
  const type = values.type ?? 'f32';
  if (!(TINY_MODEL_TYPES as readonly string[]).includes(type)) errors.push(`--type must be one of ${TINY_MODEL_TYPES.join(', ')}`);
  if (positionals.length !== 1) errors.push('one output path is needed');
  if (errors.length > 0) {
    process.stderr.write(`${errors.join('\n')}\n${usage}`);
    process.exit(2);
  }
  const path = writeTinyModel(positionals[0]!, { seed, shape: shape as ModelShapeName, type: type as TinyModelType, name: shape === 'tiny' ? undefined : `random-${shape}` });
  process.stdout.write(`${path}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main(process.argv.slice(2));
