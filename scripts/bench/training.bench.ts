// `npm run bench -- training`: the native llama trainer on the tiny model, measured side by side in
// one run: (1) the trainer binary run directly, (2) the same job through a real console
// (HTTP start → completed, with the queue, SQLite loss points and model publishing). Prints one JSON
// line: seconds per epoch, trained tokens per second, and the console's wall-time overhead ratio; then
// (3) LoRA (rank 8 on every block weight and the output) vs full fine-tuning of the same F32 base, and
// LoRA on its Q8_0 twin: tokens/s, peak RSS and trainable parameters, side by side.
// Options: --gpu cpu|cuda, --shape tiny|small, --threads N, --epochs N (default 3).
import { readFileSync } from 'node:fs';
import { fullTrainableParams, planLora, readBaseModel } from '../../electron/core/services/training/loraPlan.js';
import { writeTinyModel } from '../../electron/core/services/engine/tinyGguf.js';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { createConsole } from '../../electron/core/console.js';
import { ensureTrainer } from '../../electron/core/services/training/trainerBuild.js';
import { buildTinyModel } from '../make-tiny-model.js';

const opt = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? String(process.argv[i + 1]) : fallback;
};
const EPOCHS = Number(opt('epochs', '3'));
const THREADS = Number(opt('threads', '1'));
const N_CTX = 256;
/** `cpu` (default) or `cuda` (all layers on the GPU; needs @node-llama-cpp/linux-x64-cuda and a driver). */
const GPU = opt('gpu', 'cpu');
/** `tiny` (default) or `small` (~60M F32 parameters, 8 layers: enough work per step for a GPU to show). */
const SHAPE = opt('shape', 'tiny');
if (GPU !== 'cpu' && GPU !== 'cuda') throw new Error('--gpu must be cpu or cuda');
if (SHAPE !== 'tiny' && SHAPE !== 'small') throw new Error('--shape must be tiny or small');
if (!Number.isInteger(THREADS) || THREADS < 1) throw new Error('--threads must be a positive integer');
if (!Number.isInteger(EPOCHS) || EPOCHS < 1) throw new Error('--epochs must be a positive integer');
const DATASET = 'the cat sat on the mat. the dog ate the bone. '.repeat(100);

interface EpochLine {
  type: 'epoch';
  seconds: number;
  tokensPerSecond: number;
  loss: number;
  valLoss: number;
}

const work = mkdtempSync(join(tmpdir(), 'training-bench-'));
const silent = new Writable({ write: (_c, _e, cb) => cb() });
try {
  const binary = await ensureTrainer({ cacheDir: resolve('.tmp/trainer'), gpu: GPU });
  const dataDir = join(work, 'data');
  mkdirSync(join(dataDir, 'models'), { recursive: true });
  const modelPath = join(dataDir, 'models', 'tiny.gguf');
  writeFileSync(modelPath, buildTinyModel({ seed: 1, shape: SHAPE }));
  const datasetPath = join(dataDir, 'dataset.txt');
  writeFileSync(datasetPath, DATASET);

  /** Runs the trainer on a config; epoch lines, dataset tokens, wall time and peak RSS (VmHWM, polled). */
  const runTrainer = async (name: string, extra: Record<string, unknown>) => {
    const configPath = join(work, `${name}.json`);
    writeFileSync(
      configPath,
      JSON.stringify({ backendDir: binary.backendDir, modelPath, datasetPath, outputPath: join(work, `${name}.gguf`), epochs: EPOCHS, learningRate: 3e-4, nCtx: N_CTX, threads: THREADS, validationSplit: 0.1, gpuLayers: binary.variant === 'cuda' ? -1 : 0, ...extra }),
    );
    const lines: EpochLine[] = [];
    let datasetTokens = 0;
    let peakKb = 0;
    const start = performance.now();
    await new Promise<void>((resolveRun, reject) => {
      const child = spawn(binary.path, [configPath], { stdio: ['ignore', 'pipe', 'ignore'] });
      const poll = setInterval(() => {
        try {
          const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
          if (m) peakKb = Math.max(peakKb, Number(m[1]));
        } catch {
          // exited
        }
      }, 20);
      let buffer = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        buffer += chunk;
        let i: number;
        while ((i = buffer.indexOf('\n')) >= 0) {
          const line = JSON.parse(buffer.slice(0, i)) as { type: string; tokens?: number };
          buffer = buffer.slice(i + 1);
          if (line.type === 'epoch') lines.push(line as unknown as EpochLine);
          if (line.type === 'start') datasetTokens = line.tokens ?? 0;
        }
      });
      child.once('close', (code) => {
        clearInterval(poll);
        if (code === 0) resolveRun();
        else reject(new Error(`trainer (${name}) exited ${code}`));
      });
    });
    return { epochs: lines, tokens: datasetTokens, wall: (performance.now() - start) / 1000, peakRssMb: Math.round(peakKb / 1024) };
  };

  // (1) the trainer alone
  const t0 = performance.now();
  const direct = await runTrainer('direct', {});
  const epochs = direct.epochs;
  const tokens = direct.tokens;
  const directWall = (performance.now() - t0) / 1000;

  // (2) the same job through the console
  const consoleInstance = createConsole({
    env: {},
    dataDir,
    logDestination: silent,
    overrides: { server: { httpPort: 0, grpcPort: 0 }, engine: { gpu: 'false' }, training: { threads: THREADS, gpu: GPU, trainerDir: resolve('.tmp/trainer'), validationSplit: 0.1 } },
  });
  const { httpUrl } = await consoleInstance.start();
  const t1 = performance.now();
  const started = (await (
    await fetch(`${httpUrl}/api/v1/training/start`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ baseModel: 'tiny', datasetPath: 'dataset.txt', outputDir: 'bench', hyperParams: { epochs: EPOCHS, learningRate: 3e-4, maxSeqLength: N_CTX } }),
    })
  ).json()) as { jobId: string };
  let status: { status: string; progress: { totalSteps: number } };
  for (;;) {
    status = (await (await fetch(`${httpUrl}/api/v1/training/status/${started.jobId}`)).json()) as typeof status;
    if (['completed', 'failed', 'cancelled'].includes(status.status)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const consoleWall = (performance.now() - t1) / 1000;
  const loss = (await (await fetch(`${httpUrl}/api/v1/training/${started.jobId}/loss`)).json()) as { points: unknown[]; validation: Array<{ valLoss: number }> };
  await consoleInstance.stop();
  if (status.status !== 'completed') throw new Error(`console job ended ${status.status}`);

  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;

  // (3) LoRA vs full fine-tuning on the same F32 base, and LoRA on its Q8_0 twin
  const base = await readBaseModel(modelPath);
  const lora = planLora(base.tensors, ['all-linear', 'output'], 8);
  if (!lora.ok) throw new Error('LoRA targets missing');
  const loraCfg = { method: 'lora', architecture: base.architecture, loraTargets: lora.targets, loraRank: 8, loraAlpha: 16 };
  const q8Path = join(dataDir, 'models', 'tiny-q8.gguf');
  writeTinyModel(q8Path, { seed: 1, shape: SHAPE, type: 'q8_0' });
  const full = await runTrainer('full', { method: 'full' });
  const loraF32 = await runTrainer('lora-f32', loraCfg);
  const loraQ8 = await runTrainer('lora-q8', { ...loraCfg, modelPath: q8Path });
  const summary = (r: typeof full, trainable: number) => ({
    tokensPerSecond: Math.round(mean(r.epochs.map((e) => e.tokensPerSecond))),
    secondsPerEpoch: round(mean(r.epochs.map((e) => e.seconds))),
    peakRssMb: r.peakRssMb,
    trainableParams: trainable,
    loss: r.epochs.map((e) => round(e.loss)),
  });
  const methods = {
    fullF32: summary(full, fullTrainableParams(base.tensors).params),
    loraF32: summary(loraF32, lora.trainableParams),
    loraQ8_0: summary(loraQ8, lora.trainableParams),
  };
  process.stdout.write(
    `${JSON.stringify({
      bench: 'training',
      model: SHAPE === 'tiny' ? 'tiny llama GGUF (2 layers, 64 dims, 120k F32 params)' : 'small random llama GGUF (8 layers, 512 dims, 32k vocab, ~60M F32 params)',
      variant: binary.variant,
      threads: THREADS,
      nCtx: N_CTX,
      epochs: EPOCHS,
      datasetTokens: tokens,
      stepsPerEpoch: status.progress.totalSteps / EPOCHS,
      direct: {
        secondsPerEpoch: round(mean(epochs.map((e) => e.seconds))),
        tokensPerSecond: Math.round(mean(epochs.map((e) => e.tokensPerSecond))),
        wallSeconds: round(directWall, 2),
        loss: epochs.map((e) => round(e.loss)),
        valLoss: epochs.map((e) => round(e.valLoss)),
      },
      console: {
        wallSeconds: round(consoleWall, 2),
        lossPoints: loss.points.length,
        valLoss: loss.validation.map((v) => round(v.valLoss)),
      },
      consoleOverheadRatio: round(consoleWall / directWall, 2),
      methods,
      loraVsFullTokensPerSecond: round(methods.loraF32.tokensPerSecond / methods.fullF32.tokensPerSecond, 2),
      loraVsFullPeakRss: round(methods.loraF32.peakRssMb / methods.fullF32.peakRssMb, 2),
      loraQ8VsFullPeakRss: round(methods.loraQ8_0.peakRssMb / methods.fullF32.peakRssMb, 2),
    })}\n`,
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
