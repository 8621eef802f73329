// `npm run bench -- core`: cold start of `npm run serve` to its ready line, idle RSS, and /health
// throughput at 50 concurrent connections, side by side with a bare Fastify hello-world measured
// in the same run. Prints one JSON line.
import autocannon from 'autocannon';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const log = (msg: string) => process.stderr.write(`core bench: ${msg}\n`);

interface Started {
  child: ChildProcess;
  url: string;
  readyMs: number;
}

function startProcess(args: string[], readyPattern: RegExp, env: NodeJS.ProcessEnv = {}): Promise<Started> {
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = readyPattern.exec(out);
      if (m?.[1]) resolve({ child, url: m[1], readyMs: performance.now() - t0 });
    });
    child.stderr?.on('data', () => undefined);
    child.once('exit', (code) => reject(new Error(`process exited (${code}) before ready: ${out}`)));
  });
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return Math.round((kb / 1024) * 10) / 10;
}

async function load(url: string, seconds: number): Promise<{ rps: number; p50: number; p99: number; errors: number }> {
  const result = await autocannon({ url: `${url}/health`, connections: 50, duration: seconds, pipelining: 1 });
  return { rps: Math.round(result.requests.average), p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.non2xx };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

const bareFastify = `
  import Fastify from 'fastify';
  const app = Fastify({ logger: false });
  app.get('/health', async () => ({ status: 'ok' }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  console.log('bare ready http://127.0.0.1:' + app.server.address().port);
`;

const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const serveArgs = ['scripts/serve.mjs', '--port', '0', '--grpc-port', '0'];
const readyLine = /console ready (http:\/\/\S+) grpc/;

// Warm-up run builds dist/ if stale, so cold starts below measure start-up only.
{
  const dir = mkdtempSync(join(tmpdir(), 'bench-core-'));
  const s = await startProcess(serveArgs, readyLine, { CONSOLE_DATA_DIR: dir, CONSOLE_LOG_LEVEL: 'warn' });
  await stopProcess(s.child);
  rmSync(dir, { recursive: true, force: true });
}

log('cold starts (fresh data dir each)');
const readyTimes: number[] = [];
for (let i = 0; i < 5; i++) {
  const dir = mkdtempSync(join(tmpdir(), 'bench-core-'));
  const s = await startProcess(serveArgs, readyLine, { CONSOLE_DATA_DIR: dir, CONSOLE_LOG_LEVEL: 'warn' });
  readyTimes.push(s.readyMs);
  await stopProcess(s.child);
  rmSync(dir, { recursive: true, force: true });
}

const dir = mkdtempSync(join(tmpdir(), 'bench-core-'));
const consoleProc = await startProcess(serveArgs, readyLine, { CONSOLE_DATA_DIR: dir, CONSOLE_LOG_LEVEL: 'warn' });
await new Promise((r) => setTimeout(r, 2000));
const idleRss = rssMb(consoleProc.child.pid ?? 0);
const bare = await startProcess(['--input-type=module', '-e', bareFastify], /bare ready (http:\/\/\S+)/);

log(`load: /health, 50 connections, ${seconds}s each, alternating`);
await load(consoleProc.url, 1);
await load(bare.url, 1);
const consoleRuns: Awaited<ReturnType<typeof load>>[] = [];
const bareRuns: Awaited<ReturnType<typeof load>>[] = [];
for (let i = 0; i < 2; i++) {
  consoleRuns.push(await load(consoleProc.url, seconds));
  bareRuns.push(await load(bare.url, seconds));
}
await stopProcess(consoleProc.child);
await stopProcess(bare.child);
rmSync(dir, { recursive: true, force: true });

const consoleRps = median(consoleRuns.map((r) => r.rps));
const bareRps = median(bareRuns.map((r) => r.rps));
const result = {
  bench: 'core',
  cold_start_ms: { median: Math.round(median(readyTimes)), all: readyTimes.map(Math.round) },
  idle_rss_mb: idleRss,
  health_50conns: {
    console: { rps: consoleRps, p50_ms: median(consoleRuns.map((r) => r.p50)), p99_ms: median(consoleRuns.map((r) => r.p99)), errors: consoleRuns.reduce((a, r) => a + r.errors, 0) },
    bare_fastify: { rps: bareRps, p50_ms: median(bareRuns.map((r) => r.p50)), p99_ms: median(bareRuns.map((r) => r.p99)) },
    ratio: Math.round((consoleRps / bareRps) * 1000) / 1000,
  },
  goals: { cold_start_ms: 1500, idle_rss_mb: 120, ratio: 0.8 },
};
process.stdout.write(`${JSON.stringify(result)}\n`);
