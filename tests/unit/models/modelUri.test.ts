import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import { Agent, interceptors } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../../electron/core/base/errors.js';
import { matchesQuant, parseModelUri, pickHfFile, resolveModelUri, type HfTreeEntry, type HfUri } from '../../../electron/core/services/models/modelUri.js';
import { Catalog } from '../../../shared/contracts/models.js';
import { FakeHf } from '../../helpers/fakeHf.js';
import { tinyGguf } from '../../helpers/gguf.js';

function thrown(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected a throw');
}

const file = (path: string, size = 10): HfTreeEntry => ({ type: 'file', path, size, lfs: { oid: 'a'.repeat(64), size } });
const hf = (s: string) => parseModelUri(s) as HfUri;

describe('parseModelUri', () => {
  it('parses hf:owner/repo, :quant, a file path and #revision', () => {
    expect(parseModelUri('hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF')).toEqual({ kind: 'hf', repo: 'Qwen/Qwen2.5-0.5B-Instruct-GGUF', revision: 'main' });
    expect(parseModelUri('hf:bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M')).toEqual({ kind: 'hf', repo: 'bartowski/Llama-3.2-1B-Instruct-GGUF', revision: 'main', quant: 'Q4_K_M' });
    expect(parseModelUri('hf:o/r/sub/dir/model-Q8_0.gguf#v1.0')).toEqual({ kind: 'hf', repo: 'o/r', revision: 'v1.0', file: 'sub/dir/model-Q8_0.gguf' });
    expect(parseModelUri('https://example.com/m/x.gguf?download=1')).toEqual({ kind: 'url', url: 'https://example.com/m/x.gguf?download=1' });
    expect(parseModelUri('http://127.0.0.1:8000/x.gguf')).toMatchObject({ kind: 'url' });
  });

  it.each([
    ['hf:', /expected/],
    ['hf:onlyowner', /expected/],
    ['hf:../etc/passwd', /bad repo name/],
    ['hf:owner/..', /bad repo name/],
    ['hf:owner/repo/../../x.gguf', /bad file path/],
    ['hf:owner/repo/%2e%2e/x.gguf', /bad file path/],
    ['hf:owner/repo/dir\\x.gguf', /bad file path/],
    ['hf:owner/repo/readme.md', /must be a \.gguf/],
    ['hf:owner/repo:Q4 K', /bad quantization/],
    ['hf:owner/repo#../main', /bad revision/],
    ['http://example.com/x.gguf', /only https/],
    ['file:///etc/passwd', /only https/],
    ['ftp://example.com/x.gguf', /only https/],
    ['https://user:pw@example.com/x.gguf', /credentials/],
    ['not a uri', /expected/],
    ['hf:owner/repo\u0000x', /control characters/],
  ])('refuses %j', (uri, message) => {
    const err = thrown(() => parseModelUri(uri));
    expect(err.code).toBe('INVALID_REQUEST');
    expect(err.details?.[0]?.field).toBe('uri');
    expect(err.message).toMatch(message);
  });
});

describe('picking the file of an hf: URI', () => {
  const files = [
    file('README.md'),
    file('model-Q4_K.gguf'),
    file('model-Q4_K_M.gguf'),
    file('model-q8_0.gguf'),
    file('mmproj-model-f16.gguf'),
    file('big/model-Q6_K-00001-of-00002.gguf'),
    file('big/model-Q6_K-00002-of-00002.gguf'),
  ];

  it('matches quant tags exactly and case-insensitively', () => {
    expect(matchesQuant('model-Q4_K_M.gguf', 'Q4_K_M')).toBe(true);
    expect(matchesQuant('model-Q4_K_M.gguf', 'Q4_K')).toBe(false);
    expect(matchesQuant('model.Q4_K.gguf', 'q4_k')).toBe(true);
    expect(matchesQuant('qwen2.5-0.5b-instruct-q4_k_m.gguf', 'Q4_K_M')).toBe(true);
    expect(pickHfFile(hf('hf:o/r:Q4_K'), files).path).toBe('model-Q4_K.gguf');
    expect(pickHfFile(hf('hf:o/r:Q8_0'), files).path).toBe('model-q8_0.gguf');
  });

  it('defaults to Q4_K_M when several files exist, and takes an explicit path', () => {
    expect(pickHfFile(hf('hf:o/r'), files).path).toBe('model-Q4_K_M.gguf');
    expect(pickHfFile(hf('hf:o/r/model-q8_0.gguf'), files).path).toBe('model-q8_0.gguf');
    expect(pickHfFile(hf('hf:o/r'), [file('only.gguf'), file('mmproj-x.gguf')]).path).toBe('only.gguf');
  });

  it('explains a missing quant, a missing file, split files and ambiguity', () => {
    const missing = thrown(() => pickHfFile(hf('hf:o/r:IQ2_XS'), files));
    expect(missing.code).toBe('NOT_FOUND');
    expect(missing.message).toContain('model-Q4_K_M.gguf');
    expect(thrown(() => pickHfFile(hf('hf:o/r/nope.gguf'), files)).code).toBe('NOT_FOUND');
    expect(thrown(() => pickHfFile(hf('hf:o/r:Q6_K'), files)).message).toMatch(/split GGUF/);
    expect(thrown(() => pickHfFile(hf('hf:o/r'), [file('a-Q8_0.gguf'), file('a-Q5_0.gguf')])).details?.[0]?.type).toBe('ambiguous_uri');
    expect(thrown(() => pickHfFile(hf('hf:o/r'), [file('README.md')])).message).toMatch(/no GGUF/);
  });
});

describe('resolveModelUri against a local Hugging Face API', () => {
  const server = new FakeHf();
  const dispatcher = new Agent().compose(interceptors.redirect({ maxRedirections: 3 }));
  const bytes = tinyGguf({ seed: 3 });
  beforeAll(async () => {
    server.addRepo('acme/tiny-GGUF', [
      { path: 'tiny-Q4_K_M.gguf', bytes },
      { path: 'tiny-Q8_0.gguf', bytes: tinyGguf({ seed: 4 }) },
    ]);
    await server.start();
  });
  afterAll(async () => {
    await dispatcher.close();
    await server.close();
  });

  it('resolves hf:owner/repo:quant to the resolve URL with size and LFS sha256', async () => {
    const source = await resolveModelUri(parseModelUri('hf:acme/tiny-GGUF:Q8_0'), { endpoint: `${server.url}/`, dispatcher, userAgent: 't' });
    expect(source.url).toBe(`${server.url}/acme/tiny-GGUF/resolve/main/tiny-Q8_0.gguf`);
    expect(source.fileName).toBe('tiny-Q8_0.gguf');
    expect(source.sizeBytes).toBe(tinyGguf({ seed: 4 }).length);
    expect(source.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(server.requests.some((r) => r.url === '/api/models/acme/tiny-GGUF/tree/main?recursive=true')).toBe(true);
  });

  it('reports an unknown repo as NOT_FOUND and an unreachable endpoint as UPSTREAM_ERROR', async () => {
    const missing = await resolveModelUri(parseModelUri('hf:acme/nope'), { endpoint: server.url, dispatcher, userAgent: 't' }).catch((e: unknown) => e);
    expect((missing as AppError).code).toBe('NOT_FOUND');
    const down = await resolveModelUri(parseModelUri('hf:acme/tiny-GGUF'), { endpoint: 'http://127.0.0.1:1', dispatcher, userAgent: 't' }).catch((e: unknown) => e);
    expect((down as AppError).code).toBe('UPSTREAM_ERROR');
  });
});

describe('resources/model-catalog.json', () => {
  it('is a valid catalog of hf: URIs that parse, with unique ids', () => {
    const catalog: unknown = JSON.parse(readFileSync(join(import.meta.dirname, '../../../resources/model-catalog.json'), 'utf8'));
    expect([...Value.Errors(Catalog, catalog)]).toEqual([]);
    const models = (catalog as Catalog).models;
    expect(models.length).toBeGreaterThanOrEqual(3);
    expect(new Set(models.map((m) => m.id)).size).toBe(models.length);
    for (const m of models) {
      const parsed = parseModelUri(m.uri) as HfUri;
      expect(parsed.kind).toBe('hf');
      expect(parsed.quant).toBe(m.quant);
    }
  });
});
