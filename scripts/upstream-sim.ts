// An OpenAI-compatible fake provider for tests and benchmarks (issue 5): a hidden capacity in RPM
// that can change over time, 429 + Retry-After when it is exceeded, configurable latency, streaming.
// Library: `startUpstreamSim({...})` (port 0 in tests). CLI: `tsx scripts/upstream-sim.ts --help`.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { SystemClock, type Clock, type TimerHandle } from '../electron/core/base/clock.js';

/** Capacity from `atMs` (ms after start) on. */
export interface CapacityStep {
  atMs: number;
  rpm: number;
}

export interface CapacityModelOptions {
  /** Fixed RPM, or a schedule of steps (the first should start at 0). */
  capacity: number | CapacityStep[];
  /** Sliding window the quota applies to (default 60 000 ms: `rpm` requests per minute). */
  windowMs?: number;
  /** Rejected attempts use quota too, as real providers count them (default true). */
  countRejected?: boolean;
  /** Retry-After in whole seconds (HTTP) or fractional (scaled-up tests). Default 'integer'. */
  retryAfter?: 'integer' | 'fractional';
}

export type Attempt = { ok: true } | { ok: false; retryAfterSeconds: number };

/**
 * The provider's hidden quota: at most `rpm × windowMs / 60000` attempts in any sliding window.
 * Pure and clock-driven, so the benchmark simulates hours of traffic on a FakeClock.
 */
export class CapacityModel {
  private log: number[] = [];
  private head = 0;
  private readonly start: number;
  private override: number | null = null;
  readonly windowMs: number;

  constructor(
    private readonly clock: Clock,
    private readonly options: CapacityModelOptions,
  ) {
    this.start = clock.monotonic();
    this.windowMs = options.windowMs ?? 60_000;
  }

  /** Capacity (RPM) now. */
  capacityRpm(): number {
    if (this.override !== null) return this.override;
    const c = this.options.capacity;
    if (typeof c === 'number') return c;
    const t = this.clock.monotonic() - this.start;
    let rpm = c[0]?.rpm ?? 0;
    for (const s of c) if (s.atMs <= t) rpm = s.rpm;
    return rpm;
  }

  /** Changes the capacity at once (overrides the schedule). */
  setCapacity(rpm: number): void {
    this.override = rpm;
  }

  attempt(): Attempt {
    const now = this.clock.monotonic();
    const cutoff = now - this.windowMs;
    while (this.head < this.log.length && this.log[this.head]! <= cutoff) this.head++;
    if (this.head > 4096 && this.head * 2 > this.log.length) {
      this.log = this.log.slice(this.head);
      this.head = 0;
    }
    const quota = Math.max(1, Math.floor((this.capacityRpm() * this.windowMs) / 60_000));
    const used = this.log.length - this.head;
    if (used < quota) {
      this.log.push(now);
      return { ok: true };
    }
    // Free again when enough of the oldest attempts leave the window.
    const idx = this.head + (used - quota);
    const waitMs = Math.max(1, this.log[idx]! + this.windowMs - now);
    if (this.options.countRejected !== false) this.log.push(now);
    const seconds = waitMs / 1000;
    return { ok: false, retryAfterSeconds: this.options.retryAfter === 'fractional' ? Math.round(seconds * 1000) / 1000 : Math.max(1, Math.ceil(seconds)) };
  }
}

export interface UpstreamSimOptions extends CapacityModelOptions {
  host?: string;
  /** 0 = ephemeral. */
  port?: number;
  /** Delay before the response headers (ms). */
  latencyMs?: number;
  /** Streaming: number of content chunks and the delay between them. */
  streamChunks?: number;
  chunkDelayMs?: number;
  /** When set, requests must send `Authorization: Bearer <apiKey>` (else 401). */
  apiKey?: string;
  clock?: Clock;
}

export interface UpstreamSimStats {
  attempts: number;
  ok: number;
  rateLimited: number;
  /** Streams whose client went away before the last chunk. */
  abortedStreams: number;
  /** Requests in flight right now. */
  inFlight: number;
}

export interface UpstreamSim {
  url: string;
  /** Base URL for an OpenAI client / the limiter (`<url>/v1`). */
  baseUrl: string;
  port: number;
  model: CapacityModel;
  stats(): UpstreamSimStats;
  /** Headers and body of the last request (tests check what the limiter forwarded). */
  lastRequest(): { method: string; path: string; headers: IncomingMessage['headers']; body: string } | null;
  close(): Promise<void>;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Starts the simulator on a local port. */
export async function startUpstreamSim(options: UpstreamSimOptions): Promise<UpstreamSim> {
  const clock = options.clock ?? new SystemClock();
  const model = new CapacityModel(clock, options);
  const stats: UpstreamSimStats = { attempts: 0, ok: 0, rateLimited: 0, abortedStreams: 0, inFlight: 0 };
  let last: ReturnType<UpstreamSim['lastRequest']> = null;
  const timers = new Set<TimerHandle>();
  const wait = (ms: number) =>
    ms <= 0
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          const t = clock.setTimeout(() => {
            timers.delete(t);
            resolve();
          }, ms);
          timers.add(t);
        });

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://sim');
    const body = req.method === 'POST' ? await readBody(req) : '';
    last = { method: req.method ?? 'GET', path: url.pathname, headers: req.headers, body };
    if (options.apiKey && req.headers.authorization !== `Bearer ${options.apiKey}`) {
      json(res, 401, { error: { message: 'invalid api key', type: 'authentication_error' } });
      return;
    }
    stats.attempts++;
    const attempt = model.attempt();
    if (!attempt.ok) {
      stats.rateLimited++;
      json(res, 429, { error: { message: 'Too Many Requests', type: 'rate_limit_exceeded' } }, { 'retry-after': String(attempt.retryAfterSeconds) });
      return;
    }
    stats.ok++;
    await wait(options.latencyMs ?? 0);
    const created = Math.floor(clock.now() / 1000);
    if (req.method === 'GET' && url.pathname === '/v1/models') {
      json(res, 200, { object: 'list', data: [{ id: 'meta/llama-3.1-8b-instruct', object: 'model', created, owned_by: 'sim' }] });
      return;
    }
    if (req.method === 'GET' && url.pathname.startsWith('/v1/models/')) {
      const id = decodeURIComponent(url.pathname.slice('/v1/models/'.length));
      json(res, 200, { id, object: 'model', created, owned_by: 'sim' });
      return;
    }
    let parsed: Record<string, unknown> = {};
    try {
      parsed = JSON.parse(body || '{}') as Record<string, unknown>;
    } catch {
      json(res, 400, { error: { message: 'invalid JSON', type: 'invalid_request_error' } });
      return;
    }
    const modelId = typeof parsed.model === 'string' ? parsed.model : 'sim';
    if (req.method === 'POST' && url.pathname === '/v1/embeddings') {
      const vector = [0.1, 0.2, 0.3];
      const embedding = parsed.encoding_format === 'base64' ? Buffer.from(new Float32Array(vector).buffer).toString('base64') : vector;
      json(res, 200, { object: 'list', data: [{ object: 'embedding', index: 0, embedding }], model: modelId, usage: { prompt_tokens: 1, total_tokens: 1 } });
      return;
    }
    if (req.method !== 'POST' || (url.pathname !== '/v1/chat/completions' && url.pathname !== '/v1/completions')) {
      json(res, 404, { error: { message: `no route ${req.method} ${url.pathname}`, type: 'not_found' } });
      return;
    }
    const id = `chatcmpl-sim${stats.attempts}`;
    if (parsed.stream === true) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.flushHeaders();
      const n = options.streamChunks ?? 5;
      let closed = false;
      res.on('close', () => {
        if (!res.writableFinished) {
          closed = true;
          stats.abortedStreams++;
        }
      });
      for (let i = 0; i < n && !closed; i++) {
        res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: modelId, choices: [{ index: 0, delta: { content: `tok${i} ` }, finish_reason: null }] })}\n\n`);
        await wait(options.chunkDelayMs ?? 0);
      }
      if (closed) return;
      res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: modelId, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
      res.end('data: [DONE]\n\n');
      return;
    }
    json(res, 200, {
      id,
      object: url.pathname === '/v1/completions' ? 'text_completion' : 'chat.completion',
      created,
      model: modelId,
      choices: [{ index: 0, message: { role: 'assistant', content: 'hello from the simulator' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
    });
  };

  const server: Server = createServer((req, res) => {
    stats.inFlight++;
    res.on('close', () => stats.inFlight--);
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { error: { message: (err as Error).message, type: 'sim_error' } });
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const url = `http://${options.host ?? '127.0.0.1'}:${port}`;
  return {
    url,
    baseUrl: `${url}/v1`,
    port,
    model,
    stats: () => ({ ...stats }),
    lastRequest: () => last,
    close: async () => {
      for (const t of timers) t.cancel();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** `--schedule "0:40,60000:24"` → steps. */
export function parseSchedule(text: string): CapacityStep[] {
  return text.split(',').map((part) => {
    const [at, rpm] = part.split(':').map(Number);
    if (!Number.isFinite(at) || !Number.isFinite(rpm)) throw new Error(`bad schedule step: ${part} (expected atMs:rpm)`);
    return { atMs: at!, rpm: rpm! };
  });
}

const HELP = `Usage: tsx scripts/upstream-sim.ts [options]
  --port N            listen port (default 9300; 0 = ephemeral)
  --rpm N             capacity in requests per minute (default 40)
  --schedule S        capacity steps "atMs:rpm,..." (overrides --rpm), e.g. "0:40,60000:24,120000:60"
  --window-ms N       quota window in ms (default 60000)
  --latency-ms N      delay before response headers (default 50)
  --chunks N          streaming chunks (default 5)
  --chunk-delay-ms N  delay between chunks (default 20)
  --api-key KEY       require this bearer key`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      rpm: { type: 'string' },
      schedule: { type: 'string' },
      'window-ms': { type: 'string' },
      'latency-ms': { type: 'string' },
      chunks: { type: 'string' },
      'chunk-delay-ms': { type: 'string' },
      'api-key': { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return;
  }
  const sim = await startUpstreamSim({
    port: Number(values.port ?? 9300),
    capacity: values.schedule ? parseSchedule(values.schedule) : Number(values.rpm ?? 40),
    windowMs: Number(values['window-ms'] ?? 60_000),
    latencyMs: Number(values['latency-ms'] ?? 50),
    streamChunks: Number(values.chunks ?? 5),
    chunkDelayMs: Number(values['chunk-delay-ms'] ?? 20),
    apiKey: values['api-key'],
  });
  process.stderr.write(`upstream-sim listening on ${sim.baseUrl} (capacity ${sim.model.capacityRpm()} RPM)\n`);
  const stop = () => void sim.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: unknown) => {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  });
}
