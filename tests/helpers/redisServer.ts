import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Why Redis tests are skipped here, or null when `redis-server` is installed. */
export function redisMissingReason(): string | null {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  return r.error || r.status !== 0 ? 'redis-server is not installed (apt-get install redis-server; .ci/run does it)' : null;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let buf = '';
    s.setTimeout(500, () => (s.destroy(), resolve(false)));
    s.on('error', () => resolve(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('PONG')) {
        s.destroy();
        resolve(true);
      }
    });
  });
}

/**
 * A throwaway redis-server on a free port, for tests: without persistence by default, or
 * (`persistent`) with an append-only file fsynced on every write in a temporary folder, as the
 * docs set it up, so a restart keeps the data (a short outage, not a loss).
 */
export class TestRedis {
  private child: ChildProcess | null = null;
  private constructor(
    readonly port: number,
    private readonly dataDir: string | null,
  ) {}

  static async start(options: { persistent?: boolean } = {}): Promise<TestRedis> {
    const r = new TestRedis(await freePort(), options.persistent ? mkdtempSync(join(tmpdir(), 'test-redis-')) : null);
    await r.restart();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** (Re)starts the server on the same port; its data is gone unless it is `persistent`. */
  async restart(): Promise<void> {
    if (this.child) await this.stop();
    const persistence = this.dataDir === null ? ['--appendonly', 'no'] : ['--dir', this.dataDir, '--appendonly', 'yes', '--appendfsync', 'always'];
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', ...persistence], { stdio: 'ignore' });
    this.child = child;
    for (let i = 0; i < 100; i++) {
      if (await ping(this.port)) return;
      if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('redis-server did not answer PING');
  }

  /** Stops the server and removes its data (persistent only). */
  async destroy(): Promise<void> {
    await this.stop();
    if (this.dataDir !== null) rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** Kills the server (SIGKILL: like a crash). */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }
}
