import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { DownloadView } from '../../shared/contracts/models.js';
import { FakeHf } from '../helpers/fakeHf.js';
import { tinyGguf } from '../helpers/gguf.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { waitFor as waitUntil } from '../helpers/training.js';

const REPO = 'acme/Tiny-Chat-GGUF';
const BIG = 256 * 1024; // F32 elements: ~1 MiB files

/** Reads `event: download` frames from the SSE stream until `until` says stop. */
/**
 * Opens the SSE stream; resolves once the server answered (it has subscribed), with `done` for
 * the events collected until `until` holds.
 */
async function collectEvents(url: string, until: (events: DownloadView[], raw: string) => boolean, timeoutMs = 30_000): Promise<{ done: Promise<{ events: DownloadView[]; raw: string }> }> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const res = await fetch(url, { signal: controller.signal });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
  return { done: readEvents(res, until, controller, timer) };
}

async function readEvents(res: Response, until: (events: DownloadView[], raw: string) => boolean, controller: AbortController, timer: NodeJS.Timeout): Promise<{ events: DownloadView[]; raw: string }> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const events: DownloadView[] = [];
  let raw = '';
  let buffer = '';
  try {
    while (!until(events, raw)) {
      const { value, done } = await reader.read();
      if (done) break;
      const text = decoder.decode(value, { stream: true });
      raw += text;
      buffer += text;
      let idx: number;
      while ((idx = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, idx);
        buffer = buffer.slice(idx + 2);
        const data = frame.split('\n').find((l) => l.startsWith('data: '));
        if (frame.includes('event: download') && data) events.push(JSON.parse(data.slice(6)) as DownloadView);
      }
    }
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  return { events, raw };
}

describe('model downloads', () => {
  const hf = new FakeHf();
  let tc: TestConsole;
  let dataDir: string;
  const big = tinyGguf({ elements: BIG, seed: 5 });
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

  beforeAll(async () => {
    await hf.start();
  });
  afterAll(async () => {
    await hf.close();
  });
  beforeEach(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'models-dl-'));
    hf.requests.length = 0;
    tc = await startConsole({ dataDir, config: { engine: { library: { hfEndpoint: hf.url, maxConcurrentDownloads: 2 } } } });
  });
  afterEach(async () => {
    hf.release();
    await tc.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const modelsDir = () => tc.console.models.dir;
  const staged = () => readdirSync(join(modelsDir(), '.downloads'));
  const start = async (body: Record<string, unknown>) => {
    const res = await fetch(`${tc.url}/api/v1/library/downloads`, { method: 'POST', headers: { ...tc.admin, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as DownloadView & { error: unknown } };
  };
  const get = async (id: string) => (await (await fetch(`${tc.url}/api/v1/library/downloads/${id}`)).json()) as DownloadView;
  const waitFor = async (id: string, ok: (d: DownloadView) => boolean, timeoutMs = 30_000): Promise<DownloadView> => {
    return waitUntil(
      async () => {
        const d = await get(id);
        return ok(d) ? d : undefined;
      },
      timeoutMs,
      `download ${id}`,
      50,
    );
  };

  it('downloads hf:owner/repo:quant with progress on the SSE stream, verifies sha256 and lists the model', async () => {
    hf.addRepo(REPO, [
      { path: 'tiny-chat-Q4_K_M.gguf', bytes: big, mode: 'slow' },
      { path: 'tiny-chat-Q8_0.gguf', bytes: tinyGguf({ seed: 9 }) },
    ]);
    const changed = new Promise<void>((resolve) => tc.console.models.onChange(resolve));
    const eventsDone = collectEvents(
      `${tc.url}/api/v1/library/downloads/events`,
      (ev, raw) => ev.some((e) => e.status === 'failed') || (ev.some((e) => e.status === 'completed') && raw.includes('event: files')),
    );
    const { done: eventsCollected } = await eventsDone; // the stream has subscribed before the download starts
    const { status, body } = await start({ uri: `hf:${REPO}:Q4_K_M` });
    expect(status).toBe(202);
    expect(body).toMatchObject({ name: 'tiny-chat-Q4_K_M', bytesTotal: big.length, sha256: sha(big) });
    expect(['queued', 'downloading']).toContain(body.status);
    expect(body.id).toMatch(/^dl-/);
    const { events, raw } = await eventsCollected;
    expect(raw.startsWith('retry: 3000')).toBe(true);
    expect(raw).toContain('event: files\ndata: {}\n\n');
    const mine = events.filter((e) => e.id === body.id);
    const last = mine[mine.length - 1]!;
    expect(last.status).toBe('completed');
    const progress = mine.filter((e) => e.status === 'downloading' && e.bytesDone > 0 && e.bytesDone < big.length);
    expect(progress.length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < progress.length; i++) expect(progress[i]!.bytesDone).toBeGreaterThanOrEqual(progress[i - 1]!.bytesDone);
    expect(progress.some((e) => e.speedBytesPerSecond > 0 && e.etaSeconds !== null && e.progress !== null)).toBe(true);
    const done = await get(body.id);
    expect(done).toMatchObject({ status: 'completed', bytesDone: big.length, progress: 1, sha256: sha(big) });
    expect(done.finishedAt).toMatch(/Z$/);
    expect(readFileSync(join(modelsDir(), 'tiny-chat-Q4_K_M.gguf')).equals(big)).toBe(true);
    expect(staged()).toEqual([]);
    await changed;
    const files = (await (await fetch(`${tc.url}/api/v1/library/files`)).json()) as { files: Array<{ id: string }> };
    expect(files.files.map((f) => f.id)).toContain('tiny-chat-Q4_K_M');
    expect(hf.requests.some((r) => r.url.startsWith(`/cdn/${REPO}/`))).toBe(true); // followed the resolve redirect
    const list = (await (await fetch(`${tc.url}/api/v1/library/downloads`)).json()) as { downloads: DownloadView[] };
    expect(list.downloads.map((d) => d.id)).toContain(body.id);
    const metrics = await (await fetch(`${tc.url}/metrics`)).text();
    expect(metrics).toMatch(/console_model_downloads_total\{outcome="completed"\} 1/);
    expect(metrics).toMatch(new RegExp(`console_model_download_bytes_total ${big.length}`));
    // A second download of the same model is refused: it exists now.
    expect((await start({ uri: `hf:${REPO}:Q4_K_M` })).status).toBe(409);
  });

  it('resumes with an HTTP Range request after the server drops the connection mid-file', async () => {
    hf.addRepo('acme/drop', [{ path: 'drop.gguf', bytes: big, mode: 'drop-once', dropAt: 300_000 }]);
    const { body } = await start({ uri: 'hf:acme/drop' });
    const done = await waitFor(body.id, (d) => d.status === 'completed' || d.status === 'failed');
    expect(done.status).toBe('completed');
    expect(done.attempts).toBeGreaterThanOrEqual(2);
    const ranges = hf.requests.filter((r) => r.url === '/cdn/acme/drop/drop.gguf').map((r) => r.range);
    expect(ranges[0]).toBeUndefined();
    const resumed = ranges.slice(1).find((r) => r !== undefined);
    expect(resumed).toMatch(/^bytes=\d+-$/);
    expect(Number(/bytes=(\d+)-/.exec(resumed!)![1])).toBeGreaterThan(0);
    expect(readFileSync(join(modelsDir(), 'drop.gguf')).equals(big)).toBe(true);
  });

  it('fails on a sha256 mismatch and leaves no file', async () => {
    hf.addRepo('acme/liar', [{ path: 'liar.gguf', bytes: big, reportedSha256: 'f'.repeat(64) }]);
    const { body } = await start({ uri: 'hf:acme/liar/liar.gguf' });
    const done = await waitFor(body.id, (d) => d.status === 'completed' || d.status === 'failed');
    expect(done.status).toBe('failed');
    expect(done.error).toMatch(/sha256 mismatch/);
    expect(existsSync(join(modelsDir(), 'liar.gguf'))).toBe(false);
    expect(staged()).toEqual([]);
  });

  it('fails a download that is not a GGUF (https URL with the caller sha256 right) and leaves no file', async () => {
    const junk = Buffer.alloc(50_000, 1);
    hf.addRepo('acme/junk', [{ path: 'junk.gguf', bytes: junk }]);
    const { status, body } = await start({ uri: `${hf.url}/direct/junk.gguf`, name: 'junk', sha256: sha(junk) });
    expect(status).toBe(202);
    const done = await waitFor(body.id, (d) => d.status === 'completed' || d.status === 'failed');
    expect(done.status).toBe('failed');
    expect(done.error).toMatch(/not a usable GGUF/);
    expect(existsSync(join(modelsDir(), 'junk.gguf'))).toBe(false);
    expect(staged()).toEqual([]);
  });

  it('fails a plain URL whose size does not fit on the disk, before writing it', async () => {
    hf.addRepo('acme/vast', [{ path: 'vast.gguf', bytes: tinyGguf(), advertiseLength: 2 ** 52 }]);
    const { status, body } = await start({ uri: `${hf.url}/direct/vast.gguf` });
    expect(status).toBe(202);
    const done = await waitFor(body.id, (d) => d.status === 'completed' || d.status === 'failed');
    expect(done.status).toBe('failed');
    expect(done.error).toMatch(/Not enough disk space/);
    expect(done.attempts).toBe(1);
    expect(staged()).toEqual([]);
  });

  it('cancels a running download: no partial file, no model', async () => {
    hf.addRepo('acme/stall', [{ path: 'stall.gguf', bytes: big, mode: 'stall', dropAt: 200_000 }]);
    const { body } = await start({ uri: 'hf:acme/stall' });
    await waitFor(body.id, (d) => d.bytesDone >= 200_000);
    expect(staged()).toEqual([`${body.id}.partial`]);
    expect(tc.console.models.downloads.snapshot().map((d) => d.id)).toEqual([body.id]);
    expect((await fetch(`${tc.url}/api/v1/library/downloads/${body.id}`, { method: 'DELETE' })).status).toBe(401);
    const res = await fetch(`${tc.url}/api/v1/library/downloads/${body.id}`, { method: 'DELETE', headers: tc.admin });
    expect(res.status).toBe(200);
    expect(((await res.json()) as DownloadView).status).toBe('cancelled');
    expect(staged()).toEqual([]);
    expect(existsSync(join(modelsDir(), 'stall.gguf'))).toBe(false);
    expect(tc.console.models.downloads.snapshot()).toEqual([]);
    // DELETE on a finished record removes it from the history.
    expect((await fetch(`${tc.url}/api/v1/library/downloads/${body.id}`, { method: 'DELETE', headers: tc.admin })).status).toBe(200);
    expect((await fetch(`${tc.url}/api/v1/library/downloads/${body.id}`)).status).toBe(404);
  });

  it('refuses a second concurrent download of the same model name', async () => {
    hf.addRepo('acme/twice', [{ path: 'twice.gguf', bytes: big, mode: 'stall', dropAt: 100_000 }]);
    const [a, b] = await Promise.all([start({ uri: 'hf:acme/twice' }), start({ uri: 'hf:acme/twice' })]);
    expect([a.status, b.status].sort()).toEqual([202, 409]);
    const started = a.status === 202 ? a.body : b.body;
    const refused = a.status === 202 ? b.body : a.body;
    expect((refused as unknown as { error: { code: string } }).error.code).toBe('CONFLICT');
    // An import under the name the download will create is refused too.
    const src = join(dataDir, 'twice-src.gguf');
    writeFileSync(src, tinyGguf());
    const imp = await fetch(`${tc.url}/api/v1/library/import`, { method: 'POST', headers: { ...tc.admin, 'content-type': 'application/json' }, body: JSON.stringify({ path: src, name: 'twice' }) });
    expect(imp.status).toBe(409);
    const res = await fetch(`${tc.url}/api/v1/library/downloads/${started.id}`, { method: 'DELETE', headers: tc.admin });
    expect(((await res.json()) as DownloadView).status).toBe('cancelled');
    expect(staged()).toEqual([]);
  });

  it('keeps records across a restart and resumes an interrupted download from its partial file', async () => {
    hf.addRepo('acme/restart', [{ path: 'restart.gguf', bytes: big, mode: 'stall', dropAt: 400_000 }]);
    const { body } = await start({ uri: 'hf:acme/restart' });
    await waitFor(body.id, (d) => d.bytesDone >= 400_000);
    await tc.close();
    hf.file('acme/restart', 'restart.gguf').mode = 'normal';
    hf.requests.length = 0;
    tc = await startConsole({ dataDir, config: { engine: { library: { hfEndpoint: hf.url } } } });
    const done = await waitFor(body.id, (d) => d.status === 'completed' || d.status === 'failed');
    expect(done.status).toBe('completed');
    // Resumed from what reached the partial file before the stop (at most the 400000 bytes sent).
    const range = hf.requests.find((r) => r.url === '/cdn/acme/restart/restart.gguf')?.range;
    const from = Number(/^bytes=(\d+)-$/.exec(range ?? '')?.[1]);
    expect(from).toBeGreaterThan(0);
    expect(from).toBeLessThanOrEqual(400_000);
    expect(readFileSync(join(modelsDir(), 'restart.gguf')).equals(big)).toBe(true);
    // Finished records survive another restart.
    await tc.close();
    tc = await startConsole({ dataDir, config: { engine: { library: { hfEndpoint: hf.url } } } });
    expect((await get(body.id)).status).toBe('completed');
  });

  it('validates requests: every bad field, unknown repo or quant, existing names, admin only', async () => {
    hf.addRepo('acme/valid', [{ path: 'valid-Q4_K_M.gguf', bytes: tinyGguf() }]);
    hf.addRepo('acme/huge', [{ path: 'huge.gguf', bytes: tinyGguf(), reportedSize: 2 ** 52 }]);
    const huge = await start({ uri: 'hf:acme/huge' });
    expect(huge.status).toBe(503);
    expect((huge.body as unknown as { error: { code: string } }).error.code).toBe('INSUFFICIENT_RESOURCES');
    const bad = await start({ uri: 'hf:../x', name: '../evil', sha256: 'xyz', extra: 1 });
    expect(bad.status).toBe(400);
    const fields = (bad.body as unknown as { error: { details: Array<{ field: string }> } }).error.details.map((d) => d.field).sort();
    expect(fields).toEqual(['extra', 'sha256']);
    const semantic = await start({ uri: 'hf:../x', name: '../evil' });
    expect((semantic.body as unknown as { error: { details: Array<{ field: string }> } }).error.details.map((d) => d.field).sort()).toEqual(['name', 'uri']);
    expect((await start({ uri: 'hf:acme/valid:Q2_K' })).status).toBe(404);
    expect((await start({ uri: 'hf:acme/missing' })).status).toBe(404);
    expect((await start({ uri: 'http://example.com/x.gguf' })).status).toBe(400);
    const mismatch = await start({ uri: 'hf:acme/valid', sha256: 'a'.repeat(64) });
    expect(mismatch.status).toBe(400);
    const res = await fetch(`${tc.url}/api/v1/library/downloads`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ uri: 'hf:acme/valid' }) });
    expect(res.status).toBe(401);
    expect((await fetch(`${tc.url}/api/v1/library/downloads/dl-nope`)).status).toBe(404);
    expect(staged()).toEqual([]);
    expect(readdirSync(modelsDir()).filter((n) => n !== '.downloads')).toEqual([]);
  });
});
