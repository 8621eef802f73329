import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConsole, type Console } from '../../electron/core/console.js';
import { DASHBOARD_PAGES } from '../../shared/contracts/console.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { axeViolations, ensureDashboardBuilt, launchChromium, SCREENSHOTS, watchErrors } from './support.js';

describe('dashboard in Chromium against a real console', () => {
  let c: TestConsole;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let errors: string[];

  beforeAll(async () => {
    await ensureDashboardBuilt();
    // One field pinned by an environment variable, for the Config page's read-only display.
    c = await startConsole({ env: { CONSOLE_ALLOWED_ORIGINS: 'http://dashboard.example' } });
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: 'light' });
    page = await context.newPage();
    errors = watchErrors(page);
    // The one-time link printed at start signs the browser in.
    await page.goto(c.console.loginUrl() ?? c.url);
    await page.getByText('Admin signed in').waitFor({ timeout: 20_000 });
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    await c?.close();
  });

  it('signs in from the one-time link, which then stops working', async () => {
    expect(new URL(page.url()).hash).toBe('');
    expect(c.console.loginUrl()).toBeNull();
    expect(await page.evaluate(() => localStorage.getItem('console.adminToken'))).toBe(c.adminToken);
  });

  for (const p of DASHBOARD_PAGES) {
    it(`opens ${p.title}: screenshot and an axe-core check`, async () => {
      await page.goto(`${c.url}${p.path}`);
      await page.getByRole('heading', { level: 2, name: p.title }).waitFor({ timeout: 20_000 });
      await page.getByTestId('connection-status').getByText('connected').waitFor({ timeout: 20_000 });
      await page.waitForFunction(() => !document.body.innerText.includes('Loading…'), undefined, { timeout: 20_000 });
      if (p.id === 'overview') {
        // a few ticks of history, so the charts show lines
        await page.waitForFunction(() => Array.from(document.querySelectorAll('svg polyline')).some((l) => (l.getAttribute('points') ?? '').split(' ').length >= 4), undefined, { timeout: 30_000 });
      }
      await page.screenshot({ path: join(SCREENSHOTS, `${p.id}.png`), fullPage: true });
      expect(await axeViolations(page)).toEqual([]);
    });
  }

  it('reaches every page from the keyboard', async () => {
    await page.goto(`${c.url}/`);
    await page.getByRole('heading', { level: 2, name: 'Overview' }).waitFor();
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Skip to content');
    for (let i = 0; i < 10; i++) {
      await page.keyboard.press('Tab');
      if ((await page.evaluate(() => document.activeElement?.textContent)) === 'Logs') break;
    }
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { level: 2, name: 'Logs' }).waitFor();
    expect(new URL(page.url()).pathname).toBe('/logs');
  });

  it('follows the OS dark theme', async () => {
    const dark = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: 'dark' });
    try {
      const p = await dark.newPage();
      await p.goto(`${c.url}/`);
      await p.getByTestId('overview-gauges').waitFor({ timeout: 20_000 });
      expect(await p.evaluate(() => getComputedStyle(document.body).backgroundColor)).toBe('rgb(15, 17, 21)');
      expect(await page.evaluate(() => getComputedStyle(document.body).backgroundColor)).toBe('rgb(246, 247, 249)');
      await p.screenshot({ path: join(SCREENSHOTS, 'overview-dark.png') });
      expect(await axeViolations(p)).toEqual([]);
    } finally {
      await dark.close();
    }
  });

  it('shows live log records, filtered by module and level', async () => {
    await page.goto(`${c.url}/logs`);
    const records = page.getByTestId('log-records');
    await records.getByText('console ready').waitFor({ timeout: 20_000 });
    await page.getByLabel('Module').selectOption('console');
    await page.getByLabel('Lowest level').selectOption('warn');
    c.console.logs.get('console').warn('e2e warning line');
    c.console.logs.get('console').info('e2e info line');
    await records.getByText('e2e warning line').waitFor({ timeout: 20_000 });
    expect(await records.innerText()).not.toContain('e2e info line');
  });

  it('Config: each field explains itself (description, default, env var); pinned fields are read-only; lists edit as rows; an invalid change saves nothing', async () => {
    const configFile = join(c.dataDir, 'config.json');
    const before = existsSync(configFile) ? readFileSync(configFile, 'utf8') : null;
    await page.goto(`${c.url}/config`);
    const field = page.locator('[data-path="server.bodyLimitBytes"]');
    await field.waitFor({ timeout: 20_000 });
    // description, default and env var / flag come from the served schema
    const help = (path: string) => page.getByTestId(`help-${path}`).innerText();
    expect(await help('server.bodyLimitBytes')).toMatch(/Largest accepted request body in bytes.*Default 8388608/s);
    expect(await help('server.httpPort')).toMatch(/Set by env CONSOLE_HTTP_PORT, flag --port/);
    // pinned by env: read-only, naming the variable
    expect(await help('server.allowedOrigins')).toMatch(/Pinned by env CONSOLE_ALLOWED_ORIGINS: read-only/);
    const pinnedRow = page.getByLabel('allowedOrigins item 1', { exact: true });
    expect(await pinnedRow.inputValue()).toBe('http://dashboard.example');
    expect(await pinnedRow.getAttribute('readonly')).not.toBeNull();
    expect(await page.getByRole('button', { name: 'Add allowedOrigins item' }).isDisabled()).toBe(true);
    // a list of scalars: rows, not JSON text
    await page.getByRole('button', { name: 'Add allowedHosts item' }).click();
    await page.getByLabel('allowedHosts item 1', { exact: true }).fill('gpu-box.lan');
    await page.getByRole('button', { name: 'Add allowedHosts item' }).click();
    await page.getByLabel('allowedHosts item 2', { exact: true }).fill('spare.lan');
    await page.getByRole('button', { name: 'Remove allowedHosts item 2' }).click();
    expect(await page.getByLabel('allowedHosts item 2', { exact: true }).count()).toBe(0);
    await field.fill('12');
    await page.getByRole('button', { name: /Review 2 changes/ }).click();
    await page.getByTestId('config-diff').getByText('server.bodyLimitBytes').waitFor();
    await page.getByTestId('config-diff').getByText('server.allowedHosts').waitFor();
    await page.getByRole('button', { name: 'Apply' }).click();
    const err = page.getByTestId('error-server.bodyLimitBytes');
    await err.waitFor({ timeout: 10_000 });
    expect(await err.innerText()).toMatch(/1024/);
    expect(await field.getAttribute('aria-invalid')).toBe('true');
    // nothing saved: neither the bad field nor the good one
    expect(c.console.config.get().server.bodyLimitBytes).toBe(8 * 1024 * 1024);
    expect(c.console.config.get().server.allowedHosts).toEqual([]);
    expect(existsSync(configFile) ? readFileSync(configFile, 'utf8') : null).toBe(before);
    await field.scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(SCREENSHOTS, 'config-error.png') });

    await field.fill('9000000');
    await page.getByRole('button', { name: /Review 2 changes/ }).click();
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.getByTestId('config-message').waitFor({ timeout: 10_000 });
    expect(c.console.config.get().server.bodyLimitBytes).toBe(9_000_000);
    expect(c.console.config.get().server.allowedHosts).toEqual(['gpu-box.lan']);
    expect(JSON.parse(readFileSync(configFile, 'utf8'))).toMatchObject({ server: { bodyLimitBytes: 9_000_000, allowedHosts: ['gpu-box.lan'] } });
    // the pinned field stays the env's, and the file did not get it
    expect(c.console.config.get().server.allowedOrigins).toEqual(['http://dashboard.example']);
    expect(JSON.parse(readFileSync(configFile, 'utf8')).server.allowedOrigins).toBeUndefined();
  });

  it('shows clear empty states for services absent from this build', async () => {
    // training is a separate service; where this build lacks it, the page says so instead of failing
    await page.goto(`${c.url}/training`);
    const missing = page.getByText(/not available in this build/);
    const present = page.getByRole('heading', { name: 'New fine-tuning job' });
    await missing.or(present).first().waitFor({ timeout: 20_000 });
    const trainingRoute = await fetch(`${c.url}/api/v1/training/list`);
    expect(await missing.isVisible()).toBe(trainingRoute.status === 404);
  });

  it('has had no page errors', () => {
    expect(errors).toEqual([]);
  });
});

describe('dashboard reconnects after the core restarts', () => {
  let browser: Browser;
  let second: Console | null = null;
  let tc: TestConsole;

  beforeAll(async () => {
    await ensureDashboardBuilt();
    browser = await launchChromium();
  }, 240_000);
  afterAll(async () => {
    await browser?.close();
    await second?.stop();
    await tc?.close();
  });

  it('shows the disconnected banner while the core is down and recovers by itself', async () => {
    tc = await startConsole({ keepDataDir: true });
    const port = tc.addresses.httpPort;
    const page = await browser.newPage();
    await page.goto(`${tc.url}/`);
    await page.getByTestId('overview-gauges').waitFor({ timeout: 20_000 });
    await tc.console.stop();
    const banner = page.getByTestId('disconnected-banner');
    await banner.waitFor({ timeout: 20_000 });
    expect(await banner.innerText()).toMatch(/Disconnected/);
    // A new core on the same port and data dir (a restart).
    second = createConsole({ env: {}, dataDir: tc.dataDir, overrides: { server: { httpPort: port, grpcPort: 0 } }, logDestination: { write: () => true } as unknown as NodeJS.WritableStream });
    await second.start();
    await banner.waitFor({ state: 'detached', timeout: 30_000 });
    await page.getByTestId('connection-status').getByText('connected').waitFor();
    await page.close();
  });
});
