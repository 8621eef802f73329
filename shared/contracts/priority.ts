/**
 * Request priority from the `X-Priority` header (contract §6.3), shared by the engine's and the
 * limiter's queues: URGENT=1 < HIGH=2 < NORMAL=3 < LOW=4 (smaller is served first).
 */
export const PRIORITIES = ['urgent', 'high', 'normal', 'low'] as const;
export type Priority = (typeof PRIORITIES)[number];

export const PRIORITY_RANK: Readonly<Record<Priority, number>> = { urgent: 1, high: 2, normal: 3, low: 4 };

export interface ParsedPriority {
  priority: Priority;
  /** True when a header was sent but was not one of the four levels (it falls back to `normal`). */
  invalid: boolean;
}

/** Case-insensitive and trimmed; missing or unknown → `normal`. */
export function parsePriority(header: string | readonly string[] | undefined): ParsedPriority {
  const raw = Array.isArray(header) ? header[0] : header;
  if (raw === undefined) return { priority: 'normal', invalid: false };
  const value = String(raw).trim().toLowerCase();
  if ((PRIORITIES as readonly string[]).includes(value)) return { priority: value as Priority, invalid: false };
  return { priority: 'normal', invalid: value !== '' };
}
