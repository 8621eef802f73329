import { connect } from 'node:net';
import { Agent, request } from 'undici';

/** Result of one health probe. */
export interface ProbeResult {
  accessible: boolean;
  /** HTTP status of the health URL (absent for a TCP check). */
  statusCode?: number | null;
  error?: string;
}

/**
 * Probes supervised processes: GET of a health URL with undici (healthy when the status is
 * < 500), or a TCP connect to a port. Owns its connection pool, closed by `close()`.
 */
export class HealthProbe {
  private agent: Agent | null = null;

  constructor(private readonly timeoutMs = 1000) {}

  async http(url: string): Promise<ProbeResult> {
    this.agent ??= new Agent({ keepAliveTimeout: 1000, connections: 4, connectTimeout: this.timeoutMs });
    try {
      const res = await request(url, {
        method: 'GET',
        dispatcher: this.agent,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
        signal: AbortSignal.timeout(this.timeoutMs * 2),
      });
      await res.body.dump();
      return { accessible: res.statusCode < 500, statusCode: res.statusCode };
    } catch (err) {
      return { accessible: false, statusCode: null, error: (err as Error).message };
    }
  }

  tcp(port: number, host = '127.0.0.1'): Promise<ProbeResult> {
    return new Promise((resolve) => {
      const socket = connect({ port, host });
      const done = (result: ProbeResult) => {
        socket.destroy();
        resolve(result);
      };
      socket.setTimeout(this.timeoutMs, () => done({ accessible: false, error: 'timeout' }));
      socket.once('connect', () => done({ accessible: true }));
      socket.once('error', (err) => done({ accessible: false, error: err.message }));
    });
  }

  async close(): Promise<void> {
    const agent = this.agent;
    this.agent = null;
    if (agent) await agent.close();
  }
}
