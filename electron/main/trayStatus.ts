/**
 * The tray's one-line status from the console's snapshot providers (engine, limiter, monitoring):
 * loaded model, queue depth, GPU use. Pure, so it is tested without Electron.
 */
function at(obj: unknown, keys: string[]): unknown {
  let cur = obj;
  for (const k of keys) {
    if (!cur || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

export function trayStatusLine(services: Record<string, unknown>): string {
  const parts: string[] = [];
  const loaded = at(services.engine, ['loadedModels']);
  if (Array.isArray(loaded)) {
    const ids = loaded.map((m) => at(m, ['id'])).filter((x): x is string => typeof x === 'string');
    parts.push(ids.length ? `model ${ids.join(', ')}` : 'no model loaded');
  }
  const engineQueue = at(services.engine, ['queue', 'total']);
  const limiterQueue = at(services.limiter, ['queue', 'current_size']);
  const queued = (typeof engineQueue === 'number' ? engineQueue : 0) + (typeof limiterQueue === 'number' ? limiterQueue : 0);
  if (typeof engineQueue === 'number' || typeof limiterQueue === 'number') parts.push(`queue ${queued}`);
  const gpus = at(services.monitoring, ['telemetry', 'latest', 'gpus']);
  if (Array.isArray(gpus) && gpus.length > 0) {
    const utils = gpus.map((g) => at(g, ['utilizationGpu'])).filter((v): v is number => typeof v === 'number');
    if (utils.length) parts.push(`GPU ${Math.round(utils.reduce((a, b) => a + b, 0) / utils.length)}%`);
  } else if (services.monitoring !== undefined) parts.push('no GPU telemetry');
  const retreat = at(services.limiter, ['retreat', 'state']);
  if (retreat === 'retreat') parts.push('limiter retreating');
  return parts.length ? parts.join(' · ') : 'running';
}
