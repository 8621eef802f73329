import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTinyModel, writeTinyModel } from '../../scripts/make-tiny-model.js';

/**
 * The tiny random-weight llama GGUF (scripts/make-tiny-model.ts), generated once per content and
 * cached in the OS temp dir, so test files share it.
 */
export function tinyModelPath(seed = 1): string {
  const hash = createHash('sha256').update(buildTinyModel({ seed })).digest('hex').slice(0, 16);
  const path = join(tmpdir(), 'console-tiny-models', `tiny-${seed}-${hash}.gguf`);
  if (!existsSync(path)) writeTinyModel(path, { seed });
  return path;
}

/** Copies the tiny model into `<dataDir>/models/<id>.gguf`. */
export function installTinyModel(dataDir: string, id = 'tiny', seed = 1): string {
  const dir = join(dataDir, 'models');
  mkdirSync(dir, { recursive: true });
  const target = join(dir, `${id}.gguf`);
  copyFileSync(tinyModelPath(seed), target);
  return target;
}
