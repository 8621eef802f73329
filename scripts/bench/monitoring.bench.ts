// `npm run bench -- monitoring`: GPU lock acquire+release cycles/s and heartbeats/s, through the
// HTTP API (a `serve` child process, loaded with undici from here) and directly against the
// service (a Console in this process), both with persistence on (SQLite file; locks on the
// synchronous=FULL connection, group-committed); plus the CPU cost of telemetry sampling at 1 Hz.
// The measurements alternate in rounds and the medians are reported, so load from other work on
// the machine hits all of them alike; `/health` with the same client calibrates the HTTP figures.
// Prints one JSON line.
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
import { TelemetryMetrics } from '../../electron/core/services/monitoring/monitoringMetrics.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const log = (msg: string) => process.stderr.write(`monitoring bench: ${msg}\n`);
const seconds = Number(process.env.BENCH_SECONDS ?? 3);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const WORKERS = 16; // concurrent clients, each on its own GPU id / task
const gpuList = Array.from({ length: WORKERS }, (_, i) => i);
const silent = new Writable({ write: (_c, _e, cb) => cb() });
const round = (n: number, d = 1) => Math.round(n * 10 ** d) / 10 ** d;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

/** CPU ms of a process (utime + stime from /proc, clock ticks at 100 Hz). */
function cpuMs(pid: number | 'self', children = false): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return children ? ((Number(f[13]) + Number(f[14])) * 1000) / 100 : ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}

/** Runs `op(worker)` in `workers` concurrent loops for `durationS`; ops/s and the CPU % of `pid`. */
async function concurrently(workers: number, durationS: number, op: (worker: number) => Promise<void>, pid?: number): Promise<{ perSecond: number; cpuPercent: number }> {
  let n = 0;
  const cpu0 = pid ? cpuMs(pid) : 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      while (performance.now() - t0 < durationS * 1000) {
        await op(w);
        n++;
      }
    }),
  );
  const elapsed = performance.now() - t0;
  return { perSecond: n / (elapsed / 1000), cpuPercent: pid ? ((cpuMs(pid) - cpu0) / elapsed) * 100 : 0 };
}

function startServe(dir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'electron/core/serve.ts'), '--port', '0', '--grpc-port', '0'], {
    cwd: root,
    env: { ...process.env, CONSOLE_DATA_DIR: dir, CONSOLE_LOG_LEVEL: 'warn', CONSOLE_GPU_IDS: gpuList.join(',') },
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

// ---------- set-up: an in-process Console (direct) and a serve child (HTTP) ----------
const directDir = mkdtempSync(join(tmpdir(), 'bench-mon-direct-'));
const app = createConsole({
  env: {},
  dataDir: directDir,
  logDestination: silent,
  overrides: { server: { httpPort: 0, grpcPort: 0 }, ops: { logLevel: 'warn' }, monitoring: { locks: { gpuIds: gpuList }, telemetry: { enabled: false } } },
});
await app.start();
const { locks, heartbeats } = app.monitoring;
for (const w of gpuList) await heartbeats.register({ taskId: `bench-${w}`, owner: 'bench' });
const directCycle = async (w: number) => {
  const lease = await locks.acquire({ gpuId: w, holder: `bench-${w}`, purpose: 'bench', ttlSeconds: 60 });
  await locks.release(w, `bench-${w}`, lease.fencingToken);
};
const directBeat = async (w: number) => {
  await heartbeats.beatTask(`bench-${w}`, { progress: 0.5 });
};

const httpDir = mkdtempSync(join(tmpdir(), 'bench-mon-http-'));
const { child, url } = await startServe(httpDir);
const pid = child.pid!;
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
const httpHealth = async () => {
  const r = await pool.request({ method: 'GET', path: '/health' });
  await r.body.dump();
  if (r.statusCode !== 200) errors++;
};
const commitStats = async (): Promise<{ commits: number; operations: number }> => {
  const r = await pool.request({ method: 'GET', path: '/metrics' });
  const text = await r.body.text();
  const get = (kind: string) => Number(new RegExp(`console_monitoring_store_commits\\{kind="${kind}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  return { commits: get('commits'), operations: get('operations') };
};
const httpCycle = async (w: number) => {
  const a = await call('/gpu-lock/acquire', { lock_key: `gpu_lock:${w}`, task_name: `bench-${w}`, ttl_seconds: 60 });
  if (a) await call('/gpu-lock/release', { lock_key: `gpu_lock:${w}`, fencing_token: a.fencing_token, task_name: `bench-${w}` });
};
const httpBeat = async (w: number) => {
  await call(`/heartbeat/task/bench-${w}`, { progress: 0.5 });
};
for (const w of gpuList) await call(`/heartbeat/task/bench-${w}/start`, { task_name: 'bench' });

// ---------- alternating rounds ----------
log(`warm-up, then ${rounds} rounds of ${seconds}s per measurement (${WORKERS} concurrent clients, each on its own GPU/task)`);
for (const [op, p] of [[directCycle], [directBeat], [httpHealth, pid], [httpCycle, pid], [httpBeat, pid]] as const) await concurrently(WORKERS, 1, op, p);
const m = { directLocks: [] as number[], directBeats: [] as number[], httpHealth: [] as number[], httpLocks: [] as number[], httpBeats: [] as number[], cpuLocks: [] as number[], cpuBeats: [] as number[], opsPerCommit: [] as number[], directOpsPerCommit: [] as number[] };
for (let r = 0; r < rounds; r++) {
  const d0 = app.monitoring.commitStats();
  m.directLocks.push((await concurrently(WORKERS, seconds, directCycle)).perSecond);
  const d1 = app.monitoring.commitStats();
  m.directOpsPerCommit.push((d1.operations - d0.operations) / Math.max(1, d1.commits - d0.commits));
  m.httpHealth.push((await concurrently(WORKERS, seconds, httpHealth, pid)).perSecond);
  const before = await commitStats();
  const hl = await concurrently(WORKERS, seconds, httpCycle, pid);
  const after = await commitStats();
  m.opsPerCommit.push((after.operations - before.operations) / Math.max(1, after.commits - before.commits));
  m.httpLocks.push(hl.perSecond);
  m.cpuLocks.push(hl.cpuPercent);
  m.directBeats.push((await concurrently(WORKERS, seconds, directBeat)).perSecond);
  const hb = await concurrently(WORKERS, seconds, httpBeat, pid);
  m.httpBeats.push(hb.perSecond);
  m.cpuBeats.push(hb.cpuPercent);
  log(`round ${r + 1}: health ${Math.round(m.httpHealth[r]!)}/s, locks http ${Math.round(hl.perSecond)} direct ${Math.round(m.directLocks[r]!)} cycles/s, beats http ${Math.round(hb.perSecond)} direct ${Math.round(m.directBeats[r]!)}/s`);
}
const oneClient = (await concurrently(1, seconds, directCycle)).perSecond;
await pool.close();
const exited = new Promise((r) => child.once('exit', r));
child.kill('SIGTERM');
await exited;
await app.stop();
rmSync(httpDir, { recursive: true, force: true });
rmSync(directDir, { recursive: true, force: true });

// ---------- telemetry sampling CPU cost at 1 Hz ----------
const selfCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
async function telemetryCost(nvidiaSmiPath: string, nvidiaSmiLoop: boolean, durationS: number): Promise<{ ownCpuPercent: number; childCpuPercent: number; samples: number }> {
  const clock = new SystemClock();
  const logs = new LoggerRegistry({ level: 'silent', destination: silent });
  const t = new GpuTelemetry({
    clock,
    logger: logs.get('telemetry'),
    metrics: new TelemetryMetrics(new MetricsRegistry()),
    periodic: new PeriodicTaskRegistry(clock, logs.get('periodic')),
    settings: () => ({ enabled: true, intervalSeconds: 1, historySize: 1000, nvidiaSmiPath, nvidiaSmiTimeoutMs: 5000, nvidiaSmiLoop }),
  });
  t.start(); // samples at 1 Hz on its periodic task, as in the console
  await new Promise((r) => setTimeout(r, 2500)); // first samples, loop started
  const streamPid = t.streamPid();
  const streamCpu = () => (streamPid ? cpuMs(streamPid) : 0);
  const own0 = selfCpuMs();
  const child0 = cpuMs('self', true) + streamCpu();
  const samples0 = t.history().length;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, durationS * 1000));
  const elapsed = performance.now() - t0;
  const own = selfCpuMs() - own0;
  const children = cpuMs('self', true) + streamCpu() - child0;
  const samples = t.history().length - samples0;
  await t.stop();
  return { ownCpuPercent: round((own / elapsed) * 100, 3), childCpuPercent: round((children / elapsed) * 100, 3), samples };
}
async function idleCost(durationS: number): Promise<number> {
  const own0 = selfCpuMs();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, durationS * 1000));
  return round(((selfCpuMs() - own0) / (performance.now() - t0)) * 100, 3);
}
log('telemetry at 1 Hz: idle baseline, no GPU (this machine), fake nvidia-smi (a Node script) in loop and one-shot mode');
const telemetrySeconds = Number(process.env.BENCH_TELEMETRY_SECONDS ?? 10);
const idle = await idleCost(telemetrySeconds / 2);
const noGpu = await telemetryCost('/nonexistent/nvidia-smi', true, telemetrySeconds);
const fake = join(root, 'tests/fixtures/nvidia-smi/fake-nvidia-smi.mjs');
const fakeLoop = await telemetryCost(fake, true, telemetrySeconds);
const fakeOneShot = await telemetryCost(fake, false, telemetrySeconds);

const httpLocks = median(m.httpLocks);
const httpBeats = median(m.httpBeats);
const healthRps = median(m.httpHealth);
const result = {
  bench: 'monitoring',
  rounds,
  seconds_each: seconds,
  clients: WORKERS,
  lock_cycles_per_s: { http: Math.round(httpLocks), direct: Math.round(median(m.directLocks)), http_over_direct: round(httpLocks / median(m.directLocks), 3), direct_one_client: Math.round(oneClient) },
  heartbeats_per_s: { http: Math.round(httpBeats), direct: Math.round(median(m.directBeats)), http_over_direct: round(httpBeats / median(m.directBeats), 3) },
  http_health_rps_same_client: Math.round(healthRps),
  http_requests_over_health: { lock_cycle: round((2 * httpLocks) / healthRps, 3), heartbeat: round(httpBeats / healthRps, 3) },
  lock_ops_per_commit: { http: round(median(m.opsPerCommit)), direct: round(median(m.directOpsPerCommit)) },
  http_server_cpu_percent: { locks: round(median(m.cpuLocks)), heartbeats: round(median(m.cpuBeats)) },
  http_errors: errors,
  telemetry_1hz_cpu_percent: {
    idle_baseline: idle,
    no_gpu: noGpu.ownCpuPercent,
    fake_nvidia_smi_loop: { console: fakeLoop.ownCpuPercent, nvidia_smi_process: fakeLoop.childCpuPercent },
    fake_nvidia_smi_one_shot: { console: fakeOneShot.ownCpuPercent, nvidia_smi_processes: fakeOneShot.childCpuPercent },
    samples: noGpu.samples + fakeLoop.samples + fakeOneShot.samples,
  },
  persistence: 'sqlite file, WAL; locks synchronous=FULL with group commit; beats synchronous=NORMAL',
  goals: { http_lock_cycles_per_s: 2000, http_heartbeats_per_s: 5000, telemetry_cpu_percent: 1 },
};
process.stdout.write(`${JSON.stringify(result)}\n`);
