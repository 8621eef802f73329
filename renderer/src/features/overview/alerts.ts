import type { HealthDetails } from '../../../../shared/client/apiTypes.js';
import type { ConsoleSnapshot } from '../../../../shared/contracts/console.js';
import { num } from '../../lib/format.js';
import { path } from '../../lib/read.js';

/** Alerts worth a person's attention, derived from one snapshot. */
export function alertsFor(s: ConsoleSnapshot, health: HealthDetails | null): string[] {
  const out: string[] = [];
  // Prometheus alerts Alertmanager posted to /api/alerts (critical first).
  const firing = path(s.services.alerts, ['firing']);
  if (Array.isArray(firing)) {
    for (const a of firing) {
      const summary = path(a, ['summary']);
      out.push(`[${String(path(a, ['severity']))}] ${String(path(a, ['alertname']))}${typeof summary === 'string' && summary !== '' ? `: ${summary}` : ''}`);
    }
  }
  if (s.core.eventLoopLagMs > 100) out.push(`The core's event loop is lagging (${num(s.core.eventLoopLagMs)} ms p99).`);
  if (s.core.systemMemTotalBytes > 0 && s.core.systemMemUsedBytes / s.core.systemMemTotalBytes > 0.9) out.push('System memory is over 90 % used.');
  const retreat = path(s.services.limiter, ['retreat', 'state']);
  if (retreat === 'retreat') out.push('The limiter is in RETREAT: the upstream is throttling (429s).');
  // The GPU lent to a training job (training.enginePolicy): who holds it and what the engine does meanwhile.
  const lent = path(s.services.engine, ['gpuLent']);
  const holder = path(lent, ['holder']);
  if (typeof holder === 'string') {
    const policy = path(lent, ['policy']);
    out.push(`GPU ${String(path(lent, ['gpuId']))} is lent to training job ${holder}: ${policy === 'cpu' ? 'models run on the CPU meanwhile' : 'models are unloaded; requests wait until the job ends'}.`);
  }
  const issues = path(s.services.monitoring, ['issues']);
  if (Array.isArray(issues)) for (const i of issues) out.push(String(i));
  for (const [name, err] of Object.entries(s.errors ?? {})) out.push(`${name}: snapshot failed (${err})`);
  for (const [name, c] of Object.entries(health?.components ?? {})) if (c.status !== 'UP') out.push(`${name} is ${c.status}.`);
  // A GPU backend that failed the engine's self-test (e.g. a driver too old for the prebuilt CUDA kernels).
  const engine = health?.components?.engine;
  const tests = path(engine, ['details', 'selfTests']);
  const backend = path(engine, ['details', 'backend']);
  if (Array.isArray(tests)) {
    for (const t of tests) {
      if (path(t, ['ok']) !== false) continue;
      const hint = path(t, ['hint']);
      const runsOn = typeof backend === 'string' ? `inference runs on ${backend === 'cpu' ? 'the CPU' : backend}` : 'inference is unavailable';
      out.push(`GPU backend ${String(path(t, ['backend']))} failed its self-test (${String(path(t, ['reason']))}); ${runsOn}.${typeof hint === 'string' ? ` ${hint}` : ''}`);
    }
  }
  return out;
}

