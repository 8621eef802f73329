import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { installTinyModel } from '../helpers/tinyModel.js';
import { writeTinyModel } from '../../electron/core/services/engine/tinyGguf.js';
import { TEST_TRAINER_DIR, writeCatDataset } from '../helpers/training.js';
import { axeViolations, ensureDashboardBuilt, launchChromium, SCREENSHOTS, signedInPage } from './support.js';

describe('Training page with the native trainer on the tiny model', () => {
  let c: TestConsole;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    await ensureDashboardBuilt();
    const dataDir = mkdtempSync(join(tmpdir(), 'train-e2e-'));
    installTinyModel(dataDir, 'tiny');
    writeTinyModel(join(dataDir, 'models', 'tiny-q8.gguf'), { type: 'q8_0' });
    writeCatDataset(dataDir);
    c = await startConsole({ dataDir, config: { engine: { gpu: 'false', threads: 1, detectOnStart: false }, training: { trainerDir: TEST_TRAINER_DIR, threads: 1, gpu: 'cpu' } } });
    browser = await launchChromium();
    page = await signedInPage(browser, c);
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    await c?.close();
  });

  it('shows validation messages and starts nothing for an incomplete form', async () => {
    await page.goto(`${c.url}/training`);
    await page.getByRole('button', { name: 'Start training' }).click();
    await page.getByText('Base model is required').waitFor();
    await page.getByLabel('Epochs').fill('1.5');
    await page.getByRole('button', { name: 'Start training' }).click();
    await page.getByText('Epochs: expected integer, got 1.5').waitFor();
    const list = (await (await fetch(`${c.url}/api/v1/training/list`)).json()) as { total: number };
    expect(list.total).toBe(0);
  });

  it('uploads datasets (a broken one shows its bad lines), picks one and previews it', async () => {
    await page.getByLabel('Dataset file').setInputFiles({ name: 'broken.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from('{"text": "ok"}\n{"text": \n{"foo": 1}\n') });
    const errors = page.getByLabel('Upload errors');
    await errors.waitFor();
    expect(await errors.textContent()).toMatch(/line 2: malformed JSON[\s\S]*line 3: no known row shape/);
    const chat = [{ messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }] }, { prompt: 'Q: ', completion: 'A' }];
    await page.getByLabel('Dataset file').setInputFiles({ name: 'chat.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(chat.map((r) => JSON.stringify(r)).join('\n')) });
    await page.getByTestId('dataset-preview').waitFor();
    expect(await page.getByLabel('Dataset path').inputValue()).toBe('datasets/chat.jsonl');
    expect(await page.getByTestId('dataset-preview').textContent()).toMatch(/2 rows · 1 chat, 1 prompt\/completion[\s\S]*user: Hi\nassistant: Hello/);
    await page.getByLabel('Uploaded dataset').selectOption('cat.txt');
    await page.getByText('cat.txt: 1 row · 1 text').waitFor();
    expect(await page.getByLabel('Dataset path').inputValue()).toBe('datasets/cat.txt');
    await page.screenshot({ path: join(SCREENSHOTS, 'training-datasets.png'), fullPage: true });
  });

  it('draws the live loss chart, then opens the trained model in Chat', { timeout: 240_000 }, async () => {
    await page.getByLabel('Base model').fill('tiny');
    await page.getByLabel('Dataset path').fill('datasets/cat.txt');
    await page.getByLabel('Output directory').fill('e2e-run');
    await page.getByLabel('Epochs').fill('2');
    await page.getByLabel('Learning rate').fill('0.001');
    await page.getByLabel('Max sequence length (optional)').fill('128');
    await page.getByRole('button', { name: 'Start training' }).click();
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="loss-chart"]')?.getAttribute('data-points')) >= 3, undefined, { timeout: 180_000 });
    expect(await page.locator('[data-testid="loss-chart"] path.recharts-curve').count()).toBeGreaterThan(0);
    await page.screenshot({ path: join(SCREENSHOTS, 'training-loss.png'), fullPage: true });
    expect(await axeViolations(page)).toEqual([]);
    const open = page.getByRole('button', { name: 'Open result in Chat' });
    await open.waitFor({ timeout: 180_000 });
    await open.click();
    await page.getByRole('heading', { level: 2, name: 'Chat' }).waitFor();
    expect(new URL(page.url()).pathname).toBe('/chat');
  });

  it('fine-tunes a LoRA adapter on a quantized base and chats with <base>+<adapter>', { timeout: 240_000 }, async () => {
    await page.getByRole('link', { name: 'Training' }).click().catch(() => undefined);
    await page.getByLabel('Base model').fill('tiny-q8');
    await page.getByLabel('Dataset path').fill('datasets/cat.txt');
    await page.getByLabel('Output directory').fill('e2e-lora');
    await page.getByLabel('Epochs').fill('1');
    await page.getByLabel('Learning rate').fill('0.003');
    await page.getByLabel('Max sequence length (optional)').fill('256');
    await page.getByLabel('Method').selectOption('lora');
    await page.getByLabel('LoRA rank (optional)').fill('8');
    for (const m of ['q_proj', 'v_proj', 'output']) await page.getByRole('checkbox', { name: m }).check();
    await page.getByRole('button', { name: 'Start training' }).click();
    // The new job is selected once started; its line names the method and, when done, the served model.
    const method = page.getByTestId('job-method').filter({ hasText: 'served as tiny-q8+e2e-lora' });
    await method.waitFor({ timeout: 180_000 });
    expect(await method.textContent()).toMatch(/LoRA adapter · [\d,]+ trainable parameters · served as tiny-q8\+e2e-lora/);
    const open = page.getByRole('button', { name: 'Open result in Chat' });
    await page.screenshot({ path: join(SCREENSHOTS, 'training-lora.png'), fullPage: true });
    await open.click();
    await page.getByRole('heading', { level: 2, name: 'Chat' }).waitFor();
    expect(new URL(page.url()).pathname).toBe('/chat');
  });
});
