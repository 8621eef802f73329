/**
 * Seeded fuzz over every HTTP route in the console's route table and every gRPC method: wrong types,
 * missing and extra fields, huge and deeply nested bodies, bad UTF-8, path tricks in ids. Asserts
 * never a 5xx (or INTERNAL/UNKNOWN), the route family's error envelope every time, the console still
 * answers /health, and refused requests change no data.
 *
 * Seed: FUZZ_SEED (default below), printed at start; FUZZ_BUDGET_MS bounds the HTTP phase.
 */
import { request as httpRequest } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpRouteInfo } from '../../electron/core/server/http/httpServer.js';
import { familyOf, type ErrorFamily } from '../../electron/core/server/http/errorEnvelope.js';
import { aiServiceProtoPath } from '../../electron/core/server/grpc/aiService.js';
import { trainingProtoPath } from '../../electron/core/server/grpc/trainingService.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { prng } from '../../electron/core/base/prng.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261205) >>> 0;
const HTTP_BUDGET_MS = Number(process.env.FUZZ_BUDGET_MS ?? 30_000);
/** Passes over the route table; each draws fresh tricks and values from the seeded generator. */
const ROUNDS = Math.max(1, Number(process.env.FUZZ_ROUNDS ?? 2));

const rand = prng(SEED);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const shuffle = <T>(xs: T[]): T[] => {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
};

/** Path segments that try to leave their folder or confuse decoding (already URL-encoded where needed). */
const PATH_TRICKS = [
  '..',
  '..%2F..%2F..%2Fetc%2Fpasswd',
  '%2e%2e',
  '%2e%2e%2f%2e%2e%2fconsole.db',
  '%2Fetc%2Fpasswd',
  'C%3A%5CWindows%5Cwin.ini',
  '..%5C..%5Cconsole.db',
  'a%00b',
  '%00',
  '%ff%fe',
  '%c0%ae%c0%ae',
  'x'.repeat(600),
  '%20',
  "'%3B%20DROP%20TABLE%20training_jobs%3B--",
  '%24(id)',
  '%E2%80%AE',
  'admin-token',
  '..%2Fadmin-token',
];

/** Values of the wrong type for a schema type (none of them coerces under ajv's coerceTypes: 'array'). */
function wrongValue(type: string | undefined): unknown {
  switch (type) {
    case 'string':
      return pick([{ nested: { deep: true } }, [{}], null]);
    case 'integer':
    case 'number':
      return pick(['not-a-number', { n: 1 }, 'Infinity', [{}], 1e300, -1e300]);
    case 'boolean':
      return pick([{ b: true }, 'maybe', 2]);
    case 'array':
      return pick(['not-an-array', { a: 1 }, 7]);
    case 'object':
      return pick(['not-an-object', 42, [1, 2, 3]]);
    default:
      return pick([{ x: 1 }, 'str', 12345, null]);
  }
}

interface JsonSchemaLike {
  type?: string | string[];
  properties?: Record<string, JsonSchemaLike>;
  required?: string[];
  additionalProperties?: boolean | JsonSchemaLike;
  items?: JsonSchemaLike;
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchemaLike[];
  minimum?: number;
  minLength?: number;
  default?: unknown;
}

/** A plausible value for a schema (used as the skeleton that one mutation then breaks). */
function sample(s: JsonSchemaLike | undefined, depth = 0): unknown {
  if (!s || depth > 4) return 'x';
  if (s.const !== undefined) return s.const;
  if (s.enum) return s.enum[0];
  if (s.anyOf && s.anyOf.length > 0) return sample(s.anyOf[0], depth + 1);
  const type = Array.isArray(s.type) ? s.type[0] : s.type;
  switch (type) {
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(s.properties ?? {})) if (s.required?.includes(k)) out[k] = sample(v, depth + 1);
      return out;
    }
    case 'array':
      return [];
    case 'string':
      return 'fuzz-x'.padEnd(Math.max(6, s.minLength ?? 0), 'x');
    case 'integer':
    case 'number':
      return s.minimum ?? 1;
    case 'boolean':
      return false;
    default:
      return 'x';
  }
}

interface BodyCase {
  label: string;
  body: string | Buffer;
  contentType?: string;
}

function deepNest(depth: number): string {
  return `{"a":${'['.repeat(depth)}${']'.repeat(depth)}}`;
}
function deepObject(depth: number): string {
  return `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
}

/** Invalid bodies for a route: schema-driven mutations plus generic garbage. */
function bodyCases(schema: JsonSchemaLike | undefined, includeHuge: boolean): BodyCase[] {
  const json = (label: string, v: unknown): BodyCase => ({ label, body: JSON.stringify(v) });
  const cases: BodyCase[] = [
    { label: 'truncated JSON', body: '{"a": ' },
    { label: 'bad UTF-8 bytes', body: Buffer.from([0x7b, 0x22, 0x6d, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0xc0, 0xaf, 0x22, 0x7d]) },
    { label: 'bad UTF-8 key', body: Buffer.concat([Buffer.from('{"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('":1}')]) },
    json('array body', [1, 2, 3]),
    json('string body', 'just a string'),
    json('number body', 42),
    { label: 'null body', body: 'null' },
    { label: 'empty JSON body', body: '' },
    { label: 'deeply nested arrays', body: deepNest(pick([2_000, 20_000])) },
    { label: 'deeply nested objects', body: deepObject(pick([1_000, 10_000])) },
    { label: 'text/plain', body: 'hello', contentType: 'text/plain' },
    { label: 'form', body: 'a=1&b=2', contentType: 'application/x-www-form-urlencoded' },
    { label: 'multipart on a JSON route', body: '--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--\r\n', contentType: 'multipart/form-data; boundary=x' },
    { label: 'proto pollution', body: '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}' },
  ];
  if (includeHuge) cases.push({ label: 'huge body (> bodyLimit)', body: `{"a":"${'x'.repeat(9 * 1024 * 1024)}"}` });
  const type = schema ? (Array.isArray(schema.type) ? schema.type[0] : schema.type) : undefined;
  if (schema && type === 'object') {
    const skeleton = sample(schema) as Record<string, unknown>;
    const props = Object.entries(schema.properties ?? {});
    for (const [k, v] of props) {
      const t = Array.isArray(v.type) ? v.type[0] : v.type;
      if (!v.anyOf) cases.push(json(`wrong type ${k}`, { ...skeleton, [k]: wrongValue(t) }));
      // JSON.parse turns 1e999 into Infinity: a number no JSON.stringify can write, so spliced in as text.
      if (t === 'integer' || t === 'number') cases.push({ label: `1e999 in ${k}`, body: JSON.stringify({ ...skeleton, [k]: '__INF__' }).replace('"__INF__"', pick(['1e999', '-1e999'])) });
    }
    for (const r of schema.required ?? []) {
      const { [r]: _drop, ...rest } = skeleton;
      cases.push(json(`missing ${r}`, rest));
    }
    if (schema.additionalProperties === false) cases.push(json('extra field', { ...skeleton, fuzzExtra: 'nope' }));
    const strProp = props.find(([k, v]) => v.type === 'string' && (schema.required ?? []).includes(k));
    if (strProp) {
      // Path tricks inside string fields (paths, ids, names), with one broken field so it stays invalid.
      const broken = (schema.required ?? []).length > 1 ? (schema.required ?? []).find((r) => r !== strProp[0]) : undefined;
      for (const trick of ['../../../../etc/passwd', '/etc/passwd', 'a\u0000b', '..\\..\\console.db', `${'x'.repeat(100_000)}`]) {
        const v: Record<string, unknown> = { ...skeleton, [strProp[0]]: trick };
        if (broken) v[broken] = wrongValue((schema.properties?.[broken]?.type as string | undefined) ?? undefined);
        else if (schema.additionalProperties === false) v.fuzzExtra = 1;
        else continue;
        cases.push(json(`path trick in ${strProp[0]}`, v));
      }
    }
  }
  return cases;
}

/** Multipart uploads with hostile file names and broken framing (for routes that take uploads). */
function multipartCases(): BodyCase[] {
  const part = (filename: string, content: string, boundary = 'fuzzb') =>
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n${content}\r\n--${boundary}--\r\n`;
  const ct = 'multipart/form-data; boundary=fuzzb';
  return [
    ...['../../../../tmp/fuzz-escape.jsonl', '/etc/passwd', '..\\..\\console.db', 'a\u0000b.jsonl', '%2e%2e%2fx.jsonl', '.', '', 'console.db'].map((f) => ({
      label: `upload named ${JSON.stringify(f)}`,
      body: part(f, '{"text": 1}\n{broken'),
      contentType: ct,
    })),
    { label: 'multipart without a closing boundary', body: '--fuzzb\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\nabc', contentType: ct },
    { label: 'multipart with no boundary parameter', body: part('a.jsonl', 'x'), contentType: 'multipart/form-data' },
    { label: 'multipart with a mismatched boundary', body: part('a.jsonl', 'x', 'other'), contentType: ct },
    { label: 'multipart, 17 MiB file (over the file limit)', body: part('big.jsonl', 'x'.repeat(17 * 1024 * 1024)), contentType: ct },
  ];
}

/** Query strings with wrong types for each declared query field. */
function queryCases(schema: JsonSchemaLike | undefined): string[] {
  const out = ['?%ff%fe=%c0', '?a=1&a=2&a=3', `?${'k'.repeat(5000)}=1`, '?__proto__[x]=1'];
  for (const [k, v] of Object.entries(schema?.properties ?? {})) {
    const t = Array.isArray(v.type) ? v.type[0] : v.type;
    const bads = t === 'integer' || t === 'number' ? ['abc', '1e999', '1e300', '-1e300', '-99999999999999999999', 'NaN', '%00', '0x10'] : t === 'boolean' ? ['perhaps', '%00'] : ['%00', '..%2F..%2Fetc%2Fpasswd', '%ff', 'x'.repeat(10_000)];
    for (const bad of bads) out.push(`?${encodeURIComponent(k)}=${bad}`);
    out.push(`?${encodeURIComponent(k)}=${pick(bads)}&${encodeURIComponent(k)}=${pick(bads)}`);
  }
  return out;
}

/**
 * Found by the fuzz and not fixed here (named in the output, so they stay visible): the request is
 * skipped. Remove an entry once fixed.
 */
const KNOWN_ISSUES: Array<[string, RegExp, string, string]> = [];

/** Routes that would do real work or change state with no input to validate; named in the output. */
const SKIP: Array<[string, RegExp, string]> = [
  ['POST', /^\/api\/runtime\/(start|stop)$/, 'starts/stops the gateway'],
  ['POST', /^\/api\/v1\/monitoring\/monitor\/(start|stop)$/, 'starts/stops the monitor loop'],
  ['POST', /^\/metrics\/reset$/, 'resets metrics'],
  ['POST', /^\/api\/limiter\/admin\/reset$/, 'resets the limiter'],
  ['POST', /^\/api\/console\/config\/reload$/, 're-reads config.json'],
  ['POST', /^\/api\/v1\/monitoring\/heartbeat\/cleanup$/, 'cleans heartbeats'],
  ['POST', /^\/api\/v1\/monitoring\/timeout\/check$/, 'runs timeout recovery'],
  ['GET', /stream|\/events$/, 'long-lived stream (SSE)'],
];

/** The dashboard's static pages (SPA routes, assets), as opposed to the API. */
function isDashboardPage(url: string): boolean {
  return !/^\/(api|v1|health|env|loglevel|run_script|threads|metrics|periodic-threads)(\/|$|-)/.test(url);
}

function envelopeProblem(family: ErrorFamily, contentType: string, text: string): string | null {
  if (family === 'ops-text') return /^text\/plain/.test(contentType) && text.length > 0 ? null : `expected text/plain error, got ${contentType}: ${text.slice(0, 200)}`;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return `expected JSON (${family}), got ${contentType}: ${text.slice(0, 200)}`;
  }
  const b = (body ?? {}) as { error?: unknown; detail?: unknown };
  const e = (typeof b.error === 'object' && b.error !== null ? b.error : {}) as { code?: unknown; message?: unknown; type?: unknown };
  switch (family) {
    case 'engine':
      return typeof e.code === 'string' && typeof e.message === 'string' ? null : `not an engine envelope: ${text.slice(0, 200)}`;
    case 'openai':
      return typeof e.message === 'string' && typeof e.type === 'string' ? null : `not an openai envelope: ${text.slice(0, 200)}`;
    case 'detail':
      return typeof b.detail === 'string' ? null : `not a detail envelope: ${text.slice(0, 200)}`;
    case 'ops-json':
      return typeof b.error === 'string' ? null : `not an ops-json envelope: ${text.slice(0, 200)}`;
  }
  return null;
}

/**
 * Sends the path exactly as given (like `curl --path-as-is`): fetch would resolve `..` segments on
 * the client and hit another route instead of testing the server's handling of them.
 */
function rawRequest(base: string, method: string, path: string, headers: Record<string, string>, body?: string | Buffer): Promise<{ status: number; contentType: string; text: string }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ agent: false, host: u.hostname, port: u.port, method, path, headers: body !== undefined ? { ...headers, 'content-length': String(Buffer.byteLength(body)) } : headers, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

/** List endpoints compared before and after; volatile fields (times, counters of the fuzz itself) dropped. */
const SNAPSHOT_URLS = [
  '/api/v1/training/list',
  '/api/v1/training/datasets',
  '/api/v1/monitoring/heartbeat/all',
  '/api/v1/monitoring/gpu-lock/status',
  '/api/v1/library/files',
  '/api/v1/library/downloads',
  '/api/console/config',
  '/api/console/audit',
  '/api/runtime/processes',
  '/api/v1/models',
  '/loglevel',
  '/api/admin/config',
];
const VOLATILE = /time|_at$|At$|ago|uptime|elapsed|remaining|now|ts$|timestamp|expires|age|last_check/i;
function stable(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stable);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(([k]) => !VOLATILE.test(k)).map(([k, x]) => [k, stable(x)]));
  return v;
}

describe(`fuzz (seed ${SEED}; FUZZ_SEED=<n> to change)`, () => {
  let c: TestConsole;
  beforeAll(async () => {
    process.stdout.write(`fuzz seed ${SEED} (set FUZZ_SEED to replay another)\n`);
    c = await startConsole({ config: { engine: { gpu: 'false' } } });
  });
  afterAll(async () => {
    await c?.close();
  });

  async function snapshot(): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = {};
    for (const u of SNAPSHOT_URLS) {
      const r = await fetch(`${c.url}${u}`, { headers: c.admin });
      const text = await r.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        /* text */
      }
      out[u] = { status: r.status, body: stable(body) };
    }
    return out;
  }

  it('every HTTP route: no 5xx, the family envelope on every error, no data changed, /health still answers', async () => {
    const routes = c.console.http
      .routes()
      .filter((r) => r.method !== 'HEAD' && r.method !== 'OPTIONS' && !r.websocket)
      .filter((r, i, all) => all.findIndex((o) => o.method === r.method && o.url === r.url) === i);
    expect(routes.length).toBeGreaterThan(50);
    const skipped: string[] = [];
    const runnable: HttpRouteInfo[] = [];
    for (const r of routes) {
      const s = SKIP.find(([m, re]) => m === r.method && re.test(r.url));
      if (s) skipped.push(`${r.method} ${r.url} (${s[2]})`);
      else runnable.push(r);
    }
    process.stdout.write(`fuzz: ${runnable.length} routes, ${skipped.length} skipped:\n  ${skipped.join('\n  ')}\n`);

    const failures: string[] = [];
    const accepted: string[] = [];
    const knownSkipped = new Set<string>();
    let sent = 0;
    const deadline = Date.now() + HTTP_BUDGET_MS;
    const hugeFor = new Set(shuffle(runnable.filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.url}`)).slice(0, 4));

    const send = async (r: HttpRouteInfo, path: string, init: { body?: string | Buffer; contentType?: string; auth?: boolean }, label: string) => {
      const known = KNOWN_ISSUES.find(([m, re, l]) => m === r.method && re.test(r.url) && l === label);
      if (known) {
        knownSkipped.add(`${r.method} ${r.url} [${label}]: ${known[3]}`);
        return;
      }
      const headers: Record<string, string> = {};
      if (init.auth !== false) Object.assign(headers, c.admin);
      if (init.body !== undefined) headers['content-type'] = init.contentType ?? 'application/json';
      let res: { status: number; contentType: string; text: string };
      try {
        res = await rawRequest(c.url, r.method, path, headers, init.body);
      } catch (err) {
        // A body over the limit may be answered (413) and the socket closed while we still write.
        if (init.body && init.body.length > 8 * 1024 * 1024 && /EPIPE|ECONNRESET/.test((err as Error).message)) return;
        failures.push(`${r.method} ${path} [${label}]: no answer (${(err as Error).message})`);
        return;
      }
      sent++;
      const text = res.text;
      if (isDashboardPage(r.url)) {
        // The dashboard's pages and assets are not API routes: no envelope, but never a 5xx
        // (except the deliberate 503 page of a checkout whose dashboard is not built).
        if (res.status >= 500 && !(res.status === 503 && text.includes('dashboard is not built'))) failures.push(`${r.method} ${path} [${label}]: ${res.status} ${text.slice(0, 300)}`);
        return;
      }
      if (res.status >= 500) {
        failures.push(`${r.method} ${path} [${label}]: ${res.status} ${text.slice(0, 300)}`);
        return;
      }
      if (res.status === 431) return; // Node's HTTP parser: request head over 16 KiB, answered before any route (no family)
      if (res.status >= 400) {
        const configured = r.config?.errorFamily as ErrorFamily | undefined;
        const families = new Set<ErrorFamily>([familyOf(path), ...(configured ? [configured] : [])]);
        const problems = [...families].map((f) => envelopeProblem(f, res.contentType, text));
        if (problems.every((p) => p !== null)) failures.push(`${r.method} ${path} [${label}]: ${res.status} ${problems[0]}`);
      } else if (r.method !== 'GET') {
        accepted.push(`${r.method} ${path} [${label}] -> ${res.status}`);
      }
    };

    const pathFor = (url: string, trick?: string) => url.replace(/:[A-Za-z_]+/g, () => trick ?? pick(PATH_TRICKS)).replace(/\*$/, trick ?? pick(PATH_TRICKS));

    let routesDone = 0;
    let compared = 0;
    const order = Array.from({ length: ROUNDS }, () => shuffle([...runnable])).flat();
    for (const r of order) {
      if (Date.now() > deadline) break;
      routesDone++;
      const schema = r.schema ?? {};
      // Data must not change while a route refuses everything sent to it: compare the list
      // endpoints around each mutating route's batch (a batch with an accepted request is reported, not compared).
      const mutating = r.method !== 'GET';
      const acceptedBefore = accepted.length;
      const before = mutating ? await snapshot() : undefined;
      const hasParams = /[:*]/.test(r.url);
      // 1. path tricks in every id / path segment
      if (hasParams) {
        for (const trick of shuffle([...PATH_TRICKS]).slice(0, 8)) await send(r, pathFor(r.url, trick), {}, `path trick ${trick.slice(0, 30)}`);
      }
      // 2. wrong query types
      for (const q of queryCases(schema.querystring as JsonSchemaLike | undefined)) await send(r, `${pathFor(r.url)}${q}`, {}, `query ${q.slice(0, 40)}`);
      // 3. bodies (every method that can carry one)
      if (r.method !== 'GET' && r.method !== 'DELETE') {
        const cases = [
          ...bodyCases(schema.body as JsonSchemaLike | undefined, hugeFor.has(`${r.method} ${r.url}`)),
          ...(r.config?.multipart === true ? multipartCases() : []),
        ];
        const path = hasParams ? pathFor(r.url) : r.url;
        for (const bc of cases) await send(r, path, { body: bc.body, contentType: bc.contentType }, bc.label);
      }
      // 4. no credentials: the family's 401 (or an open route's answer)
      await send(r, pathFor(r.url), { auth: false }, 'no credentials');
      if (before && accepted.length === acceptedBefore) {
        compared++;
        const after = await snapshot();
        if (JSON.stringify(after) !== JSON.stringify(before)) {
          const changed = Object.keys(before).filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]));
          failures.push(`${r.method} ${r.url}: refused every request but changed ${changed.join(', ')}: ${changed.map((k) => JSON.stringify(after[k]).slice(0, 300)).join(' | ')}`);
        }
      }
    }

    if (knownSkipped.size > 0) process.stdout.write(`fuzz: KNOWN ISSUES, not sent:\n  ${[...knownSkipped].join('\n  ')}\n`);
    const health = await fetch(`${c.url}/health`);
    expect(health.status).toBe(200);
    process.stdout.write(`fuzz: ${routesDone}/${order.length} route passes (${ROUNDS} rounds), ${sent} HTTP requests, data compared around ${compared} mutating routes; ${accepted.length} non-GET answered 2xx/3xx${accepted.length ? `:\n  ${accepted.slice(0, 30).join('\n  ')}` : ''}\n`);
    expect(routesDone, 'the time budget ran out before every route was fuzzed').toBeGreaterThanOrEqual(runnable.length);
    expect(failures, failures.slice(0, 40).join('\n')).toEqual([]);
  }, 120_000);

  describe('what the fuzz found (fixed; kept as plain regressions)', () => {
    it('a JSON body nested 20 000 deep is a 400, not a stack overflow (was 500 on PATCH /api/console/config)', async () => {
      const r = await fetch(`${c.url}/api/console/config`, { method: 'PATCH', headers: { ...c.admin, 'content-type': 'application/json' }, body: deepNest(20_000) });
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error: { message: string } }).error.message).toMatch(/nests deeper than/);
    });
    it('?limit=1e999 (coerced to Infinity) is a 400, not an SQL datatype mismatch (was 500)', async () => {
      for (const u of ['/api/console/audit?limit=1e999', '/api/v1/training/list?offset=1e999', '/api/v1/training/list?offset=1e300']) {
        const r = await fetch(`${c.url}${u}`, { headers: c.admin });
        expect({ u, status: r.status }).toEqual({ u, status: 400 });
      }
    });
    it('a malformed multipart body (no boundary, no closing boundary) is a 400 (was 500)', async () => {
      const body = '--b\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\nabc';
      for (const [u, ct, family] of [
        ['/api/v1/training/datasets', 'multipart/form-data', 'engine'],
        ['/run_script', 'multipart/form-data', 'ops-text'],
        ['/run_script', 'multipart/form-data; boundary=b', 'ops-text'],
      ] as const) {
        const r = await rawRequest(c.url, 'POST', u, { ...c.admin, 'content-type': ct }, body);
        expect({ u, ct, status: r.status, problem: envelopeProblem(family, r.contentType, r.text) }).toEqual({ u, ct, status: 400, problem: null });
      }
    });
    it('a URL that does not decode (%c0%ae) answers in the family envelope (was Fastify\'s own shape)', async () => {
      const r = await rawRequest(c.url, 'GET', '/api/v1/training/status/%c0%ae%c0%ae', c.admin);
      expect(r.status).toBe(400);
      expect(envelopeProblem('engine', r.contentType, r.text)).toBeNull();
      const d = await rawRequest(c.url, 'GET', '/api/runtime/processes/%ff', c.admin);
      expect(envelopeProblem('detail', d.contentType, d.text)).toBeNull();
    });
  });

  describe('gRPC', () => {
    interface Method {
      service: string;
      name: string;
      path: string;
      responseStream: boolean;
      serialize: (value: unknown) => Buffer;
    }
    const methods: Method[] = [];
    let clients: grpc.Client[] = [];
    beforeAll(() => {
      for (const [file, pkgService] of [
        [trainingProtoPath(), 'TrainingService'],
        [aiServiceProtoPath(), 'AIService'],
      ] as const) {
        const def = loadSync(file, { keepCase: true, longs: Number, enums: String, defaults: true });
        for (const [name, d] of Object.entries(def)) {
          if (!name.endsWith(`.${pkgService}`)) continue;
          for (const [m, md] of Object.entries(d as Record<string, { path: string; responseStream: boolean; requestSerialize: (v: unknown) => Buffer }>)) {
            methods.push({ service: name, name: m, path: md.path, responseStream: md.responseStream, serialize: md.requestSerialize });
          }
        }
      }
    });
    afterAll(() => {
      for (const cl of clients) cl.close();
      clients = [];
    });

    /** Raw wire bytes: the server's own decoder meets them, as a foreign client's bytes would. */
    const WIRE_CASES: Array<[string, Buffer]> = [
      ['empty message (every field missing)', Buffer.alloc(0)],
      ['random bytes', Buffer.from(Array.from({ length: 64 }, () => Math.floor(rand() * 256)))],
      ['truncated length-delimited field', Buffer.from([0x0a, 0x7f, 0x41])],
      ['wrong wire type for field 1 (varint for a string)', Buffer.from([0x08, 0x96, 0x01])],
      ['bad UTF-8 in field 1', Buffer.from([0x0a, 0x04, 0xff, 0xfe, 0xc0, 0xaf])],
      ['path trick in field 1', Buffer.concat([Buffer.from([0x0a, 22]), Buffer.from('../../../../etc/passwd')])],
      ['NUL in field 1', Buffer.from([0x0a, 0x03, 0x61, 0x00, 0x62])],
      ['negative int in field 2', Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])],
      ['huge field 1 (1 MiB)', Buffer.concat([Buffer.from([0x0a, 0x80, 0x80, 0x40]), Buffer.alloc(1024 * 1024, 0x61)])],
      ['unknown field 99', Buffer.from([0x9a, 0x06, 0x01, 0x61])],
    ];
    const BAD_CODES = new Set([grpc.status.INTERNAL, grpc.status.UNKNOWN]);
    /** Well-formed messages with bad values: path tricks, negatives, NaN, out-of-range enums and sizes. */
    const TYPED_CASES: Record<string, Array<[string, unknown]>> = {
      StartTraining: [
        ['path tricks', { base_model: '../../../../etc/passwd', dataset_path: '/etc/passwd', output_dir: '../../outside' }],
        ['NUL and absolute output', { base_model: 'fuzz-none', dataset_path: 'a\u0000b', output_dir: '/tmp/fuzz-abs' }],
        ['negative hyper-parameters', { base_model: 'fuzz-none', dataset_path: 'd.txt', output_dir: 'o', hyper_params: { epochs: -1, batch_size: -5, learning_rate: Number.NaN, max_seq_length: -1 } }],
        ['bad LoRA', { base_model: 'fuzz-none', dataset_path: 'd.txt', output_dir: 'o', lora_config: { r: -1, lora_alpha: -2, lora_dropout: 7, bias: 'bogus', target_modules: ['', '../x'] } }],
      ],
      GetTrainingStatus: [['path trick id', { job_id: '../console.db' }], ['NUL id', { job_id: 'a\u0000b' }]],
      CancelTraining: [['path trick id', { job_id: '%2e%2e/%2e%2e' }], ['huge id', { job_id: 'x'.repeat(100_000) }]],
      ListTrainingJobs: [['negative paging', { limit: -1, offset: -5, status: 'bogus' }], ['max paging', { limit: 2147483647, offset: 2147483647 }]],
      Predict: [
        ['path trick model', { model_id: '../../etc/passwd', prompt: 'x' }],
        ['bad generation', { model_id: 'fuzz-none', prompt: 'x', priority: -7, generation: { max_new_tokens: -1, temperature: Number.NaN, top_p: 5 } }],
        ['path trick adapter', { model_id: 'fuzz-none', prompt: 'x', adapter: '/etc/passwd' }],
      ],
      StreamPredict: [
        ['empty model and prompt', { model_id: '', prompt: '' }],
        ['priority out of range', { model_id: 'fuzz-none', prompt: 'x', priority: 99 }],
      ],
      ListModels: [],
    };

    it('every method: wrong types, missing fields and garbage bytes never give INTERNAL/UNKNOWN', async () => {
      const client = new grpc.Client(c.grpcAddress, grpc.credentials.createInsecure());
      clients.push(client);
      const failures: string[] = [];
      const seen: string[] = [];
      const id = (b: Buffer) => b;
      for (const m of methods) {
        const typed = (TYPED_CASES[m.name] ?? []).map(([label, value]) => [`typed: ${label}`, m.serialize(value)] as [string, Buffer]);
        for (const [label, bytes] of [...WIRE_CASES, ...typed]) {
          const md = new grpc.Metadata();
          md.set('x-api-key', c.adminToken);
          const deadline = new Date(Date.now() + 5_000);
          const result = await new Promise<{ code: number; details: string; messages: number }>((resolve) => {
            if (m.responseStream) {
              const stream = client.makeServerStreamRequest(m.path, id, id, bytes, md, { deadline });
              let messages = 0;
              stream.on('data', () => {
                messages++;
                stream.cancel(); // a valid stream would start real work: stop it at once
              });
              stream.on('error', (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details, messages }));
              stream.on('end', () => resolve({ code: grpc.status.OK, details: '', messages }));
            } else {
              client.makeUnaryRequest(m.path, id, id, bytes, md, { deadline }, (e) => resolve({ code: e?.code ?? grpc.status.OK, details: e?.details ?? '', messages: e ? 0 : 1 }));
            }
          });
          seen.push(`${m.name} [${label}] -> ${grpc.status[result.code]}${result.details ? ` (${result.details.slice(0, 80)})` : ''}`);
          if (BAD_CODES.has(result.code) || result.code === grpc.status.DEADLINE_EXCEEDED) failures.push(seen[seen.length - 1]!);
        }
      }
      process.stdout.write(`fuzz gRPC:\n  ${seen.join('\n  ')}\n`);
      expect(failures, failures.join('\n')).toEqual([]);
      expect((await fetch(`${c.url}/health`)).status).toBe(200);
    }, 60_000);
  });
});
