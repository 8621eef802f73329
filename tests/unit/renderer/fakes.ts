import type { ConsoleSnapshot } from '../../../shared/contracts/console.js';
import type { FetchLike } from '../../../shared/client/consoleClient.js';

/** A fetch that answers from a route table: `'GET /path' → (body) => [status, json]`. */
export function fakeFetch(routes: Record<string, (body: unknown, url: string) => [number, unknown] | Response>): FetchLike & { calls: Array<{ method: string; url: string; body: unknown; headers: Record<string, string> }> } {
  const calls: Array<{ method: string; url: string; body: unknown; headers: Record<string, string> }> = [];
  const fn = async (url: string, init?: RequestInit) => {
    const method = init?.method ?? 'GET';
    const path = new URL(url, 'http://x').pathname;
    const body = typeof init?.body === 'string' ? (JSON.parse(init.body) as unknown) : undefined;
    calls.push({ method, url, body, headers: (init?.headers ?? {}) as Record<string, string> });
    const handler = routes[`${method} ${path}`];
    if (!handler) return new Response(JSON.stringify({ error: { code: 'NOT_FOUND', message: `No route: ${method} ${path}` } }), { status: 404, headers: { 'content-type': 'application/json' } });
    const out = handler(body, url);
    if (out instanceof Response) return out;
    const [status, json] = out;
    return new Response(JSON.stringify(json), { status, headers: { 'content-type': 'application/json' } });
  };
  return Object.assign(fn, { calls });
}

/** An SSE response whose frames are the given data payloads. */
export function sseResponse(payloads: string[]): Response {
  const enc = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      // split frames across chunk boundaries on purpose
      const text = payloads.map((p) => `data: ${p}\n\n`).join('');
      for (let i = 0; i < text.length; i += 7) controller.enqueue(enc.encode(text.slice(i, i + 7)));
      controller.close();
    },
  });
  return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
}

export function snapshot(time: number, patch: Partial<ConsoleSnapshot> = {}): ConsoleSnapshot {
  return {
    time,
    seq: 1,
    core: {
      uptimeSeconds: 1,
      requestsPerSecond: 2,
      processCpuPercent: 3,
      rssBytes: 100,
      heapUsedBytes: 50,
      eventLoopLagMs: 1,
      systemCpuPercent: 40,
      systemMemUsedBytes: 50,
      systemMemTotalBytes: 100,
      viewers: 1,
      version: '0.1.0',
    },
    services: {},
    ...patch,
  };
}

/** Manually driven timers for LiveStream. */
export class FakeTimers {
  t = 0;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  setTimeout = (fn: () => void, ms: number) => {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  };
  clearTimeout = (h: unknown) => {
    this.timers.delete(h as number);
  };
  now = () => this.t;
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = [...this.timers.entries()].filter(([, v]) => v.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
    }
    this.t = end;
  }
  pending(): number {
    return this.timers.size;
  }
}
