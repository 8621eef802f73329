// `npm run bench -- monitoring`: GPU lock acquire+release cycles/s and heartbeats/s, through the
// HTTP API (a `serve` child process, loaded with undici from here) and directly against the
// service (in this process), both with persistence on (SQLite file, locks on the synchronous=FULL
// connection); plus the CPU cost of telemetry sampling at 1 Hz. Prints one JSON line.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { SystemClock } from '../../electron/core/base/clock.js';
import { LoggerRegistry } from '../../electron/core/base/logger.js';
import { MetricsRegistry } from '../../electron/core/base/metrics.js';
import { PeriodicTaskRegistry } from '../../electron/core/base/periodic.js';
import { createConsole } from '../../electron/core/console.js';
import { GpuTelemetry } from '../../electron/core/services/monitoring/gpuTelemetry.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const log = (msg: string) => process.stderr.write(`monitoring bench: ${msg}\n`);
const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const WORKERS = 16; // concurrent HTTP clients, each on its own GPU id / task
const gpuIds = Array.from({ length: WORKERS }, (_, i) => i).join(',');
const silent = new Writable({ write: (_c, _e, cb) => cb() });
const round = (n: number, d = 1) => Math.round(n * 10 ** d) / 10 ** d;

// ---------- direct, in this process ----------
/** Runs `op(worker)` in WORKERS concurrent loops for `durationS`; returns operations per second. */
async function concurrently(workers: number, durationS: number, op: (worker: number) => Promise<void>): Promise<number> {
  let n = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      while (performance.now() - t0 < durationS * 1000) {
        await op(w);
        n++;
      }
    }),
  );
  return n / ((performance.now() - t0) / 1000);
}

async function direct(): Promise<{ lockCycles: number; lockCyclesOneClient: number; heartbeats: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-mon-direct-'));
  const app = createConsole({
    env: {},
    dataDir: dir,
    logDestination: silent,
    overrides: { server: { httpPort: 0, grpcPort: 0 }, ops: { logLevel: 'warn' }, monitoring: { locks: { gpuIds: Array.from({ length: WORKERS }, (_, i) => i) }, telemetry: { enabled: false } } },
  });
  await app.start();
  const { locks, heartbeats } = app.monitoring;
  const cycle = async (w: number) => {
    const lease = await locks.acquire({ gpuId: w, holder: `bench-${w}`, purpose: 'bench', ttlSeconds: 60 });
    await locks.release(w, `bench-${w}`, lease.fencingToken);
  };
  await concurrently(WORKERS, 1, cycle); // warm-up
  const lockCycles = await concurrently(WORKERS, seconds, cycle);
  const lockCyclesOneClient = await concurrently(1, seconds, cycle);
  for (let w = 0; w < WORKERS; w++) await heartbeats.register({ taskId: `bench-${w}`, owner: 'bench' });
  const hb = await concurrently(WORKERS, seconds, async (w) => {
    await heartbeats.beatTask(`bench-${w}`, { progress: 0.5 });
  });
  await app.stop();
  rmSync(dir, { recursive: true, force: true });
  return { lockCycles, lockCyclesOneClient, heartbeats: hb };
}

// ---------- through HTTP, against a serve child ----------
function startServe(dir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'electron/core/serve.ts'), '--port', '0', '--grpc-port', '0'], {
    cwd: root,
    env: { ...process.env, CONSOLE_DATA_DIR: dir, CONSOLE_LOG_LEVEL: 'warn', CONSOLE_GPU_IDS: gpuIds },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /console ready (http:\/\/\S+) grpc/.exec(out);
      if (m?.[1]) resolve({ child, url: m[1] });
    });
    child.stderr?.on('data', () => undefined);
    child.once('exit', (code) => reject(new Error(`serve exited (${code}) before ready: ${out}`)));
  });
}

function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime, clock ticks at 100 Hz
}

async function http(): Promise<{ lockCycles: number; heartbeats: number; health: number; errors: number; serverCpuPercent: { locks: number; heartbeats: number } }> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-mon-http-'));
  const { child, url } = await startServe(dir);
  const pool = new Pool(url, { connections: WORKERS, pipelining: 1 });
  const headers = { 'content-type': 'application/json' };
  let errors = 0;
  const call = async (path: string, body: unknown): Promise<Record<string, unknown> | null> => {
    const r = await pool.request({ method: 'POST', path: `/api/v1/monitoring${path}`, headers, body: JSON.stringify(body) });
    const parsed = (await r.body.json()) as Record<string, unknown>;
    if (r.statusCode !== 200) {
      errors++;
      return null;
    }
    return parsed;
  };
  const run = async (durationS: number, op: (worker: number) => Promise<void>): Promise<{ perSecond: number; cpuPercent: number }> => {
    let n = 0;
    const cpu0 = cpuMs(child.pid!);
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: WORKERS }, async (_, w) => {
        while (performance.now() - t0 < durationS * 1000) {
          await op(w);
          n++;
        }
      }),
    );
    const elapsed = performance.now() - t0;
    return { perSecond: n / (elapsed / 1000), cpuPercent: ((cpuMs(child.pid!) - cpu0) / elapsed) * 100 };
  };
  const lockCycle = async (w: number) => {
    const a = await call('/gpu-lock/acquire', { lock_key: `gpu_lock:${w}`, task_name: `bench-${w}`, ttl_seconds: 60 });
    if (a) await call('/gpu-lock/release', { lock_key: `gpu_lock:${w}`, fencing_token: a.fencing_token });
  };
  const beat = async (w: number) => {
    await call(`/heartbeat/task/bench-${w}`, { progress: 0.5 });
  };
  const health = async () => {
    const r = await pool.request({ method: 'GET', path: '/health' });
    await r.body.dump();
    if (r.statusCode !== 200) errors++;
  };
  // Calibration: the cheapest route with the same client, so the figures below can be read
  // against what this (shared, noisy) machine allows right now.
  await run(1, health);
  const healthRun = await run(seconds, health);
  await run(1, lockCycle); // warm-up
  const locks = await run(seconds, lockCycle);
  for (let w = 0; w < WORKERS; w++) await call(`/heartbeat/task/bench-${w}/start`, { task_name: 'bench' });
  await run(1, beat);
  const hb = await run(seconds, beat);
  await pool.close();
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
  rmSync(dir, { recursive: true, force: true });
  return { lockCycles: locks.perSecond, heartbeats: hb.perSecond, health: healthRun.perSecond, errors, serverCpuPercent: { locks: round(locks.cpuPercent), heartbeats: round(hb.cpuPercent) } };
}

// ---------- telemetry sampling CPU cost at 1 Hz ----------
function childrenCpuMs(): number {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[13]) + Number(f[14])) * 1000) / 100; // cutime + cstime
}
const selfCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

async function telemetryCost(nvidiaSmiPath: string, durationS: number): Promise<{ ownCpuPercent: number; childCpuPercent: number; samples: number }> {
  const clock = new SystemClock();
  const logs = new LoggerRegistry({ level: 'silent', destination: silent });
  const t = new GpuTelemetry({
    clock,
    logger: logs.get('telemetry'),
    metrics: new MetricsRegistry(),
    periodic: new PeriodicTaskRegistry(clock, logs.get('periodic')),
    settings: () => ({ enabled: true, intervalSeconds: 1, historySize: 120, nvidiaSmiPath, nvidiaSmiTimeoutMs: 5000 }),
  });
  await t.sample(); // first call initialises systeminformation
  const own0 = selfCpuMs();
  const child0 = childrenCpuMs();
  const t0 = performance.now();
  let samples = 0;
  while (performance.now() - t0 < durationS * 1000) {
    const next = t0 + (samples + 1) * 1000;
    await t.sample();
    samples++;
    await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
  }
  const elapsed = performance.now() - t0;
  return { ownCpuPercent: round(((selfCpuMs() - own0) / elapsed) * 100, 3), childCpuPercent: round(((childrenCpuMs() - child0) / elapsed) * 100, 3), samples };
}

async function idleCost(durationS: number): Promise<number> {
  const own0 = selfCpuMs();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, durationS * 1000));
  return round(((selfCpuMs() - own0) / (performance.now() - t0)) * 100, 3);
}

log(`direct (in-process service, SQLite on disk, ${WORKERS} concurrent callers each on its own GPU/task, then 1 caller), ${seconds}s each`);
const d = await direct();
log(`HTTP (serve child, ${WORKERS} concurrent clients, each on its own GPU/task), ${seconds}s each`);
const h = await http();
log('telemetry at 1 Hz: idle baseline, no GPU (this machine), fake nvidia-smi (a Node script)');
const telemetrySeconds = Number(process.env.BENCH_TELEMETRY_SECONDS ?? 10);
const idle = await idleCost(telemetrySeconds / 2);
const noGpu = await telemetryCost('/nonexistent/nvidia-smi', telemetrySeconds);
const fakeSmi = await telemetryCost(join(root, 'tests/fixtures/nvidia-smi/fake-nvidia-smi.mjs'), telemetrySeconds);

const result = {
  bench: 'monitoring',
  lock_cycles_per_s: { http: Math.round(h.lockCycles), direct: Math.round(d.lockCycles), http_over_direct: round(h.lockCycles / d.lockCycles, 3), direct_one_client: Math.round(d.lockCyclesOneClient) },
  heartbeats_per_s: { http: Math.round(h.heartbeats), direct: Math.round(d.heartbeats), http_over_direct: round(h.heartbeats / d.heartbeats, 3) },
  http_health_rps_same_client: Math.round(h.health),
  http_errors: h.errors,
  http_server_cpu_percent: h.serverCpuPercent,
  telemetry_1hz_cpu_percent: {
    idle_baseline: idle,
    no_gpu: noGpu.ownCpuPercent,
    fake_nvidia_smi: { console: fakeSmi.ownCpuPercent, nvidia_smi_child: fakeSmi.childCpuPercent },
    samples: noGpu.samples + fakeSmi.samples,
  },
  persistence: 'sqlite file, WAL, locks synchronous=FULL, beats synchronous=NORMAL',
  goals: { http_lock_cycles_per_s: 2000, http_heartbeats_per_s: 5000, telemetry_cpu_percent: 1 },
};
process.stdout.write(`${JSON.stringify(result)}\n`);
