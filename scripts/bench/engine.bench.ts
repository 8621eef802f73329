// `npm run bench -- engine`: the tiny model (scripts/make-tiny-model.ts), same prompt, seed and
// token count, measured side by side in one run: direct node-llama-cpp (this process) vs the
// console (a child process running the headless core) over HTTP streaming with the official
// openai client (and with plain fetch, to separate the client's own cost) vs over gRPC StreamPredict; then 4 concurrent HTTP streams vs 1.
// CPU by default (engine.gpu false) with explicit threads (--threads N, default 1). On a GPU machine:
// `--gpu auto|cuda|vulkan|metal` (direct and console use the same backend; the console's health
// must report it) and `--shape 1b --type f16` (a 1B-sized random-weight model generated on the
// spot) or `--model PATH` (any GGUF). `--baseline PATH`: a checkout of an older build (with its
// node_modules) runs as a second console in the same run, its turns interleaved with this build's,
// and `vs_baseline` gives this build's throughput and first-token time against it. Prints one JSON line.
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getLlama, LlamaCompletion } from 'node-llama-cpp';
import OpenAI from 'openai';
import { MODEL_SHAPES, writeTinyModel, type ModelShapeName } from '../make-tiny-model.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const log = (msg: string) => process.stderr.write(`engine bench: ${msg}\n`);
const sarg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? String(process.argv[i + 1]) : (process.env[`BENCH_${name.toUpperCase()}`] ?? fallback);
};
const arg = (name: string, fallback: number) => Number(sarg(name, String(fallback)));
const THREADS = arg('threads', 1);
const GPU = sarg('gpu', 'false');
const SHAPE = sarg('shape', 'tiny');
const TYPE = sarg('type', 'f32');
const MODEL = sarg('model', '');
const BASELINE = sarg('baseline', '');
if (!['false', 'auto', 'cuda', 'vulkan', 'metal'].includes(GPU)) throw new Error('--gpu must be false, auto, cuda, vulkan or metal');
if (!(SHAPE in MODEL_SHAPES)) throw new Error(`--shape must be one of ${Object.keys(MODEL_SHAPES).join(', ')}`);
if (TYPE !== 'f32' && TYPE !== 'f16') throw new Error('--type must be f32 or f16');
const TOKENS = arg('tokens', 256);
const RUNS = arg('runs', 7);
const PROMPT = 'the cat sat on the mat';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const r1 = (x: number) => Math.round(x * 10) / 10;
const r3 = (x: number) => Math.round(x * 1000) / 1000;
function rssMb(pid: number): number {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  return r1(kb / 1024);
}

interface Run {
  ttftMs: number;
  tokensPerSecond: number;
  tokens: number;
  text: string;
}
/** Tokens per second over the whole request (request start → last token), and time to first token. */
function timing(start: number, first: number | null, end: number, tokens: number, text: string): Run {
  return { ttftMs: (first ?? end) - start, tokensPerSecond: tokens / ((end - start) / 1000), tokens, text };
}

// ------------------------------------------------------------------ setup
const dir = mkdtempSync(join(tmpdir(), 'bench-engine-'));
mkdirSync(join(dir, 'models'));
const MODEL_ID = 'bench';
const modelPath = join(dir, 'models', `${MODEL_ID}.gguf`);
// The library refuses symlinks that leave the models dir: a hard link (same file system) or a copy.
if (MODEL) {
  try {
    linkSync(MODEL, modelPath);
  } catch {
    copyFileSync(MODEL, modelPath);
  }
} else writeTinyModel(modelPath, { seed: 1, shape: SHAPE as ModelShapeName, type: TYPE });
const modelDescription = MODEL
  ? `${MODEL} (${Math.round(statSync(MODEL).size / 1e6)} MB)`
  : SHAPE === 'tiny' && TYPE === 'f32'
    ? 'tiny random llama (make-tiny-model seed 1, F32, 120k params)'
    : `random-weight llama, shape ${SHAPE} (${JSON.stringify(MODEL_SHAPES[SHAPE as ModelShapeName])}), ${TYPE.toUpperCase()}, ${Math.round(statSync(modelPath).size / 1e6)} MB`;
writeFileSync(join(dir, 'config.json'), JSON.stringify({ engine: { gpu: GPU, threads: THREADS, parallel: 4, streamChunkSize: 1, idleTtlSeconds: 0 }, ops: { logLevel: 'WARNING' } }));

function startConsole(checkout: string, dataDir: string): Promise<{ child: ChildProcess; url: string; grpc: string }> {
  // `--import tsx` keeps the core in this one child process (the tsx CLI would add a wrapper process), so its RSS is the console's.
  const child = spawn(process.execPath, ['--import', 'tsx', join(checkout, 'electron/core/serve.ts'), '--port', '0', '--grpc-port', '0'], {
    cwd: checkout,
    env: { ...process.env, CONSOLE_DATA_DIR: dataDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /console ready (http:\/\/\S+) grpc (\S+)/.exec(out);
      if (m?.[1] && m[2]) resolve({ child, url: m[1], grpc: m[2] });
    });
    child.stderr?.on('data', () => undefined);
    child.once('exit', (code) => reject(new Error(`console exited (${code}) before ready: ${out}`)));
  });
}

// ------------------------------------------------------------------ direct
log(`direct node-llama-cpp (threads ${THREADS}, ${TOKENS} tokens, ${RUNS} runs)`);
const llama = await getLlama({ gpu: GPU === 'false' ? false : (GPU as 'auto' | 'cuda' | 'vulkan' | 'metal'), build: 'never' });
const directBackend = llama.gpu === false ? 'cpu' : llama.gpu;
const gpuDevices = llama.gpu === false ? [] : await llama.getGpuDeviceNames();
log(`direct backend: ${directBackend} ${gpuDevices.join(', ')}`);
const model = await llama.loadModel({ modelPath });
const context = await model.createContext({ contextSize: 512, sequences: 4, threads: THREADS });
async function direct(): Promise<Run> {
  const sequence = context.getSequence();
  const completion = new LlamaCompletion({ contextSequence: sequence });
  const start = performance.now();
  let first: number | null = null;
  let n = 0;
  const text = await completion.generateCompletion(PROMPT, {
    maxTokens: TOKENS,
    temperature: 0,
    onToken: (t) => {
      first ??= performance.now();
      n += t.length;
    },
  });
  const end = performance.now();
  completion.dispose();
  sequence.dispose();
  return timing(start, first, end, n, text);
}

// ------------------------------------------------------------------ console
type GrpcAi = grpc.Client & { StreamPredict(req: object): grpc.ClientReadableStream<{ chunk: string; end_of_stream: boolean }> };
const def = grpc.loadPackageDefinition(loadSync(join(root, 'shared/proto/ai_service.proto'), { keepCase: true, longs: Number, enums: String, defaults: true }));
const AIService = ((def.cyllm as grpc.GrpcObject).v1 as grpc.GrpcObject).AIService as grpc.ServiceClientConstructor;

/** One console under test (this build, or the baseline's) with its three clients. */
interface Target {
  child: ChildProcess;
  url: string;
  openai: OpenAI;
  grpcClient: GrpcAi;
}
async function target(checkout: string, dataDir: string): Promise<Target> {
  const p = await startConsole(checkout, dataDir);
  return { ...p, openai: new OpenAI({ baseURL: `${p.url}/v1`, apiKey: 'unused', maxRetries: 0 }), grpcClient: new AIService(p.grpc, grpc.credentials.createInsecure()) as unknown as GrpcAi };
}
log('starting the console (child process)');
const consoleProc = await target(root, dir);
let baselineProc: Target | null = null;
if (BASELINE) {
  // Its own data dir with the same model (hard link) and config.
  const baseDir = join(dir, 'baseline');
  mkdirSync(join(baseDir, 'models'), { recursive: true });
  linkSync(modelPath, join(baseDir, 'models', `${MODEL_ID}.gguf`));
  copyFileSync(join(dir, 'config.json'), join(baseDir, 'config.json'));
  log(`starting the baseline console from ${BASELINE}`);
  baselineProc = await target(BASELINE, baseDir);
}
async function viaHttp(c: Target = consoleProc): Promise<Run> {
  const start = performance.now();
  let first: number | null = null;
  let text = '';
  let n = 0;
  const stream = await c.openai.completions.create({ model: MODEL_ID, prompt: PROMPT, max_tokens: TOKENS, temperature: 0, stream: true, stream_options: { include_usage: true } });
  for await (const chunk of stream) {
    const t = chunk.choices[0]?.text ?? '';
    if (t !== '') first ??= performance.now();
    text += t;
    if (chunk.usage) n = chunk.usage.completion_tokens;
  }
  return timing(start, first, performance.now(), n, text);
}

/** The same HTTP stream read with plain fetch: separates the console's own latency from the openai client's. */
async function viaRawHttp(c: Target = consoleProc): Promise<Run> {
  const start = performance.now();
  let first: number | null = null;
  let text = '';
  let n = 0;
  const res = await fetch(`${c.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL_ID, prompt: PROMPT, max_tokens: TOKENS, temperature: 0, stream: true }),
  });
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const bytes of res.body as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(bytes, { stream: true });
    let i: number;
    while ((i = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, i);
      buffer = buffer.slice(i + 2);
      if (!event.startsWith('data: {')) continue;
      const t = (JSON.parse(event.slice(6)) as { choices: Array<{ text: string }> }).choices[0]?.text ?? '';
      if (t !== '') {
        first ??= performance.now();
        n++;
      }
      text += t;
    }
  }
  return timing(start, first, performance.now(), n, text);
}

function viaGrpc(c: Target = consoleProc): Promise<Run> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let first: number | null = null;
    let text = '';
    let chunks = 0;
    const call = c.grpcClient.StreamPredict({ model_id: MODEL_ID, prompt: PROMPT, generation: { max_new_tokens: TOKENS, temperature: 0 } });
    call.on('data', (m: { chunk: string; end_of_stream: boolean }) => {
      if (m.chunk !== '') {
        first ??= performance.now();
        chunks++;
      }
      text += m.chunk;
    });
    call.on('error', reject);
    // streamChunkSize 1: one message per token.
    call.on('end', () => resolve(timing(start, first, performance.now(), chunks, text)));
  });
}

// Warm-up: loads the model in the console, JIT-warms every path.
await direct();
await viaHttp();
await viaRawHttp();
await viaGrpc();
if (baselineProc) {
  await viaHttp(baselineProc);
  await viaRawHttp(baselineProc);
  await viaGrpc(baselineProc);
}

const runs = { direct: [] as Run[], http: [] as Run[], raw: [] as Run[], grpc: [] as Run[] };
const base = { http: [] as Run[], raw: [] as Run[], grpc: [] as Run[] };
for (let i = 0; i < RUNS; i++) {
  runs.direct.push(await direct());
  // This build and the baseline take turns, which goes first alternating, so drifting load hits both alike.
  const order = baselineProc ? (i % 2 === 0 ? [consoleProc, baselineProc] : [baselineProc, consoleProc]) : [consoleProc];
  for (const c of order) {
    const into = c === consoleProc ? runs : base;
    into.http.push(await viaHttp(c));
    into.raw.push(await viaRawHttp(c));
    into.grpc.push(await viaGrpc(c));
  }
}
const identical = [...runs.http, ...runs.raw, ...runs.grpc, ...base.http, ...base.raw, ...base.grpc].every((r) => r.text === runs.direct[0]!.text);

log('concurrency: 4 HTTP streams at once vs 1');
async function aggregate(n: number): Promise<number> {
  const start = performance.now();
  const results = await Promise.all(Array.from({ length: n }, () => viaHttp()));
  const seconds = (performance.now() - start) / 1000;
  return results.reduce((a, r) => a + r.tokens, 0) / seconds;
}
const single: number[] = [];
const four: number[] = [];
for (let i = 0; i < 5; i++) {
  single.push(await aggregate(1));
  four.push(await aggregate(4));
}

const consoleHealth = (await (await fetch(`${consoleProc.url}/api/v1/health/details`)).json()) as { components: { engine?: { details?: { backend?: string | null } } } };
const consoleBackend = consoleHealth.components.engine?.details?.backend ?? null;
const directRss = rssMb(process.pid);
const consoleRss = rssMb(consoleProc.child.pid ?? 0);
for (const c of [consoleProc, baselineProc]) {
  if (!c) continue;
  c.grpcClient.close();
  const exited = new Promise((r) => c.child.once('exit', r));
  c.child.kill('SIGTERM');
  await exited;
}
await context.dispose();
await model.dispose();
await llama.dispose();
rmSync(dir, { recursive: true, force: true });

const summary = (xs: Run[]) => ({ tokens_per_s: r1(median(xs.map((r) => r.tokensPerSecond))), ttft_ms_p50: r1(median(xs.map((r) => r.ttftMs))) });
const d = summary(runs.direct);
const h = summary(runs.http);
const g = summary(runs.grpc);
const raw = summary(runs.raw);
const result = {
  bench: 'engine',
  setup: { model: modelDescription, requested_backend: GPU, backend: directBackend, console_backend: consoleBackend, gpu: gpuDevices.length > 0 ? gpuDevices.join(', ') : 'none used', threads: THREADS, tokens: TOKENS, runs: RUNS, identical_text: identical },
  direct: { ...d, rss_mb: directRss },
  http_openai_stream: { ...h, rss_mb: consoleRss },
  http_fetch_stream: { ...raw, rss_mb: consoleRss },
  grpc_stream_predict: { ...g, rss_mb: consoleRss },
  ratios: {
    http_vs_direct_throughput: r3(h.tokens_per_s / d.tokens_per_s),
    grpc_vs_direct_throughput: r3(g.tokens_per_s / d.tokens_per_s),
    http_fetch_vs_direct_throughput: r3(raw.tokens_per_s / d.tokens_per_s),
    http_added_ttft_ms_p50: r1(h.ttft_ms_p50 - d.ttft_ms_p50),
    http_fetch_added_ttft_ms_p50: r1(raw.ttft_ms_p50 - d.ttft_ms_p50),
    grpc_added_ttft_ms_p50: r1(g.ttft_ms_p50 - d.ttft_ms_p50),
  },
  concurrency: { single_stream_tokens_per_s: r1(median(single)), four_streams_aggregate_tokens_per_s: r1(median(four)), ratio: r3(median(four) / median(single)) },
  goals: { throughput_ratio: 0.97, added_ttft_ms_p50: 5, concurrency_ratio: 1.0 },
  ...(baselineProc ? { vs_baseline: vsBaseline() } : {}),
};

/** This build against the baseline build, same run: throughput ratios (> 1 is faster) and first-token time added (ms). */
function vsBaseline() {
  const bh = summary(base.http);
  const br = summary(base.raw);
  const bg = summary(base.grpc);
  return {
    baseline: BASELINE,
    baseline_http_openai_stream: bh,
    baseline_http_fetch_stream: br,
    baseline_grpc_stream_predict: bg,
    baseline_ratios: { http_vs_direct_throughput: r3(bh.tokens_per_s / d.tokens_per_s), grpc_vs_direct_throughput: r3(bg.tokens_per_s / d.tokens_per_s), http_fetch_vs_direct_throughput: r3(br.tokens_per_s / d.tokens_per_s) },
    throughput_new_vs_baseline: { http: r3(h.tokens_per_s / bh.tokens_per_s), http_fetch: r3(raw.tokens_per_s / br.tokens_per_s), grpc: r3(g.tokens_per_s / bg.tokens_per_s) },
    ttft_ms_p50_new_minus_baseline: { http: r1(h.ttft_ms_p50 - bh.ttft_ms_p50), http_fetch: r1(raw.ttft_ms_p50 - br.ttft_ms_p50), grpc: r1(g.ttft_ms_p50 - bg.ttft_ms_p50) },
  };
}
process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
