import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { installTinyModel } from '../helpers/tinyModel.js';
import { axeViolations, ensureDashboardBuilt, launchChromium, SCREENSHOTS, signedInPage } from './support.js';

describe('Chat page streams from the tiny local model', () => {
  let c: TestConsole;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    await ensureDashboardBuilt();
    const dataDir = mkdtempSync(join(tmpdir(), 'chat-e2e-'));
    installTinyModel(dataDir, 'tiny');
    c = await startConsole({ dataDir, config: { engine: { gpu: 'false', threads: 1, detectOnStart: false, contextSize: 4096 } } });
    browser = await launchChromium();
    page = await signedInPage(browser, c);
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    await c?.close();
  });

  it('streams a reply with TTFT and tokens/s', async () => {
    await page.goto(`${c.url}/chat`);
    const model = page.getByLabel('Model');
    await page.waitForFunction(() => Array.from(document.querySelectorAll('select option')).some((o) => o.textContent === 'tiny'), undefined, { timeout: 30_000 });
    await model.selectOption('tiny');
    await page.getByLabel('Max tokens').fill('24');
    await page.getByLabel('Message').fill('Hello there');
    await page.getByRole('button', { name: 'Send' }).click();
    const reply = page.getByTestId('msg-assistant');
    await page.getByTestId('chat-stats').getByText(/TTFT \d+ ms/).waitFor({ timeout: 60_000 });
    expect((await reply.innerText()).replace('assistant:', '').trim().length).toBeGreaterThan(0);
    expect(await page.getByTestId('chat-stats').innerText()).toMatch(/tokens\/s · \d+ tokens/);
    await page.screenshot({ path: join(SCREENSHOTS, 'chat-reply.png'), fullPage: true });
    expect(await axeViolations(page)).toEqual([]);
  });
});
