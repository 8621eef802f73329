// `npm run bench -- dashboard`: the dashboard in Debian's Chromium against a real console started
// here. Measures time from navigation to first live data (cold and warm), the JS bundle (initial
// and total, gzip), and the renderer's CPU use and long tasks during steady 1 Hz updates on the
// chart-heaviest page; plus the cost of preparing 8 h of chart history per tick. One JSON line.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { createConsole } from '../../electron/core/console.js';
import { mergeWindows, RingSeries } from '../../renderer/src/lib/series.js';
import { ensureBuilt, root } from '../lib/buildIfStale.mjs';

const log = (msg: string) => process.stderr.write(`dashboard bench: ${msg}\n`);
const STEADY_SECONDS = Number(process.env.BENCH_STEADY_SECONDS ?? 20);
const NAV_RUNS = 5;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}
const r1 = (n: number) => Math.round(n * 10) / 10;

function bundleSizes(): { initialJsGzipKB: number; totalJsGzipKB: number; largestLazyChunkGzipKB: number } {
  const dist = join(root, 'dist/renderer');
  const html = readFileSync(join(dist, 'index.html'), 'utf8');
  const initial = new Set([...html.matchAll(/(?:src|href)="\.\/(assets\/[^"]+\.js)"/g)].map((m) => m[1] as string));
  let initialBytes = 0;
  let total = 0;
  let largestLazy = 0;
  for (const f of readdirSync(join(dist, 'assets'))) {
    if (!f.endsWith('.js')) continue;
    const gz = gzipSync(readFileSync(join(dist, 'assets', f)), { level: 9 }).length;
    total += gz;
    if (initial.has(`assets/${f}`)) initialBytes += gz;
    else largestLazy = Math.max(largestLazy, gz);
  }
  return { initialJsGzipKB: r1(initialBytes / 1024), totalJsGzipKB: r1(total / 1024), largestLazyChunkGzipKB: r1(largestLazy / 1024) };
}

/** Cost of turning 8 h of 1 Hz history (7 series) into chart rows, as the Overview does each tick. */
function chartPrep8h(): number {
  const names = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
  const series = Object.fromEntries(names.map((n) => [n, new RingSeries()]));
  for (let i = 0; i < 8 * 3600; i++) for (const n of names) series[n]!.push(i * 1000, Math.sin(i / 100));
  const times: number[] = [];
  for (let k = 0; k < 20; k++) {
    const t0 = performance.now();
    mergeWindows({ a: series.a!, b: series.b!, c: series.c!, d: series.d! }, 0);
    mergeWindows({ e: series.e!, f: series.f! }, 0);
    mergeWindows({ g: series.g! }, 0);
    times.push(performance.now() - t0);
  }
  return r1(median(times));
}

async function main(): Promise<void> {
  ensureBuilt();
  const bundle = bundleSizes();
  log(`bundle ${JSON.stringify(bundle)}`);
  const dataDir = mkdtempSync(join(tmpdir(), 'dash-bench-'));
  const core = createConsole({ env: {}, dataDir, overrides: { server: { httpPort: 0, grpcPort: 0 } }, logDestination: new Writable({ write: (_c, _e, cb) => cb() }) });
  const { httpUrl } = await core.start();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'],
  });
  try {
    // --- navigation → first live data (gauges rendered from the first snapshot) ---
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    await context.addInitScript(() => {
      const w = window as unknown as { __firstData?: number; __longTasks?: number[] };
      w.__longTasks = [];
      new MutationObserver((_m, obs) => {
        if (document.querySelector('[data-testid="overview-gauges"]')) {
          w.__firstData = performance.now();
          obs.disconnect();
        }
      }).observe(document, { childList: true, subtree: true });
      try {
        new PerformanceObserver((list) => {
          for (const e of list.getEntries()) w.__longTasks!.push(e.duration);
        }).observe({ type: 'longtask', buffered: true });
      } catch {
        // longtask not supported
      }
    });
    const firstData: number[] = [];
    for (let i = 0; i < NAV_RUNS; i++) {
      const page = await context.newPage();
      await page.goto(`${httpUrl}/`);
      await page.waitForFunction(() => (window as unknown as { __firstData?: number }).__firstData !== undefined, undefined, { timeout: 30_000 });
      firstData.push(await page.evaluate(() => (window as unknown as { __firstData: number }).__firstData));
      await page.close();
    }
    log(`first data ms ${firstData.map((x) => Math.round(x)).join(', ')}`);

    // --- steady 1 Hz updates on the Overview (two live charts + gauges) ---
    const page = await context.newPage();
    await page.goto(`${httpUrl}/`);
    await page.getByTestId('overview-gauges').waitFor();
    await page.waitForTimeout(2000);
    const cdp = await context.newCDPSession(page);
    await cdp.send('Performance.enable');
    const metric = async () => {
      const { metrics } = (await cdp.send('Performance.getMetrics')) as { metrics: Array<{ name: string; value: number }> };
      const get = (n: string) => metrics.find((m) => m.name === n)?.value ?? 0;
      return { task: get('TaskDuration'), script: get('ScriptDuration'), layout: get('LayoutDuration') + get('RecalcStyleDuration'), heap: get('JSHeapUsedSize') };
    };
    await page.evaluate(() => ((window as unknown as { __longTasks: number[] }).__longTasks.length = 0));
    const before = await metric();
    const tick0 = await page.evaluate(() => document.querySelector('[data-testid="rps"]')?.textContent);
    const t0 = performance.now();
    await page.waitForTimeout(STEADY_SECONDS * 1000);
    const wall = (performance.now() - t0) / 1000;
    const after = await metric();
    const longTasks = await page.evaluate(() => (window as unknown as { __longTasks: number[] }).__longTasks);
    log(`steady: task ${(after.task - before.task).toFixed(3)} s over ${wall.toFixed(1)} s; long tasks ${longTasks.length}; first value ${tick0}`);

    const result = {
      bench: 'dashboard',
      machine: '2-core dev VM, no GPU, under load from parallel work; headless Chromium (software rendering)',
      firstLiveDataMs: { cold: Math.round(firstData[0] ?? NaN), warmMedian: Math.round(median(firstData.slice(1))) },
      ...bundle,
      initialToTotalRatio: Math.round((bundle.initialJsGzipKB / bundle.totalJsGzipKB) * 100) / 100,
      steadyUpdates: {
        seconds: Math.round(wall),
        rendererCpuPercent: r1(((after.task - before.task) / wall) * 100),
        scriptCpuPercent: r1(((after.script - before.script) / wall) * 100),
        styleLayoutCpuPercent: r1(((after.layout - before.layout) / wall) * 100),
        longTasks: longTasks.length,
        longestTaskMs: Math.round(Math.max(0, ...longTasks)),
        jsHeapMB: r1(after.heap / 1024 / 1024),
      },
      chartPrep8hMsPerTick: chartPrep8h(),
      goals: {
        firstDataUnder1s: (firstData[0] ?? Infinity) <= 1000,
        initialJsUnder300KB: bundle.initialJsGzipKB <= 300,
        noLongTaskOver50ms: longTasks.every((d) => d <= 50),
      },
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await browser.close();
    await core.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
