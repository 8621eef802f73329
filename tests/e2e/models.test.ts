import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeHf } from '../helpers/fakeHf.js';
import { tinyGguf } from '../helpers/gguf.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { axeViolations, ensureDashboardBuilt, launchChromium, SCREENSHOTS, signedInPage } from './support.js';

describe('Models page: downloads from a local HTTP server', () => {
  let hf: FakeHf;
  let c: TestConsole;
  let browser: Browser;
  let page: Page;
  const big = tinyGguf({ elements: 256 * 1024, seed: 3 });

  beforeAll(async () => {
    await ensureDashboardBuilt();
    hf = new FakeHf();
    await hf.start();
    // One file stalls half way (progress stays visible), one downloads normally.
    hf.addRepo('acme/tiny', [
      { path: 'tiny-Q4_K_M.gguf', bytes: big, mode: 'stall', dropAt: Math.floor(big.length / 2) },
      { path: 'tiny-Q8_0.gguf', bytes: tinyGguf({ seed: 4 }) },
    ]);
    c = await startConsole({ config: { engine: { library: { hfEndpoint: hf.url } } } });
    browser = await launchChromium();
    page = await signedInPage(browser, c);
  }, 240_000);

  afterAll(async () => {
    hf?.release();
    await browser?.close();
    await c?.close();
    await hf?.close();
  });

  it('says how to get a model when there is none, and lists the catalog', async () => {
    await page.goto(`${c.url}/models`);
    await page.getByText('No model yet: how to get one').waitFor({ timeout: 20_000 });
    expect(await page.getByRole('heading', { name: 'Catalog' }).isVisible()).toBe(true);
  });

  it('refuses a URI that is not a model URI before sending it', async () => {
    await page.getByLabel('Model URI').fill('file:///etc/passwd');
    await page.getByRole('button', { name: 'Download', exact: true }).click();
    await page.getByText(/Not a model URI/).waitFor();
  });

  it('shows a download with progress, speed and ETA, and cancels it', async () => {
    await page.getByLabel('Model URI').fill('hf:acme/tiny:Q4_K_M');
    await page.getByRole('button', { name: 'Download', exact: true }).click();
    const bytes = page.getByTestId('download-bytes').first();
    await page.waitForFunction(() => /\((4\d|5\d)%\)/.test(document.querySelector('[data-testid="download-bytes"]')?.textContent ?? ''), undefined, { timeout: 30_000 });
    expect(await bytes.innerText()).toMatch(/\/ 1\.0 MB/);
    const value = await page.locator('progress').first().getAttribute('value');
    expect(Number(value)).toBeGreaterThanOrEqual(40);
    await page.screenshot({ path: join(SCREENSHOTS, 'models-download.png'), fullPage: true });
    expect(await axeViolations(page)).toEqual([]);
    await page.getByRole('button', { name: 'Cancel tiny-Q4_K_M' }).click();
    await page.getByTestId('downloads').getByText('cancelled').waitFor({ timeout: 20_000 });
  });

  it('lists a finished download as a local model', async () => {
    await page.getByLabel('Model URI').fill('hf:acme/tiny:Q8_0');
    await page.getByRole('button', { name: 'Download', exact: true }).click();
    await page.getByRole('heading', { name: 'Local models' }).waitFor({ timeout: 30_000 });
    await page.getByRole('cell', { name: 'tiny-Q8_0' }).first().waitFor({ timeout: 30_000 });
  });
});
