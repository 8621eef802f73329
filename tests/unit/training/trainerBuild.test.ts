import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TrainerBuildError, ensureTrainer, locateLlamaLibs } from '../../../electron/core/services/training/trainerBuild.js';
import { TEST_TRAINER_DIR } from '../../helpers/training.js';

describe('native trainer build', () => {
  it('finds the prebuilt CPU libs of node-llama-cpp', () => {
    const libs = locateLlamaLibs('cpu');
    expect(libs.variant).toBe('cpu');
    expect(libs.tag).toMatch(/^v\d/);
    expect(existsSync(`${libs.binsDir}/${libs.libllama}`)).toBe(true);
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
