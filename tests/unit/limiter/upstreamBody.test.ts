import { describe, expect, it } from 'vitest';
import { upstreamBody, upstreamModelId } from '../../../electron/core/server/http/plugins/limiter.js';

/** What the proxy sends for a client's JSON text: parsed as Fastify would, then `upstreamBody`. */
function relay(text: string): string {
  const body = JSON.parse(text) as Record<string, unknown>;
  const id = String(body.model);
  return upstreamBody(text, body, id, upstreamModelId(id));
}

describe('upstreamBody (the proxy relays the client JSON text)', () => {
  it('keeps the text and replaces only the top-level model id', () => {
    const text = '{"model": "nvidia/meta/llama-3.1-8b-instruct",\n "messages":[{"role":"user","content":"nvidia/meta/llama-3.1-8b-instruct"}], "temperature": 0.70}';
    expect(relay(text)).toBe(text.replace('"model": "nvidia/meta/llama-3.1-8b-instruct"', '"model": "meta/llama-3.1-8b-instruct"'));
  });

  it('returns the text itself when the id needs no rewrite', () => {
    const text = '{"messages":[] , "model":"nvidia/nemotron-4-340b-instruct"}';
    expect(relay(text)).toBe(text);
  });

  it('serialises the parsed body when the text is ambiguous, always with the right id', () => {
    for (const text of [
      '{"model":"nvidia/meta/x","tools":[{"model":"nvidia/meta/x"}]}', // the key twice
      '{"mod\\u0065l":"nvidia/meta/x","tools":[{"model":"nvidia/meta/x"}]}', // an escape spells the top-level key
      '{"model":"nvidia\\/meta\\/x"}', // the value written with escapes
      '{"say \\"model": "nvidia/meta/x", "model": "nvidia/meta/x"}', // a key ending in "model" as well
    ]) {
      const out = JSON.parse(relay(text)) as Record<string, unknown>;
      const expected = { ...(JSON.parse(text) as Record<string, unknown>), model: 'meta/x' };
      expect({ text, out }).toEqual({ text, out: expected });
    }
  });

  it('without the raw text (not a string model, another content type) serialises as before', () => {
    expect(upstreamBody(null, { model: 'nvidia/meta/x', n: 1 }, 'nvidia/meta/x', 'meta/x')).toBe('{"model":"meta/x","n":1}');
  });
});
