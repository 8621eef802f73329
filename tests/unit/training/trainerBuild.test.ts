import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TrainerBuildError, defaultTrainerSource, ensureTrainer, locateLlamaLibs } from '../../../electron/core/services/training/trainerBuild.js';
import { tinyModelPath } from '../../helpers/tinyModel.js';
import { TEST_TRAINER_DIR } from '../../helpers/training.js';

describe('native trainer build', () => {
  it('finds the prebuilt CPU libs of node-llama-cpp', () => {
    const libs = locateLlamaLibs('cpu');
    expect(libs.variant).toBe('cpu');
    expect(libs.tag).toMatch(/^v\d/);
    expect(existsSync(`${libs.binsDir}/${libs.libllama}`)).toBe(true);
    expect(existsSync(defaultTrainerSource())).toBe(true);
  });

  it('builds once and then reuses the binary (same inputs, same path)', async () => {
    const first = await ensureTrainer({ cacheDir: TEST_TRAINER_DIR, gpu: 'cpu' });
    const second = await ensureTrainer({ cacheDir: TEST_TRAINER_DIR, gpu: 'cpu' });
    expect(second).toEqual({ ...first, built: false });
    expect(existsSync(first.path)).toBe(true);
    expect(first.path).toMatch(/trainer-cpu-[0-9a-f]{12}$/);
  }, 120_000);

  it('says clearly that a C++ compiler is needed when there is none', async () => {
    const err = await ensureTrainer({ cacheDir: TEST_TRAINER_DIR, gpu: 'cpu', compiler: '/nonexistent/g++' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrainerBuildError);
    expect((err as Error).message).toMatch(/needs a C\+\+17 compiler.*"\/nonexistent\/g\+\+" was not found.*apt-get install g\+\+/);
  }, 120_000);
});

describe('native trainer binary', () => {
  const run = (binary: string, config: string, onLine?: (line: Record<string, unknown>, kill: () => void) => void) =>
    new Promise<{ code: number | null; lines: Array<Record<string, unknown>> }>((resolvePromise) => {
      const child = spawn(binary, [config], { stdio: ['ignore', 'pipe', 'ignore'] });
      const lines: Array<Record<string, unknown>> = [];
      let buffer = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        buffer += chunk;
        let i: number;
        while ((i = buffer.indexOf('\n')) >= 0) {
          const line = JSON.parse(buffer.slice(0, i)) as Record<string, unknown>;
          buffer = buffer.slice(i + 1);
          lines.push(line);
          onLine?.(line, () => child.kill('SIGTERM'));
        }
      });
      child.once('close', (code) => resolvePromise({ code, lines }));
    });

  it('trains from a JSONL dataset, and stops cleanly on SIGTERM', async () => {
    const binary = await ensureTrainer({ cacheDir: TEST_TRAINER_DIR, gpu: 'cpu' });
    const dir = mkdtempSync(join(tmpdir(), 'trainer-bin-'));
    try {
      const rows = Array.from({ length: 130 }, (_, i) => JSON.stringify({ text: `the cat sat on the mat. \u00e9 "quoted" ${i % 2 ? '\\n' : ''}`, id: i, tags: ['a', { b: null }] }));
      writeFileSync(join(dir, 'data.jsonl'), `${rows.join('\n')}\n\n`);
      const base = { backendDir: binary.backendDir, modelPath: tinyModelPath(), datasetPath: join(dir, 'data.jsonl'), learningRate: 1e-3, nCtx: 128, threads: 1 };
      writeFileSync(join(dir, 'ok.json'), JSON.stringify({ ...base, outputPath: join(dir, 'out.gguf'), epochs: 1 }));
      const ok = await run(binary.path, join(dir, 'ok.json'));
      expect(ok.code).toBe(0);
      expect(ok.lines[0]).toMatchObject({ type: 'start', nCtx: 256 });
      expect(ok.lines.at(-1)).toEqual({ type: 'done', output: join(dir, 'out.gguf'), seconds: expect.any(Number), steps: expect.any(Number) });
      expect(existsSync(join(dir, 'out.gguf'))).toBe(true);

      writeFileSync(join(dir, 'long.json'), JSON.stringify({ ...base, outputPath: join(dir, 'long.gguf'), epochs: 1000 }));
      const stopped = await run(binary.path, join(dir, 'long.json'), (line, kill) => {
        if (line.type === 'progress' && line.step === 2) kill();
      });
      expect(stopped.code).toBe(143);
      expect(stopped.lines.at(-1)).toEqual({ type: 'cancelled' });
      expect(existsSync(join(dir, 'long.gguf'))).toBe(false);

      writeFileSync(join(dir, 'bad.jsonl'), '{"text": 1}\n');
      writeFileSync(join(dir, 'bad.json'), JSON.stringify({ ...base, datasetPath: join(dir, 'bad.jsonl'), outputPath: join(dir, 'bad.gguf') }));
      const bad = await run(binary.path, join(dir, 'bad.json'));
      expect(bad.code).toBe(1);
      expect(bad.lines.at(-1)).toEqual({ type: 'error', message: 'dataset line 1 has no "text" string' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
