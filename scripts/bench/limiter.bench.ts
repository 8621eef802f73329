// `npm run bench -- limiter` (issue 5). Prints ONE JSON line on stdout.
// Part 1, goodput: the real ProviderLimiter (queue + bucket + retreat machine) and baselines
// (no limiter, fixed bucket, AIMD, CUBIC-style, oracle) against the simulator's capacity model,
// all on a FakeClock: an hour of traffic per strategy in about a second. The hidden capacity steps
// to 60 % of the start rate (a drop) and then to 150 % (a rise) under steady over-demand. Then a
// short real-time run through a real Console and the HTTP simulator at scaled-up rates proves the
// wiring. Part 2, overhead: the proxy vs calling the simulator directly, 1, 8 (0 ms only) and 50
// concurrent clients, with an upstream answering in 0 ms (the proxy's own cost) and in 20 ms;
// `proxy_vs_direct_0ms` repeats the 0 ms throughput ratios at 1 and 8 clients (issue 16, goal ≥ 0.8),
// beside two floors that only relay (bare node:http + undici; one Fastify route): what any Node proxy costs.
// BENCH_PARTS=overhead BENCH_OVERHEAD_LATENCIES=0 runs only that part.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Value } from '@sinclair/typebox/value';
import { Pool } from 'undici';
import { LimitSettings } from '../../shared/contracts/config/limiter.js';
import type { Priority } from '../../shared/contracts/priority.js';
import { FakeClock, type Clock } from '../../electron/core/base/clock.js';
import { createConsole } from '../../electron/core/console.js';
import { ProviderLimiter, type RateControl } from '../../electron/core/services/limiter/providerLimiter.js';
import type { RetreatTransition } from '../../electron/core/services/limiter/retreatController.js';
import { CapacityModel, startUpstreamSim, type CapacityStep } from '../upstream-sim.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const log = (msg: string) => process.stderr.write(`limiter bench: ${msg}\n`);
const r2 = (n: number) => Math.round(n * 100) / 100;
const r3 = (n: number) => Math.round(n * 1000) / 1000;
const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

// ---------------------------------------------------------------- part 1: goodput simulation
const START_RPM = 40;
const PHASE_MIN = Number(process.env.BENCH_PHASE_MIN ?? 30);
const PHASE_MS = PHASE_MIN * 60_000;
const CAPACITY: CapacityStep[] = [
  { atMs: 0, rpm: START_RPM * 0.6 }, // drop: the limiter starts at 40 RPM, the provider allows 24
  { atMs: PHASE_MS, rpm: START_RPM * 1.5 }, // rise: 60
];
const DEMAND_RPM = 120; // 2× the highest capacity: steady over-demand
const LATENCY_MS = 300;
const CEILING = START_RPM * 2;
const BIN_MS = 10_000;
const defaults = Value.Default(LimitSettings, {}) as LimitSettings;

interface Bin {
  ok: number;
  r429: number;
}

interface SimResult {
  bins: Bin[];
  urgentWaitsMs: number[][]; // per phase
  finalRpm: number;
  transitions: number;
}

type Strategy =
  | { name: string; kind: 'none' }
  | { name: string; kind: 'limiter'; settings: Partial<LimitSettings>; control?: (clock: Clock, model: CapacityModel) => RateControl };

const noTransition = (rpm: number): RetreatTransition => ({ from: 'normal', to: 'normal', previousRpm: rpm, rpm, ratio: 0, reason: 'rate_changed', at: 0 });

/** A fixed rate (the fixed bucket baseline). */
const fixedControl = (rpm: number): RateControl => ({ rpm, record: () => null });

/** AIMD: ×0.9 per 429, +1 RPM per successful response, within [5, ceiling]. */
function aimdControl(): RateControl {
  let rpm = START_RPM;
  return {
    get rpm() {
      return rpm;
    },
    record(is429) {
      const before = rpm;
      rpm = is429 ? Math.max(5, rpm * 0.9) : Math.min(CEILING, rpm + 1);
      return rpm === before ? null : { ...noTransition(rpm), previousRpm: before };
    },
  };
}

/**
 * CUBIC-style recovery as in the AWS SDKs' adaptive retry mode (β = 0.7, C = 0.4, rates in
 * requests/second): on a throttle remember the rate as W_max and cut to β·W_max; afterwards
 * rate(t) = C·(t − K)³ + W_max with K = ∛(W_max·(1 − β)/C), t = seconds since the throttle.
 */
function cubicControl(clock: Clock): RateControl {
  const beta = 0.7;
  const C = 0.4;
  let rps = START_RPM / 60;
  let wMax = rps;
  let lastThrottle = clock.monotonic();
  let k = 0;
  return {
    get rpm() {
      return rps * 60;
    },
    record(is429) {
      const before = rps;
      const now = clock.monotonic();
      if (is429) {
        wMax = rps;
        rps = Math.max(5 / 60, rps * beta);
        lastThrottle = now;
        k = Math.cbrt((wMax * (1 - beta)) / C);
      } else {
        const t = (now - lastThrottle) / 1000;
        rps = Math.min(CEILING / 60, Math.max(5 / 60, C * (t - k) ** 3 + wMax));
      }
      return Math.abs(rps - before) < 1e-9 ? null : { ...noTransition(rps * 60), previousRpm: before * 60 };
    },
  };
}

/** The oracle knows the hidden capacity and sends exactly min(demand, capacity). */
function oracleControl(model: CapacityModel): RateControl {
  let rpm = model.capacityRpm();
  return {
    get rpm() {
      return rpm;
    },
    record() {
      const cap = model.capacityRpm();
      if (cap === rpm) return null;
      const before = rpm;
      rpm = cap;
      return { ...noTransition(rpm), previousRpm: before };
    },
  };
}

/** Deterministic priority mix: 10 % urgent, 20 % high, 50 % normal, 20 % low. */
function priorityAt(i: number): Priority {
  const x = (i * 7919) % 100;
  return x < 10 ? 'urgent' : x < 30 ? 'high' : x < 80 ? 'normal' : 'low';
}

async function simulate(strategy: Strategy): Promise<SimResult> {
  const clock = new FakeClock();
  const model = new CapacityModel(clock, { capacity: CAPACITY, windowMs: 60_000, countRejected: true, retryAfter: 'integer' });
  const total = PHASE_MS * CAPACITY.length;
  const bins: Bin[] = Array.from({ length: Math.ceil(total / BIN_MS) }, () => ({ ok: 0, r429: 0 }));
  const urgentWaitsMs: number[][] = CAPACITY.map(() => []);
  let transitions = 0;
  const phaseOf = () => Math.min(CAPACITY.length - 1, Math.floor(clock.monotonic() / PHASE_MS));
  let limiter: ProviderLimiter | undefined;
  if (strategy.kind === 'limiter') {
    limiter = new ProviderLimiter(
      'sim',
      { ...defaults, max_rpm: CEILING, ...strategy.settings },
      clock,
      {
        onGrant: (p, waited) => {
          if (p === 'urgent') urgentWaitsMs[phaseOf()]!.push(waited);
        },
        onTransition: () => transitions++,
      },
      undefined,
      strategy.control?.(clock, model),
    );
  }
  const send = () => {
    const bin = bins[Math.min(bins.length - 1, Math.floor(clock.monotonic() / BIN_MS))]!;
    const a = model.attempt();
    if (a.ok) bin.ok++;
    else bin.r429++;
    clock.setTimeout(() => limiter?.recordResponse(a.ok ? 200 : 429, a.ok ? undefined : a.retryAfterSeconds), LATENCY_MS);
  };
  let i = 0;
  const arrivals = clock.setInterval(() => {
    const p = priorityAt(i++);
    if (!limiter) {
      if (p === 'urgent') urgentWaitsMs[phaseOf()]!.push(0);
      send();
      return;
    }
    limiter.acquire(p).then(send, () => undefined);
  }, 60_000 / DEMAND_RPM);
  const step = 100;
  for (let t = 0; t < total; t += step) {
    clock.advance(step);
    await new Promise<void>((r) => setImmediate(r));
  }
  arrivals.cancel();
  const finalRpm = limiter?.bucket.ratePerMinute ?? DEMAND_RPM;
  limiter?.stop();
  return { bins, urgentWaitsMs, finalRpm, transitions };
}

interface PhaseFigures {
  capacity_rpm: number;
  goodput_rpm: number;
  goodput_vs_capacity: number;
  ratio_429: number;
  /** Seconds from the step until every later 60 s window delivers ≥ 90 % of capacity (null: never). */
  converge_s: number | null;
  /** Seconds from the step until a 60 s window first delivers ≥ 85 % of capacity. */
  first_reach_s: number | null;
  p95_urgent_wait_s: number;
}

function phaseFigures(res: SimResult, phase: number): PhaseFigures {
  const binsPerPhase = PHASE_MS / BIN_MS;
  const first = phase * binsPerPhase;
  const bins = res.bins.slice(first, first + binsPerPhase);
  const cap = CAPACITY[phase]!.rpm;
  // Converged part: the second half of the phase.
  const tail = bins.slice(Math.floor(bins.length / 2));
  const ok = tail.reduce((n, b) => n + b.ok, 0);
  const r429 = tail.reduce((n, b) => n + b.r429, 0);
  const minutes = (tail.length * BIN_MS) / 60_000;
  const win = 60_000 / BIN_MS;
  let converge: number | null = null;
  for (let end = bins.length; end >= win; end--) {
    const w = bins.slice(end - win, end);
    const good = w.reduce((n, b) => n + b.ok, 0);
    if (good < 0.9 * cap) break;
    converge = ((end - win) * BIN_MS) / 1000;
  }
  let firstReach: number | null = null;
  for (let end = win; end <= bins.length; end++) {
    if (bins.slice(end - win, end).reduce((n, b) => n + b.ok, 0) >= 0.85 * cap) {
      firstReach = (end * BIN_MS) / 1000;
      break;
    }
  }
  // `converge` is the start of the earliest window of the unbroken run: report when that window ends.
  return {
    first_reach_s: firstReach,
    capacity_rpm: cap,
    goodput_rpm: r2(ok / minutes),
    goodput_vs_capacity: r3(ok / minutes / cap),
    ratio_429: r3(ok + r429 === 0 ? 0 : r429 / (ok + r429)),
    converge_s: converge === null ? null : converge + 60,
    p95_urgent_wait_s: r2(pct(res.urgentWaitsMs[phase]!, 95) / 1000),
  };
}

const strategies: Strategy[] = [
  { name: 'no_limiter', kind: 'none' },
  { name: 'fixed_bucket', kind: 'limiter', settings: {}, control: () => fixedControl(START_RPM) },
  { name: 'adaptive_step', kind: 'limiter', settings: { recover_mode: 'step' } },
  { name: 'adaptive_probe', kind: 'limiter', settings: { recover_mode: 'probe' } },
  { name: 'aimd', kind: 'limiter', settings: {}, control: () => aimdControl() },
  { name: 'cubic', kind: 'limiter', settings: {}, control: (clock) => cubicControl(clock) },
  { name: 'oracle', kind: 'limiter', settings: { bucket_capacity: 1 }, control: (_c, model) => oracleControl(model) },
];

async function goodput(): Promise<Record<string, unknown>> {
  const results: Record<string, { total_ok: number; drop: PhaseFigures; rise: PhaseFigures; final_rpm: number; transitions: number }> = {};
  for (const s of strategies) {
    const t0 = performance.now();
    const res = await simulate(s);
    results[s.name] = {
      total_ok: res.bins.reduce((n, b) => n + b.ok, 0),
      drop: phaseFigures(res, 0),
      rise: phaseFigures(res, 1),
      final_rpm: r2(res.finalRpm),
      transitions: res.transitions,
    };
    log(`${s.name}: ${Math.round(performance.now() - t0)} ms wall for ${PHASE_MIN * 2} simulated minutes`);
  }
  const oracle = results.oracle!.total_ok;
  return Object.fromEntries(
    Object.entries(results).map(([name, r]) => [
      name,
      {
        goodput_vs_oracle: r3(r.total_ok / oracle),
        drop: r.drop,
        rise: r.rise,
        final_rpm: r.final_rpm,
        transitions: r.transitions,
      },
    ]),
  );
}

// ---------------------------------------------------------------- part 1b: real time, real Console
async function realTime(): Promise<Record<string, unknown>> {
  // Scale ×20: 1 simulated minute = 3 s. Start rate 800 RPM; capacity 480 then 1200; demand 2400.
  const scale = 20;
  const phaseMs = 10_000;
  const sim = await startUpstreamSim({
    capacity: [
      { atMs: 0, rpm: START_RPM * scale * 0.6 },
      { atMs: phaseMs, rpm: START_RPM * scale * 1.5 },
    ],
    windowMs: 60_000 / scale,
    retryAfter: 'fractional',
  });
  const dir = mkdtempSync(join(tmpdir(), 'limiter-bench-'));
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const c = createConsole({
    env: {},
    dataDir: dir,
    logDestination: sink,
    overrides: {
      server: { httpPort: 0, grpcPort: 0 },
      limiter: {
        upstream_url: sim.baseUrl,
        rate_rpm: START_RPM * scale,
        max_rpm: START_RPM * scale * 2,
        bucket_capacity: 40,
        recover_mode: 'probe',
        retreat_window_seconds: 60 / scale,
        recover_window_seconds: 120 / scale,
        probe_interval_seconds: 10 / scale,
        low_priority_timeout: 2,
        request_timeout: 30,
        log_level: 'WARNING',
      },
    },
  });
  const { httpUrl } = await c.start();
  const pool = new Pool(httpUrl, { connections: 64 });
  const body = JSON.stringify({ model: 'nvidia/meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }] });
  const statuses = new Map<number, number>();
  const t0 = performance.now();
  const demandRps = (START_RPM * scale * 3) / 60;
  const inflight: Array<Promise<void>> = [];
  let i = 0;
  while (performance.now() - t0 < phaseMs * 2) {
    const due = Math.floor(((performance.now() - t0) / 1000) * demandRps);
    for (; i < due; i++) {
      inflight.push(
        pool
          .request({ method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json', 'x-priority': priorityAt(i) }, body })
          .then(async (res) => {
            await res.body.dump();
            statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
          })
          .catch(() => undefined),
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const stats = sim.stats(); // what the provider saw during the 2 × 10 s
  const status = (await (await fetch(`${httpUrl}/api/limiter/status`)).json()) as { retreat: { state: string; effective_rpm: number } };
  await Promise.race([Promise.all(inflight), new Promise((r) => setTimeout(r, 3000))]);
  await pool.destroy();
  await c.stop();
  await sim.close();
  rmSync(dir, { recursive: true, force: true });
  const capMeanRpm = (START_RPM * scale * 0.6 + START_RPM * scale * 1.5) / 2;
  const seconds = (phaseMs * 2) / 1000;
  return {
    scale,
    seconds,
    upstream_ok: stats.ok,
    upstream_429: stats.rateLimited,
    goodput_vs_capacity: r3(stats.ok / ((capMeanRpm / 60) * seconds)),
    ratio_429: r3(stats.rateLimited / Math.max(1, stats.attempts)),
    client_statuses: Object.fromEntries(statuses),
    final_state: status.retreat.state,
    final_rpm: status.retreat.effective_rpm,
  };
}

// ---------------------------------------------------------------- part 2: overhead
function startProcess(args: string[], ready: RegExp, env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = ready.exec(out);
      if (m?.[1]) resolve({ child, url: m[1] });
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`exited (${code}) before ready: ${out.slice(-2000)}`)));
  });
}

/** CPU time (user + system, ms) a process has used so far, from /proc (Linux); NaN elsewhere. */
function cpuMs(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime, in USER_HZ (100)
  } catch {
    return Number.NaN;
  }
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

async function measure(origin: string, path: string, concurrency: number, count: number): Promise<{ p50: number; p99: number; rps: number; errors: number }> {
  const pool = new Pool(origin, { connections: concurrency });
  const body = JSON.stringify({ model: 'nvidia/meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }] });
  const one = async () => {
    const res = await pool.request({ method: 'POST', path, headers: { 'content-type': 'application/json' }, body });
    await res.body.dump();
    return res.statusCode;
  };
  for (let i = 0; i < Math.min(200, count); i++) await one(); // warm-up
  const lat: number[] = [];
  let errors = 0;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        next++;
        const s = performance.now();
        const status = await one();
        lat.push(performance.now() - s);
        if (status !== 200) errors++;
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  await pool.destroy();
  return { p50: pct(lat, 50), p99: pct(lat, 99), rps: count / secs, errors };
}

/**
 * Proxy vs direct with limits far above demand. With an upstream that answers in 0 ms the figures
 * are the proxy's own CPU cost (on 2 shared cores: proxy, simulator and load generator compete);
 * with 20 ms (still far below a real provider's latency) they are what a client sees.
 *
 * Two floors run beside the console (scripts/bench/bare-proxy.ts): a bare node:http + undici relay
 * and the same through one Fastify route. They do nothing but relay, so they show what any Node
 * proxy costs here, and how much of the console's cost is its own (routing, queue, bucket, metrics,
 * logs, checks).
 */
async function overhead(latencyMs: number): Promise<Record<string, unknown>> {
  // One process each (tsx as a loader, not its CLI, which runs the script in a child): its CPU time is readable.
  const sim = await startProcess(['--import', 'tsx', 'scripts/upstream-sim.ts', '--port', '0', '--rpm', '100000000', '--latency-ms', String(latencyMs)], /listening on (http:\/\/[\d.:]+)\/v1/, {});
  const dir = mkdtempSync(join(tmpdir(), 'limiter-bench-'));
  const procs: ChildProcess[] = [sim.child];
  const out: Record<string, unknown> = {};
  try {
    const floor = (kind: string) => startProcess(['--import', 'tsx', 'scripts/bench/bare-proxy.ts', '--upstream', sim.url, '--kind', kind], /listening on (http:\/\/[\d.:]+)/, {});
    const nodeFloor = await floor('node');
    procs.push(nodeFloor.child);
    const fastifyFloor = await floor('fastify');
    procs.push(fastifyFloor.child);
    const consoleProc = await startProcess(['scripts/serve.mjs', '--port', '0', '--grpc-port', '0'], /console ready (http:\/\/\S+) grpc/, {
      CONSOLE_DATA_DIR: dir,
      CONSOLE_LOG_LEVEL: 'warn',
      SIDECAR_LOG_LEVEL: 'WARNING',
      SIDECAR_UPSTREAM: `${sim.url}/v1`,
      SIDECAR_RATE_RPM: '1000000',
      SIDECAR_BUCKET_CAPACITY: '1000000',
      SIDECAR_API_KEY: 'bench-key',
    });
    procs.push(consoleProc.child);
    const targets = [
      { key: 'direct', proc: sim },
      { key: 'node_floor', proc: nodeFloor },
      { key: 'fastify_floor', proc: fastifyFloor },
      { key: 'console', proc: consoleProc },
    ] as const;
    const plan: ReadonlyArray<readonly [number, number]> =
      latencyMs === 0
        ? [
            [1, 1500],
            [8, 4000],
            [50, 6000],
          ]
        : [
            [1, Math.max(100, Math.round(4000 / latencyMs))],
            [50, 4000],
          ];
    for (const [concurrency, count] of plan) {
      // CPU per request (warm-up included) of each process while it serves: unlike the rates, not
      // skewed by whatever else shares the cores. Each proxy's idle CPU over the same time is taken
      // off. The four targets take turns in three rounds and the median round counts, so a burst of
      // load from whatever else runs on the machine does not decide the ratio.
      const idle0 = targets.map((t) => cpuMs(t.proc.child.pid));
      const idleT0 = performance.now();
      await new Promise((r) => setTimeout(r, 2000));
      const idlePerMs = targets.map((t, i) => (cpuMs(t.proc.child.pid) - idle0[i]!) / (performance.now() - idleT0));
      type Run = Awaited<ReturnType<typeof measure>> & { cpu: number };
      const rounds: Array<Record<(typeof targets)[number]['key'], Run>> = [];
      const perRound = Math.ceil(count / 3);
      const sent = perRound + Math.min(200, perRound);
      for (let round = 0; round < 3; round++) {
        const r = {} as Record<(typeof targets)[number]['key'], Run>;
        for (const [i, t] of targets.entries()) {
          const cpu0 = cpuMs(t.proc.child.pid);
          const t0 = performance.now();
          const m = await measure(t.proc.url, '/v1/chat/completions', concurrency, perRound);
          r[t.key] = { ...m, cpu: (cpuMs(t.proc.child.pid) - cpu0 - idlePerMs[i]! * (performance.now() - t0)) / sent };
        }
        rounds.push(r);
      }
      const mid = (key: (r: (typeof rounds)[number]) => number) => [...rounds].sort((a, b) => key(a) - key(b))[1]!;
      const median = mid((r) => r.console.rps / r.direct.rps);
      const { direct, console: proxy } = median;
      const cpu = (k: (typeof targets)[number]['key']) => r3(mid((r) => r[k].cpu)[k].cpu);
      const ratio = (k: (typeof targets)[number]['key'], base: (typeof targets)[number]['key']) => {
        const m = mid((r) => r[k].rps / r[base].rps); // the median round of this ratio
        return r3(m[k].rps / m[base].rps);
      };
      out[`c${concurrency}`] = {
        direct_p50_ms: r3(direct.p50),
        direct_p99_ms: r3(direct.p99),
        proxy_p50_ms: r3(proxy.p50),
        proxy_p99_ms: r3(proxy.p99),
        added_p50_ms: r3(proxy.p50 - direct.p50),
        added_p99_ms: r3(proxy.p99 - direct.p99),
        direct_rps: Math.round(direct.rps),
        proxy_rps: Math.round(proxy.rps),
        throughput_ratio: r3(proxy.rps / direct.rps),
        node_floor_vs_direct: ratio('node_floor', 'direct'),
        fastify_floor_vs_direct: ratio('fastify_floor', 'direct'),
        proxy_vs_node_floor: ratio('console', 'node_floor'),
        proxy_vs_fastify_floor: ratio('console', 'fastify_floor'),
        upstream_cpu_ms_per_req: cpu('direct'),
        node_floor_cpu_ms_per_req: cpu('node_floor'),
        fastify_floor_cpu_ms_per_req: cpu('fastify_floor'),
        proxy_cpu_ms_per_req: cpu('console'),
        errors: rounds.reduce((n, r) => n + Object.values(r).reduce((m, x) => m + x.errors, 0), 0),
        rounds_ratio: rounds.map((r) => r3(r.console.rps / r.direct.rps)),
      };
      log(`overhead (upstream ${latencyMs} ms) c=${concurrency}: ${JSON.stringify(out[`c${concurrency}`])}`);
    }
  } finally {
    for (const p of procs.reverse()) await stopProcess(p);
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

const parts = (process.env.BENCH_PARTS ?? 'goodput,realtime,overhead').split(',');
const t0 = performance.now();
const sim = parts.includes('goodput') ? await goodput() : {};
log(`goodput simulation done in ${Math.round(performance.now() - t0)} ms`);
const rt = parts.includes('realtime') ? await realTime() : {};
log(`real-time run: ${JSON.stringify(rt)}`);
const oh: Record<string, unknown> = {};
const latencies = (process.env.BENCH_OVERHEAD_LATENCIES ?? '0,20').split(',').map(Number);
if (parts.includes('overhead')) for (const latency of latencies) oh[`upstream_${latency}ms`] = await overhead(latency);
// Issue 16's figure side by side: proxy vs direct throughput with a 0 ms upstream (goal ≥ 0.8×).
type Figures = {
  throughput_ratio: number;
  proxy_rps: number;
  direct_rps: number;
  proxy_cpu_ms_per_req: number;
  node_floor_vs_direct: number;
  proxy_vs_node_floor: number;
  proxy_vs_fastify_floor: number;
  node_floor_cpu_ms_per_req: number;
  fastify_floor_cpu_ms_per_req: number;
};
const zero = oh.upstream_0ms as Record<string, Figures> | undefined;
const proxyVsDirect = zero
  ? Object.fromEntries(
      ['c1', 'c8']
        .filter((k) => zero[k])
        .map((k) => {
          const f = zero[k]!;
          return [
            k,
            {
              direct_rps: f.direct_rps,
              proxy_rps: f.proxy_rps,
              ratio: f.throughput_ratio,
              node_floor_ratio: f.node_floor_vs_direct,
              proxy_vs_node_floor: f.proxy_vs_node_floor,
              proxy_vs_fastify_floor: f.proxy_vs_fastify_floor,
              proxy_cpu_ms_per_req: f.proxy_cpu_ms_per_req,
              node_floor_cpu_ms_per_req: f.node_floor_cpu_ms_per_req,
              fastify_floor_cpu_ms_per_req: f.fastify_floor_cpu_ms_per_req,
            },
          ];
        }),
    )
  : {};
process.stdout.write(
  `${JSON.stringify({
    bench: 'limiter',
    goodput: { simulated_minutes: PHASE_MIN * 2, start_rpm: START_RPM, capacity_rpm: CAPACITY.map((c) => c.rpm), demand_rpm: DEMAND_RPM, ceiling_rpm: CEILING, strategies: sim },
    real_time: rt,
    proxy_vs_direct_0ms: proxyVsDirect,
    overhead: oh,
    wall_s: r2((performance.now() - t0) / 1000),
  })}\n`,
);
