import { basename } from 'node:path';
import type { Dispatcher } from 'undici';
import { request } from 'undici';
import { AppError, ErrorCode } from '../../base/errors.js';
import { GGUF_EXT } from './paths.js';

/** A parsed `hf:` URI. */
export interface HfUri {
  kind: 'hf';
  /** `owner/repo`. */
  repo: string;
  /** Branch, tag or commit (`#rev`); default `main`. */
  revision: string;
  /** `hf:owner/repo:Q4_K_M` */
  quant?: string;
  /** `hf:owner/repo/path/to/file.gguf` */
  file?: string;
}

/** A parsed https (or loopback http) URL. */
export interface UrlUri {
  kind: 'url';
  url: string;
}

export type ModelUri = HfUri | UrlUri;

/** Where a download really comes from, after resolution. */
export interface ResolvedSource {
  url: string;
  /** Suggested file name (`x.gguf`). */
  fileName: string;
  /** Known size in bytes (HF metadata), if any. */
  sizeBytes?: number;
  /** Expected sha256 (hex, lower-case) when the source publishes one (HF LFS oid). */
  sha256?: string;
}

const NAME_PART = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;
const QUANT = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$/;
const REVISION = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$/;
const PATH_SEGMENT = /^[A-Za-z0-9_()+\- ][A-Za-z0-9._()+\- ]{0,199}$/;
const SPLIT_PART = /-\d{5}-of-\d{5}\.gguf$/i;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

function bad(message: string, field = 'uri'): AppError {
  return new AppError(ErrorCode.INVALID_REQUEST, `Invalid model URI: ${message}`, { details: [{ type: 'invalid_uri', field, description: message }] });
}

/**
 * Parses a model URI: `hf:owner/repo[:quant][#revision]`, `hf:owner/repo/path/file.gguf[#revision]`,
 * `https://…` (or `http://` to a loopback host). Throws INVALID_REQUEST naming `field`.
 */
export function parseModelUri(uri: string, field = 'uri'): ModelUri {
  if (typeof uri !== 'string' || uri.length === 0) throw bad('must be a non-empty string', field);
  if (uri.length > 2048) throw bad('must be at most 2048 characters', field);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(uri)) throw bad('must not contain control characters', field);
  if (/^hf:/i.test(uri)) return parseHf(uri.slice(3), field);
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw bad('expected hf:owner/repo[:quant], hf:owner/repo/file.gguf or an https:// URL', field);
  }
  if (url.username || url.password) throw bad('must not carry credentials', field);
  if (url.protocol === 'https:') return { kind: 'url', url: url.toString() };
  if (url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname)) return { kind: 'url', url: url.toString() };
  throw bad('only https:// URLs (or http:// to a loopback host) are downloaded', field);
}

function parseHf(rest: string, field: string): HfUri {
  let body = rest.replace(/^\/\//, '');
  let revision = 'main';
  const hash = body.indexOf('#');
  if (hash >= 0) {
    revision = body.slice(hash + 1);
    body = body.slice(0, hash);
    if (!REVISION.test(revision) || revision.includes('..')) throw bad(`bad revision '${revision}'`, field);
  }
  const parts = body.split('/');
  if (parts.length < 2) throw bad('expected hf:owner/repo[:quant] or hf:owner/repo/file.gguf', field);
  const owner = parts[0]!;
  let repoName = parts[1]!;
  let quant: string | undefined;
  if (parts.length === 2) {
    const colon = repoName.indexOf(':');
    if (colon >= 0) {
      quant = repoName.slice(colon + 1);
      repoName = repoName.slice(0, colon);
      if (!QUANT.test(quant)) throw bad(`bad quantization '${quant}'`, field);
    }
  }
  for (const part of [owner, repoName]) {
    if (!NAME_PART.test(part) || part.includes('..')) throw bad(`bad repo name part '${part}'`, field);
  }
  const uri: HfUri = { kind: 'hf', repo: `${owner}/${repoName}`, revision };
  if (quant) uri.quant = quant;
  if (parts.length > 2) {
    const segments = parts.slice(2);
    for (const s of segments) {
      if (!PATH_SEGMENT.test(s) || s === '.' || s.includes('..')) throw bad(`bad file path segment '${s}'`, field);
    }
    const file = segments.join('/');
    if (!file.toLowerCase().endsWith(GGUF_EXT)) throw bad('the file must be a .gguf', field);
    uri.file = file;
  }
  return uri;
}

/** One file of a HF repo, as `/api/models/{repo}/tree/{rev}` lists it. */
export interface HfTreeEntry {
  type: string;
  path: string;
  size?: number;
  lfs?: { oid?: string; size?: number };
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Does a file name carry the quantization tag (Q4_K matches `x-Q4_K.gguf`, not `x-Q4_K_M.gguf`)? */
export function matchesQuant(fileName: string, quant: string): boolean {
  const stem = basename(fileName).replace(/\.gguf$/i, '');
  return new RegExp(`(^|[-._ ])${escapeRegex(quant)}$|(^|[-._ ])${escapeRegex(quant)}[-. ]`, 'i').test(stem);
}

/**
 * Picks the GGUF file an `hf:` URI means from the repo's file list. An explicit file must exist;
 * a quant must match exactly one quant tag (split and mmproj files are never picked); without
 * either, a repo with one GGUF gives that one, otherwise Q4_K_M if present.
 */
export function pickHfFile(uri: HfUri, entries: readonly HfTreeEntry[]): HfTreeEntry {
  const files = entries.filter((e) => e.type === 'file' && e.path.toLowerCase().endsWith(GGUF_EXT));
  const candidates = files.filter((e) => !/mmproj/i.test(basename(e.path)));
  const available = candidates.map((e) => e.path).slice(0, 30).join(', ') || 'none';
  if (uri.file) {
    const hit = files.find((e) => e.path === uri.file);
    if (!hit) throw new AppError(ErrorCode.NOT_FOUND, `No file ${uri.file} in ${uri.repo}@${uri.revision}; GGUF files: ${available}`, { details: [{ type: 'file_not_found', field: 'uri', description: `no ${uri.file} in the repo` }] });
    if (SPLIT_PART.test(hit.path)) throw splitError(uri);
    return hit;
  }
  if (candidates.length === 0) throw new AppError(ErrorCode.NOT_FOUND, `${uri.repo}@${uri.revision} has no GGUF files`, { details: [{ type: 'file_not_found', field: 'uri', description: 'the repo has no .gguf files' }] });
  const pick = (list: HfTreeEntry[], what: string): HfTreeEntry => {
    const whole = list.filter((e) => !SPLIT_PART.test(e.path));
    if (whole.length === 0) throw splitError(uri);
    if (whole.length > 1 && what === 'any') {
      throw new AppError(ErrorCode.INVALID_REQUEST, `${uri.repo} has several GGUF files; add a quantization (hf:${uri.repo}:QUANT) or a file path. Files: ${available}`, {
        details: [{ type: 'ambiguous_uri', field: 'uri', description: 'several GGUF files; name a quantization or a file' }],
      });
    }
    return [...whole].sort((a, b) => a.path.length - b.path.length || a.path.localeCompare(b.path))[0]!;
  };
  if (uri.quant) {
    const quant = uri.quant;
    const hits = candidates.filter((e) => matchesQuant(e.path, quant));
    if (hits.length === 0) throw new AppError(ErrorCode.NOT_FOUND, `No ${quant} GGUF in ${uri.repo}@${uri.revision}; GGUF files: ${available}`, { details: [{ type: 'file_not_found', field: 'uri', description: `no file with quantization ${quant}` }] });
    return pick(hits, 'quant');
  }
  if (candidates.length === 1) return pick(candidates, 'any');
  const preferred = candidates.filter((e) => matchesQuant(e.path, 'Q4_K_M'));
  return pick(preferred.length > 0 ? preferred : candidates, preferred.length > 0 ? 'quant' : 'any');
}

function splitError(uri: HfUri): AppError {
  return new AppError(ErrorCode.INVALID_REQUEST, `${uri.repo}: split GGUF files (-00001-of-0000N) are not supported; pick a single-file quantization`, {
    details: [{ type: 'unsupported', field: 'uri', description: 'split GGUF files are not supported' }],
  });
}

export interface ResolveOptions {
  /** Hugging Face endpoint, e.g. `https://huggingface.co`. */
  endpoint: string;
  token?: string;
  dispatcher: Dispatcher;
  signal?: AbortSignal;
  userAgent: string;
}

function joinUrl(endpoint: string, path: string): string {
  return `${endpoint.replace(/\/+$/, '')}${path}`;
}

function encodePath(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}

/** Next page of a paginated HF listing (`Link: <…>; rel="next"`). */
function nextLink(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header.join(',') : header;
  if (!value) return undefined;
  const m = /<([^>]+)>\s*;\s*rel="?next"?/i.exec(value);
  return m?.[1];
}

/** Lists a HF repo's files through `/api/models/{repo}/tree/{revision}?recursive=true`. */
export async function listHfFiles(uri: HfUri, options: ResolveOptions): Promise<HfTreeEntry[]> {
  const entries: HfTreeEntry[] = [];
  let url: string | undefined = joinUrl(options.endpoint, `/api/models/${uri.repo}/tree/${encodeURIComponent(uri.revision)}?recursive=true`);
  const origin = new URL(options.endpoint).origin;
  for (let page = 0; url && page < 50; page++) {
    if (new URL(url).origin !== origin) throw new AppError(ErrorCode.UPSTREAM_ERROR, 'Hugging Face API paginated to another origin; refused');
    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, {
        dispatcher: options.dispatcher,
        signal: options.signal,
        headers: { accept: 'application/json', 'user-agent': options.userAgent, ...(options.token ? { authorization: `Bearer ${options.token}` } : {}) },
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
    } catch (err) {
      if (options.signal?.aborted) throw err;
      throw new AppError(ErrorCode.UPSTREAM_ERROR, `Cannot reach the Hugging Face API at ${options.endpoint}: ${(err as Error).message}`, { cause: err });
    }
    if (res.statusCode === 401 || res.statusCode === 403 || res.statusCode === 404) {
      await res.body.dump();
      throw new AppError(ErrorCode.NOT_FOUND, `Hugging Face repo ${uri.repo}@${uri.revision} not found or not accessible (HTTP ${res.statusCode}; gated repos need engine.library.hfToken)`, {
        details: [{ type: 'repo_not_found', field: 'uri', description: `HTTP ${res.statusCode} from the Hugging Face API` }],
      });
    }
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new AppError(ErrorCode.UPSTREAM_ERROR, `Hugging Face API answered HTTP ${res.statusCode} for ${uri.repo}`);
    }
    let json: unknown;
    try {
      json = await res.body.json();
    } catch (err) {
      throw new AppError(ErrorCode.UPSTREAM_ERROR, `Hugging Face API sent invalid JSON: ${(err as Error).message}`, { cause: err });
    }
    if (!Array.isArray(json)) throw new AppError(ErrorCode.UPSTREAM_ERROR, 'Hugging Face API: expected a list of files');
    for (const item of json as unknown[]) {
      if (item && typeof item === 'object' && typeof (item as HfTreeEntry).path === 'string' && typeof (item as HfTreeEntry).type === 'string') entries.push(item as HfTreeEntry);
    }
    const next = nextLink(res.headers.link);
    url = next ? new URL(next, url).toString() : undefined;
  }
  return entries;
}

/** Resolves a parsed URI to the URL to fetch, with size and sha256 where the source gives them. */
export async function resolveModelUri(uri: ModelUri, options: ResolveOptions): Promise<ResolvedSource> {
  if (uri.kind === 'url') {
    const path = new URL(uri.url).pathname;
    let fileName = basename(path);
    try {
      fileName = decodeURIComponent(fileName);
    } catch {
      // keep it encoded; the id check below refuses `%`
    }
    return { url: uri.url, fileName: fileName || 'model.gguf' };
  }
  const entry = pickHfFile(uri, await listHfFiles(uri, options));
  const oid = entry.lfs?.oid;
  const size = entry.lfs?.size ?? entry.size;
  return {
    url: joinUrl(options.endpoint, `/${uri.repo}/resolve/${encodeURIComponent(uri.revision)}/${encodePath(entry.path)}`),
    fileName: basename(entry.path),
    ...(typeof size === 'number' && size >= 0 ? { sizeBytes: size } : {}),
    ...(typeof oid === 'string' && /^[0-9a-f]{64}$/i.test(oid) ? { sha256: oid.toLowerCase() } : {}),
  };
}
