import { describe, expect, it } from 'vitest';
import { LiveStream, type EventSourceLike, type SocketLike } from '../../../shared/client/liveStream.js';
import type { ConsoleSnapshot, ConsoleLogRecord } from '../../../shared/contracts/console.js';
import { FakeTimers, snapshot } from './fakes.js';

class FakeSocket implements SocketLike {
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: unknown) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  sent: string[] = [];
  closed = false;
  constructor(readonly url: string) {}
  send(d: string) {
    this.sent.push(d);
  }
  close() {
    this.closed = true;
  }
  open() {
    this.onopen?.({});
  }
  deliver(msg: unknown) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
  drop() {
    this.onclose?.({});
  }
}

function setup(opts: { sse?: boolean } = {}) {
  const timers = new FakeTimers();
  const sockets: FakeSocket[] = [];
  const sources: Array<EventSourceLike & { url: string }> = [];
  const stream = new LiveStream({
    baseUrl: 'http://127.0.0.1:9',
    token: 'tok',
    timers,
    createSocket: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    createEventSource: opts.sse
      ? (url) => {
          const s = { url, onopen: null, onmessage: null, onerror: null, close: () => undefined };
          sources.push(s);
          return s;
        }
      : undefined,
    backoffMs: { first: 500, max: 4000 },
  });
  const snaps: ConsoleSnapshot[] = [];
  const statuses: string[] = [];
  stream.onSnapshot((s) => snaps.push(s));
  stream.onStatus((s) => statuses.push(s));
  return { timers, sockets, sources, stream, snaps, statuses };
}

describe('LiveStream', () => {
  it('connects over WebSocket with the token and delivers snapshots', () => {
    const { stream, sockets, snaps, statuses } = setup();
    stream.start();
    expect(sockets[0]?.url).toBe('ws://127.0.0.1:9/api/console/stream?token=tok');
    sockets[0]?.open();
    sockets[0]?.deliver({ type: 'snapshot', data: snapshot(1000) });
    expect(snaps.map((s) => s.time)).toEqual([1000]);
    expect(stream.getStatus()).toBe('open');
    expect(statuses).toEqual(['connecting', 'open']);
    stream.stop();
  });

  it('reconnects with growing back-off after the core goes away, then recovers', () => {
    const { stream, sockets, timers, statuses } = setup();
    stream.start();
    sockets[0]?.open();
    sockets[0]?.deliver({ type: 'snapshot', data: snapshot(1) });
    sockets[0]?.drop();
    expect(stream.getStatus()).toBe('disconnected');
    timers.advance(499);
    expect(sockets).toHaveLength(1);
    timers.advance(1);
    expect(sockets).toHaveLength(2);
    sockets[1]?.drop(); // refused again
    timers.advance(999);
    expect(sockets).toHaveLength(2);
    timers.advance(1);
    expect(sockets).toHaveLength(3);
    sockets[2]?.open();
    sockets[2]?.deliver({ type: 'snapshot', data: snapshot(2) });
    expect(stream.getStatus()).toBe('open');
    expect(statuses).toEqual(['connecting', 'open', 'disconnected', 'open']);
    stream.stop();
  });

  it('treats a silent connection as dead', () => {
    const { stream, sockets, timers } = setup();
    stream.start();
    sockets[0]?.open();
    sockets[0]?.deliver({ type: 'snapshot', data: snapshot(1) });
    timers.advance(4999);
    expect(stream.getStatus()).toBe('open');
    timers.advance(1);
    expect(stream.getStatus()).toBe('disconnected');
    expect(sockets[0]?.closed).toBe(true);
    stream.stop();
    expect(timers.pending()).toBe(0);
  });

  it('falls back to SSE when WebSocket never opens', () => {
    const { stream, sockets, sources, timers } = setup({ sse: true });
    stream.start();
    for (let i = 0; i < 3; i++) {
      sockets[i]?.drop();
      timers.advance(5000);
    }
    expect(stream.getTransport()).toBe('sse');
    expect(sources[0]?.url).toBe('http://127.0.0.1:9/api/console/stream/sse?token=tok');
    stream.stop();
  });

  it('sends the log filter when subscribed and delivers records', () => {
    const { stream, sockets } = setup();
    const got: ConsoleLogRecord[][] = [];
    const backlogs: boolean[] = [];
    stream.onLogs((r, b) => {
      got.push(r);
      backlogs.push(b);
    });
    stream.start();
    sockets[0]?.open();
    stream.subscribeLogs({ module: 'http', level: 'warn' });
    expect(sockets[0]?.sent.map((s) => JSON.parse(s) as unknown)).toContainEqual({ type: 'logs', filter: { module: 'http', level: 'warn' } });
    sockets[0]?.deliver({ type: 'logs', records: [{ time: 1, level: 'warn', module: 'http', msg: 'x' }], backlog: true });
    expect(got).toHaveLength(1);
    expect(backlogs).toEqual([true]);
    stream.subscribeLogs(null);
    expect(JSON.parse(sockets[0]?.sent.at(-1) ?? '{}')).toEqual({ type: 'logs-off' });
    stream.stop();
  });
});
