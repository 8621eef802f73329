// `npm run bench -- models`: model download throughput from a local HTTP server (loopback, so the
// network is not the limit): a bare undici GET streamed to a file vs the console's downloader
// (POST /api/v1/library/downloads → completed: Range-capable transfer, progress events, then
// size + sha256 + GGUF checks and the atomic publish), measured side by side in one run.
// Prints one JSON line.
import { createHash } from 'node:crypto';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Agent, request } from 'undici';
import { createConsole } from '../../electron/core/console.js';
import type { DownloadView } from '../../shared/contracts/models.js';
import { tinyGguf } from '../../tests/helpers/gguf.js';

const log = (msg: string) => process.stderr.write(`models bench: ${msg}\n`);
const MIB = 1024 * 1024;
const ELEMENTS = 32 * 1024 * 1024; // F32: 128 MiB of tensor data
const ROUNDS = 5;

const bytes = tinyGguf({ elements: ELEMENTS, seed: 42 });
const sha256 = createHash('sha256').update(bytes).digest('hex');
const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  if (url.pathname === '/api/models/bench/model-GGUF/tree/main') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return void res.end(JSON.stringify([{ type: 'file', path: 'model-Q4_K_M.gguf', size: bytes.length, lfs: { oid: sha256, size: bytes.length } }]));
  }
  if (url.pathname === '/bench/model-GGUF/resolve/main/model-Q4_K_M.gguf' || url.pathname === '/raw.gguf') {
    res.writeHead(200, { 'content-length': bytes.length });
    return void res.end(bytes);
  }
  res.writeHead(404).end();
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const work = mkdtempSync(join(tmpdir(), 'models-bench-'));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function rawOnce(i: number): Promise<number> {
  const agent = new Agent();
  const t0 = performance.now();
  const res = await request(`${origin}/raw.gguf`, { dispatcher: agent });
  await pipeline(res.body, createWriteStream(join(work, `raw-${i}.gguf`), { highWaterMark: 1 << 20 })); // same write buffer as the console
  const ms = performance.now() - t0;
  await agent.close();
  return ms;
}

const consoleApp = createConsole({
  env: {},
  dataDir: join(work, 'data'),
  overrides: { server: { httpPort: 0, grpcPort: 0 }, ops: { logLevel: 'error' }, engine: { library: { hfEndpoint: origin } } },
  logDestination: createWriteStream('/dev/null'),
});
const { httpUrl } = await consoleApp.start();

async function consoleOnce(i: number): Promise<{ transferMs: number; totalMs: number; events: number }> {
  let events = 0;
  let transferEnd = 0;
  let resolveDone!: (v: DownloadView) => void;
  const done = new Promise<DownloadView>((r) => (resolveDone = r));
  const off = consoleApp.models.downloads.onEvent((v) => {
    events++;
    if (v.status === 'verifying' && transferEnd === 0) transferEnd = performance.now();
    if (v.status === 'completed' || v.status === 'failed') resolveDone(v);
  });
  const t0 = performance.now();
  const res = await fetch(`${httpUrl}/api/v1/library/downloads`, {
    method: 'POST',
    headers: { authorization: `Bearer ${consoleApp.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ uri: 'hf:bench/model-GGUF:Q4_K_M', name: `bench-${i}` }),
  });
  if (res.status !== 202) throw new Error(`download refused: ${res.status} ${await res.text()}`);
  const view = await done;
  const t1 = performance.now();
  off();
  if (view.status !== 'completed') throw new Error(`download failed: ${view.error}`);
  return { transferMs: transferEnd - t0, totalMs: t1 - t0, events };
}

try {
  const raw: number[] = [];
  const transfer: number[] = [];
  const total: number[] = [];
  let events = 0;
  for (let i = 0; i < ROUNDS; i++) {
    // Alternate, so background load hits both sides alike.
    raw.push(await rawOnce(i));
    const c = await consoleOnce(i);
    transfer.push(c.transferMs);
    total.push(c.totalMs);
    events = c.events;
    log(`round ${i + 1}: raw ${raw[i]!.toFixed(0)} ms, console transfer ${c.transferMs.toFixed(0)} ms, total ${c.totalMs.toFixed(0)} ms`);
  }
  const mib = bytes.length / MIB;
  const rawMiBps = mib / (median(raw) / 1000);
  const transferMiBps = mib / (median(transfer) / 1000);
  const totalMiBps = mib / (median(total) / 1000);
  const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
  process.stdout.write(
    `${JSON.stringify({
      bench: 'models',
      fileMiB: round(mib),
      rounds: ROUNDS,
      rawUndiciMiBps: round(rawMiBps),
      consoleTransferMiBps: round(transferMiBps),
      consoleEndToEndMiBps: round(totalMiBps),
      transferRatio: round(transferMiBps / rawMiBps, 3),
      endToEndRatio: round(totalMiBps / rawMiBps, 3),
      verifyAndPublishMs: round(median(total) - median(transfer), 0),
      progressEventsPerDownload: events,
    })}\n`,
  );
} finally {
  await consoleApp.stop();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(work, { recursive: true, force: true });
}
