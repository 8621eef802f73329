import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** How the fake server serves one file's bytes. */
export type ServeMode =
  /** Everything, honouring Range. */
  | 'normal'
  /** First full request: send `dropAt` bytes then cut the connection; later requests are normal. */
  | 'drop-once'
  /** Send `dropAt` bytes then hold the connection open until `release()` (for cancel/restart tests). */
  | 'stall'
  /** Write in small chunks with pauses, so progress events are observable. */
  | 'slow';

export interface FakeFile {
  /** Path inside the repo, e.g. `tiny-Q4_K_M.gguf`. */
  path: string;
  bytes: Buffer;
  mode?: ServeMode;
  dropAt?: number;
  /** The sha256 the tree API reports (default: the real one). */
  reportedSha256?: string;
  /** The size the tree API reports (default: the real one). */
  reportedSize?: number;
  /** Answer this many byte requests with `failStatus` (default 503) before serving. */
  failTimes?: number;
  failStatus?: number;
  /** Send this Content-Length on a full GET instead of the real one, then cut the connection. */
  advertiseLength?: number;
}

export interface RecordedRequest {
  method: string;
  url: string;
  range: string | undefined;
}

/**
 * A local stand-in for the Hugging Face API and CDN on 127.0.0.1:0: `GET /api/models/{repo}/tree/{rev}`
 * lists files with LFS sha256, `GET /{repo}/resolve/{rev}/{path}` redirects to `/cdn/...` which
 * serves bytes with Range support, `GET /direct/{path}` serves a file without metadata.
 */
export class FakeHf {
  readonly requests: RecordedRequest[] = [];
  private readonly repos = new Map<string, FakeFile[]>();
  private readonly sockets = new Set<Socket>();
  private readonly stalled = new Set<ServerResponse>();
  private server: Server | undefined;
  private dropped = new Set<string>();
  url = '';

  addRepo(repo: string, files: FakeFile[]): void {
    this.repos.set(repo, files);
  }

  file(repo: string, path: string): FakeFile {
    const f = this.repos.get(repo)?.find((x) => x.path === path);
    if (!f) throw new Error(`no ${repo}/${path}`);
    return f;
  }

  async start(): Promise<string> {
    this.server = createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.url;
  }

  /** Ends stalled responses by cutting their connections. */
  release(): void {
    for (const res of this.stalled) res.destroy();
    this.stalled.clear();
  }

  async close(): Promise<void> {
    this.release();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    this.requests.push({ method: req.method ?? 'GET', url: url.pathname + url.search, range: req.headers.range });
    const tree = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(url.pathname);
    if (tree) {
      const files = this.repos.get(tree[1]!);
      if (!files) return this.json(res, 404, { error: 'Repository not found' });
      return this.json(
        res,
        200,
        files.map((f) => ({
          type: 'file',
          oid: createHash('sha1').update(f.bytes).digest('hex'),
          size: f.reportedSize ?? f.bytes.length,
          path: f.path,
          lfs: { oid: f.reportedSha256 ?? createHash('sha256').update(f.bytes).digest('hex'), size: f.reportedSize ?? f.bytes.length, pointerSize: 134 },
        })),
      );
    }
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (resolve) {
      res.writeHead(302, { location: `/cdn/${resolve[1]}/${resolve[3]}` });
      return void res.end();
    }
    const cdn = /^\/cdn\/([^/]+\/[^/]+)\/(.+)$/.exec(url.pathname);
    if (cdn) {
      const f = this.repos.get(cdn[1]!)?.find((x) => x.path === decodeURIComponent(cdn[2]!));
      if (!f) return this.json(res, 404, { error: 'not found' });
      return this.serve(req, res, f, `${cdn[1]}/${f.path}`);
    }
    const direct = /^\/direct\/(.+)$/.exec(url.pathname);
    if (direct) {
      for (const [repo, files] of this.repos) {
        const f = files.find((x) => x.path === decodeURIComponent(direct[1]!));
        if (f) return this.serve(req, res, f, `${repo}/${f.path}`);
      }
    }
    this.json(res, 404, { error: 'not found' });
  }

  private json(res: ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  private serve(req: IncomingMessage, res: ServerResponse, f: FakeFile, key: string): void {
    if (f.failTimes !== undefined && f.failTimes > 0) {
      f.failTimes--;
      return this.json(res, f.failStatus ?? 503, { error: 'scripted failure' });
    }
    const total = f.bytes.length;
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m) {
      start = Number(m[1]);
      if (start >= total) {
        res.writeHead(416, { 'content-range': `bytes */${total}` });
        return void res.end();
      }
      res.writeHead(206, { 'content-length': total - start, 'content-range': `bytes ${start}-${total - 1}/${total}`, 'accept-ranges': 'bytes' });
    } else if (f.advertiseLength !== undefined) {
      res.writeHead(200, { 'content-length': f.advertiseLength });
      res.flushHeaders();
      setTimeout(() => res.destroy(), 50);
      return;
    } else {
      res.writeHead(200, { 'content-length': total, 'accept-ranges': 'bytes' });
    }
    const body = f.bytes.subarray(start);
    const mode = f.mode ?? 'normal';
    const dropAt = Math.max(0, (f.dropAt ?? Math.floor(total / 2)) - start);
    if (mode === 'drop-once' && !this.dropped.has(key) && dropAt > 0 && dropAt < body.length) {
      this.dropped.add(key);
      res.write(body.subarray(0, dropAt), () => setTimeout(() => res.destroy(), 20));
      return;
    }
    if (mode === 'stall' && dropAt > 0 && dropAt < body.length) {
      res.write(body.subarray(0, dropAt));
      this.stalled.add(res);
      res.on('close', () => this.stalled.delete(res));
      return;
    }
    if (mode === 'slow') {
      const chunk = Math.max(1, Math.ceil(body.length / 32));
      let offset = 0;
      const next = () => {
        if (res.destroyed) return;
        if (offset >= body.length) return void res.end();
        const part = body.subarray(offset, offset + chunk);
        offset += part.length;
        res.write(part, () => setTimeout(next, 40));
      };
      return next();
    }
    res.end(body);
  }
}
