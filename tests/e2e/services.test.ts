import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpstreamSim, type UpstreamSim } from '../../scripts/upstream-sim.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { axeViolations, ensureDashboardBuilt, launchChromium, SCREENSHOTS, signedInPage } from './support.js';

describe('Limiter and GPU pages against the real services', () => {
  let sim: UpstreamSim;
  let c: TestConsole;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    await ensureDashboardBuilt();
    // Capacity 600 RPM per 1 s window = 10 requests/s; the limiter starts at 2400 RPM with 40 tokens, so a burst gets 429s even on a slow machine.
    sim = await startUpstreamSim({ capacity: 600, windowMs: 1000, retryAfter: 'fractional' });
    c = await startConsole({
      config: { limiter: { upstream_url: sim.baseUrl, rate_rpm: 2400, bucket_capacity: 40, retreat_window_seconds: 2, recover_window_seconds: 600, request_timeout: 30 } },
    });
    browser = await launchChromium();
    page = await signedInPage(browser, c);
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    await c?.close();
    await sim?.close();
  });

  it('the limiter page shows a retreat when the upstream throttles', async () => {
    await page.goto(`${c.url}/limiter`);
    const state = page.getByTestId('retreat-state');
    await state.getByText('NORMAL').waitFor({ timeout: 20_000 });
    await Promise.all(
      Array.from({ length: 80 }, async () => {
        const res = await fetch(`${c.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'nvidia/meta/x', messages: [] }) });
        await res.arrayBuffer();
      }),
    );
    await state.getByText('RETREAT').waitFor({ timeout: 20_000 });
    const timeline = page.getByTestId('retreat-timeline');
    await timeline.getByText('RETREAT').first().waitFor({ timeout: 10_000 });
    expect(Number((await page.getByTestId('effective-rpm').innerText()).replace(/[^\d.]/g, ''))).toBeLessThan(2400);
    // the recent requests come from the limiter's request log (admin)
    await page.getByRole('cell', { name: /^(200|429)$/ }).first().waitFor({ timeout: 20_000 });
    await page.screenshot({ path: join(SCREENSHOTS, 'limiter-retreat.png'), fullPage: true });
    expect(await axeViolations(page)).toEqual([]);
  });

  it('a GPU lock appears with its holder and its TTL counts down; force-release needs a confirmation', async () => {
    const acquire = await fetch(`${c.url}/api/v1/monitoring/gpu-lock/acquire`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ lock_key: 'gpu_lock:0', task_name: 'e2e.finetune', ttl_seconds: 300, task_id: 'e2e-task' }),
    });
    expect(acquire.status).toBe(200);
    await fetch(`${c.url}/api/v1/monitoring/heartbeat/task/e2e-task/start`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ task_name: 'e2e.finetune', gpu_lock: 'gpu_lock:0' }) });
    await page.goto(`${c.url}/gpu`);
    await page.getByTestId('lock-holder').getByText('e2e.finetune').waitFor({ timeout: 20_000 });
    const ttl = page.getByTestId('lock-ttl');
    const seconds = async () => Number((await ttl.innerText()).replace(/\D/g, ''));
    const first = await seconds();
    expect(first).toBeGreaterThan(280);
    expect(first).toBeLessThanOrEqual(300);
    await page.waitForFunction((start) => Number(document.querySelector('[data-testid="lock-ttl"]')?.textContent?.replace(/\D/g, '')) <= start - 2, first, { timeout: 20_000 });
    await page.getByRole('cell', { name: 'e2e-task' }).waitFor();
    await page.screenshot({ path: join(SCREENSHOTS, 'gpu-lock.png'), fullPage: true });
    expect(await axeViolations(page)).toEqual([]);

    await page.getByRole('button', { name: 'Force release…' }).click();
    await page.getByRole('button', { name: 'Cancel' }).click(); // changed their mind: still locked
    expect(await page.getByTestId('lock-holder').isVisible()).toBe(true);
    await page.getByRole('button', { name: 'Force release…' }).click();
    await page.getByRole('button', { name: 'Yes, release it' }).click();
    await page.getByText('FREE').waitFor({ timeout: 20_000 });
    const status = (await (await fetch(`${c.url}/api/v1/monitoring/gpu-lock/status`)).json()) as { is_locked: boolean };
    expect(status.is_locked).toBe(false);
  });
});
