import { spawnSync } from 'node:child_process';
import { mkdirSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { AxeBuilder } from '@axe-core/playwright';
import { chromium, type Browser, type Page } from 'playwright-core';
import { dashboardStale, root } from '../../scripts/lib/buildIfStale.mjs';

export const SCREENSHOTS = join(root, 'tests/e2e/screenshots');

/**
 * Builds the dashboard (vite) when dist/renderer is missing or older than its sources, so
 * `npm test` alone suffices on a fresh clone. A lock directory keeps parallel e2e files from
 * building at the same time.
 */
export async function ensureDashboardBuilt(): Promise<void> {
  const lock = join(root, 'dist', '.renderer-build.lock');
  mkdirSync(join(root, 'dist'), { recursive: true });
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // another file is building; a lock older than 5 minutes is stale
      try {
        if (Date.now() - statSync(lock).mtimeMs > 300_000) rmdirSync(lock);
      } catch {
        // gone already
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    // vitest sets NODE_ENV=test, which would make vite bundle React's development build.
    if (!dashboardStale()) return;
    const r = spawnSync(process.execPath, [join(root, 'node_modules/vite/bin/vite.js'), 'build', '--logLevel', 'error'], { cwd: root, stdio: 'pipe', encoding: 'utf8', env: { ...process.env, NODE_ENV: 'production' } });
    if (r.status !== 0) throw new Error(`vite build failed:\n${r.stdout}\n${r.stderr}`);
  } finally {
    rmdirSync(lock);
  }
}

/** Debian's Chromium, headless (never `playwright install`). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'],
  });
}

/** Serious and critical axe-core findings (WCAG 2 A/AA rules) on the current page. */
export async function axeViolations(page: Page): Promise<string[]> {
  const result = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa']).analyze();
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
}

/** Collects page errors and failed console messages other than expected 404s of absent services. */
export function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  return errors;
}

/** A 1280×900 page signed in as admin through the console's one-time login link. */
export async function signedInPage(browser: Browser, c: { url: string; console: { loginUrl(): string | null } }): Promise<Page> {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await page.goto(c.console.loginUrl() ?? c.url);
  await page.getByText('Admin signed in').waitFor({ timeout: 20_000 });
  return page;
}
