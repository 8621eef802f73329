/**
 * A fixed-capacity time series (ring buffer on typed arrays): 8 hours at 1 Hz is 28 800 points
 * and costs ~460 KB, pushing is O(1), and charts read a downsampled window, so the page stays
 * responsive however long it has been open.
 */
export class RingSeries {
  private readonly times: Float64Array;
  private readonly values: Float64Array;
  private start = 0;
  private length = 0;

  constructor(readonly capacity = 8 * 3600) {
    this.times = new Float64Array(capacity);
    this.values = new Float64Array(capacity);
  }

  get size(): number {
    return this.length;
  }

  push(time: number, value: number): void {
    const idx = (this.start + this.length) % this.capacity;
    this.times[idx] = time;
    this.values[idx] = value;
    if (this.length < this.capacity) this.length += 1;
    else this.start = (this.start + 1) % this.capacity;
  }

  last(): { time: number; value: number } | null {
    if (this.length === 0) return null;
    const idx = (this.start + this.length - 1) % this.capacity;
    return { time: this.times[idx] as number, value: this.values[idx] as number };
  }

  /**
   * Points with time ≥ `since`, reduced to at most `maxPoints` by averaging buckets (the last
   * point of each bucket keeps its time), oldest first.
   */
  window(since: number, maxPoints = 300): Array<{ t: number; v: number }> {
    // binary search for the first index with time >= since
    let lo = 0;
    let hi = this.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.times[(this.start + mid) % this.capacity] as number) < since) lo = mid + 1;
      else hi = mid;
    }
    const count = this.length - lo;
    if (count <= 0) return [];
    const bucket = Math.max(1, Math.ceil(count / maxPoints));
    const out: Array<{ t: number; v: number }> = [];
    for (let i = lo; i < this.length; i += bucket) {
      const end = Math.min(this.length, i + bucket);
      let sum = 0;
      for (let j = i; j < end; j++) sum += this.values[(this.start + j) % this.capacity] as number;
      out.push({ t: this.times[(this.start + end - 1) % this.capacity] as number, v: sum / (end - i) });
    }
    return out;
  }

  clear(): void {
    this.start = 0;
    this.length = 0;
  }
}

/** Merges several series' windows into rows keyed by time (for multi-line charts). */
export function mergeWindows(series: Record<string, RingSeries>, since: number, maxPoints = 300): Array<Record<string, number>> {
  const rows = new Map<number, Record<string, number>>();
  for (const [name, s] of Object.entries(series)) {
    for (const p of s.window(since, maxPoints)) {
      const row = rows.get(p.t) ?? { t: p.t };
      row[name] = p.v;
      rows.set(p.t, row);
    }
  }
  return [...rows.values()].sort((a, b) => (a.t as number) - (b.t as number));
}
