/** Defensive readers for snapshot sections whose exact shape belongs to each service. */
export function path(obj: unknown, keys: string[]): unknown {
  let cur: unknown = obj;
  for (const k of keys) {
    if (!cur || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

export function numberAt(obj: unknown, ...candidates: string[][]): number | undefined {
  for (const keys of candidates) {
    const v = path(obj, keys);
    if (typeof v === 'number' && Number.isFinite(v)) return v;
  }
  return undefined;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}
