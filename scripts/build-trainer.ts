// `npm run build-trainer [-- --cache DIR] [--gpu auto|cuda|cpu]`: compiles the native trainer
// (resources/trainer/trainer.cpp) against node-llama-cpp's prebuilt llama.cpp libraries and prints
// one JSON line: {"path","backendDir","variant","built","seconds"}. The console does this by itself
// on the first training job; this script is for checking a machine ahead of time.
import { resolve } from 'node:path';
import { ensureTrainer } from '../electron/core/services/training/trainerBuild.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const gpu = (arg('gpu') ?? 'auto') as 'auto' | 'cuda' | 'cpu';
if (!['auto', 'cuda', 'cpu'].includes(gpu)) {
  console.error('--gpu must be auto, cuda or cpu');
  process.exit(2);
}
const cacheDir = resolve(arg('cache') ?? '.tmp/trainer');
const t0 = performance.now();
try {
  const binary = await ensureTrainer({ cacheDir, gpu });
  console.log(JSON.stringify({ ...binary, seconds: Math.round((performance.now() - t0) / 10) / 100 }));
} catch (err) {
  console.error((err as Error).message);
  process.exit(1);
}
