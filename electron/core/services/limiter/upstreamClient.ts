import type { Readable } from 'node:stream';
import { Pool, errors as undiciErrors } from 'undici';
import { AppError, ErrorCode } from '../../base/errors.js';

export interface UpstreamClientOptions {
  /** Base URL including the version path, e.g. `https://integrate.api.nvidia.com/v1`. */
  baseUrl: string;
  /** Returns the current key (hot-reloadable); empty → S2's `Bearer nvidia`. */
  apiKey: () => string;
  connectTimeoutMs: number;
  /** Wall clock (ms) for HTTP-date `Retry-After` values; the injected Clock's `now`. */
  now: () => number;
  /** Contract §6.2: at most 100 connections. */
  connections?: number;
}

export interface UpstreamRequest {
  method: 'GET' | 'POST';
  /** Path below the base URL, e.g. `/chat/completions`. */
  path: string;
  /** Client headers worth forwarding (content-type, accept, x-request-id...). Credentials are never forwarded. */
  headers: Record<string, string>;
  body?: Buffer | string;
  signal: AbortSignal;
  /** Time to first byte and max idle time between chunks. */
  timeoutMs: number;
}

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string>;
  body: Readable;
  /** Parsed `Retry-After` in seconds, when present. */
  retryAfterSeconds?: number;
}

/** Headers of the upstream response that must not be relayed (hop-by-hop, or re-framed by us). */
const DROP_RESPONSE = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-encoding', 'proxy-authenticate', 'trailer', 'upgrade']);
/** Client headers forwarded upstream (everything else, including credentials, stays here). */
const FORWARD_REQUEST = ['content-type', 'accept', 'accept-language', 'user-agent', 'x-request-id', 'openai-organization', 'openai-project'] as const;

export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const n = Number(value);
  if (Number.isFinite(n) && n >= 0) return n;
  const date = Date.parse(value);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, (date - nowMs) / 1000);
}

/** Picks the client headers that may go upstream (Node gives header names in lower case). */
export function forwardableHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of FORWARD_REQUEST) {
    const v = headers[key];
    if (v !== undefined) out[key] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

/**
 * undici keep-alive pool to one OpenAI-compatible upstream. Bodies stream through untouched;
 * transport failures become AppErrors per contract §6.9 (connect 502, timeout 504). The key is
 * only ever put in the outgoing Authorization header.
 */
export class UpstreamClient {
  private readonly pool: Pool;
  private readonly basePath: string;
  readonly origin: string;
  private closed = false;

  constructor(private readonly options: UpstreamClientOptions) {
    const url = new URL(options.baseUrl);
    this.origin = url.origin;
    this.basePath = url.pathname.replace(/\/+$/, '');
    this.pool = new Pool(this.origin, {
      connections: options.connections ?? 100,
      keepAliveTimeout: 30_000,
      connectTimeout: options.connectTimeoutMs,
    });
  }

  async request(req: UpstreamRequest): Promise<UpstreamResponse> {
    const key = this.options.apiKey();
    const headers: Record<string, string> = {
      ...req.headers,
      authorization: `Bearer ${key === '' ? 'nvidia' : key}`,
      'accept-encoding': 'identity',
    };
    try {
      const res = await this.pool.request({
        method: req.method,
        path: `${this.basePath}${req.path}`,
        headers,
        body: req.body,
        signal: req.signal,
        headersTimeout: req.timeoutMs,
        bodyTimeout: req.timeoutMs,
      });
      const out: Record<string, string> = {};
      for (const k in res.headers) {
        const v = res.headers[k]; // undici gives header names in lower case
        if (v === undefined || DROP_RESPONSE.has(k)) continue;
        out[k] = Array.isArray(v) ? v.join(', ') : v;
      }
      const retryAfter = parseRetryAfter(out['retry-after'], this.options.now());
      return { status: res.statusCode, headers: out, body: res.body, ...(retryAfter !== undefined ? { retryAfterSeconds: retryAfter } : {}) };
    } catch (err) {
      throw mapUpstreamError(err, req.timeoutMs);
    }
  }

  /** Readiness probe (contract §9): `GET {upstream_url}/models`, reachable if status < 500. */
  async probe(timeoutMs = 5000): Promise<boolean> {
    const ac = new AbortController();
    try {
      const res = await this.request({ method: 'GET', path: '/models', headers: { accept: 'application/json' }, signal: ac.signal, timeoutMs });
      res.body.resume();
      return res.status < 500;
    } catch {
      return false;
    } finally {
      ac.abort();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.destroy().catch(() => undefined);
  }
}

/** Socket, DNS and TLS failures: the upstream could not be reached or dropped the connection (502). */
const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENETRESET',
  'EPIPE',
  'EPROTO',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
]);
/** Timeouts, the connect timeout included (the seed's httpx.ConnectTimeout is a TimeoutException: 504). */
const TIMEOUT_CODES = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
/** OpenSSL/Node TLS error codes (certificate and handshake failures). */
const TLS_CODE = /^(?:ERR_TLS_|ERR_SSL_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_(?:GET|VERIFY|DECRYPT)_|HOSTNAME_MISMATCH)/;

/** The first error code along the `cause` chain (undici and fetch wrap the socket's error). */
function errorCodes(err: unknown): string[] {
  const out: string[] = [];
  let e = err as { code?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    if (typeof e.code === 'string') out.push(e.code);
    e = e.cause as typeof e;
  }
  return out;
}

/**
 * Contract §6.9 error matrix for transport failures, before or after the response headers:
 * timeouts (connect, headers, body, `ETIMEDOUT`) 504 `TimeoutException`; refused, reset, unreachable,
 * broken pipe, DNS and TLS failures 502 `ConnectError`; anything else 500 with the exception name.
 */
export function mapUpstreamError(err: unknown, timeoutMs: number): AppError {
  if (err instanceof AppError) return err;
  const e = err as { code?: string; name?: string; message?: string };
  if (e.name === 'AbortError' || err instanceof undiciErrors.RequestAbortedError) {
    return new AppError(ErrorCode.UNAVAILABLE, 'Client disconnected; upstream request cancelled', { type: 'ClientDisconnected', cause: err });
  }
  const codes = errorCodes(err);
  const detail = (code: string) => `${code}${e.message ? `: ${e.message}` : ''}`;
  const timeout = codes.find((c) => TIMEOUT_CODES.has(c));
  if (timeout) {
    const what = timeout === 'UND_ERR_CONNECT_TIMEOUT' ? 'no connection' : timeout === 'UND_ERR_BODY_TIMEOUT' ? 'the body stalled' : 'no response';
    return new AppError(ErrorCode.TIMEOUT, `Gateway Timeout — 上游超时 (${what} within ${timeoutMs / 1000}s; ${detail(timeout)})`, { type: 'TimeoutException', cause: err });
  }
  const connect = codes.find((c) => CONNECT_CODES.has(c) || TLS_CODE.test(c));
  if (connect) {
    return new AppError(ErrorCode.UPSTREAM_ERROR, `Bad Gateway — 上游连接失败 (${detail(connect)})`, { type: 'ConnectError', cause: err });
  }
  return new AppError(ErrorCode.INTERNAL_ERROR, `Internal Server Error — ${e.name ?? 'Error'}`, { cause: err });
}

/** Reads a whole (small) upstream body; a failure mid-body becomes the §6.9 error. */
export async function readUpstreamBody(body: Readable, timeoutMs: number): Promise<Buffer> {
  try {
    // undici's body reads itself whole without an async iterator (the proxy's hot path).
    const whole = body as Readable & { arrayBuffer?: () => Promise<ArrayBuffer> };
    if (typeof whole.arrayBuffer === 'function') return Buffer.from(await whole.arrayBuffer());
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  } catch (err) {
    throw mapUpstreamError(err, timeoutMs);
  }
}
