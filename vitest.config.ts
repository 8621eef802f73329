import { defineConfig } from 'vitest/config';

/**
 * Tests that load the tiny GGUF model or run the trainer (they need the `.tmp/` artefacts of
 * tests/helpers/tinyModel.ts and training.ts, and most of the CPU). Listed by name: a new test that
 * loads the model or trains belongs here.
 */
const MODEL = [
  'tests/unit/engine/engineService.test.ts',
  'tests/unit/training/datasets.test.ts',
  'tests/unit/training/trainerBuild.test.ts',
  'tests/integration/engine.test.ts',
  'tests/integration/engineLoad.test.ts',
  'tests/integration/monitoringCrash.test.ts',
  'tests/integration/training.test.ts',
  'tests/integration/trainingDatasets.test.ts',
  'tests/integration/trainingGrpc.test.ts',
  'tests/integration/trainingLora.test.ts',
];

/**
 * Four projects split by cost: `unit` (no server), `integration` (a real console on port 0, real
 * SQLite/Redis/gRPC), `model` (the tiny model or the trainer), `e2e` (Playwright with chromium).
 * `npm test` (= `vitest run`) runs them all; `npm run test:unit` etc. run one
 * (`vitest run --project unit`).
 */
export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
    reporters: ['default'],
    projects: [
      { extends: true, test: { name: 'unit', include: ['tests/unit/**/*.test.ts'], exclude: MODEL } },
      { extends: true, test: { name: 'integration', include: ['tests/integration/**/*.test.ts'], exclude: MODEL } },
      { extends: true, test: { name: 'model', include: MODEL } },
      { extends: true, test: { name: 'e2e', include: ['tests/e2e/**/*.test.ts'] } },
    ],
  },
});
