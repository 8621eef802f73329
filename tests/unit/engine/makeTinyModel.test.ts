import { describe, expect, it } from 'vitest';
import { TINY_CHAT_TEMPLATE, buildTinyModel } from '../../../scripts/make-tiny-model.js';

describe('make-tiny-model', () => {
  it('is deterministic for a seed and differs across seeds', () => {
    const a = buildTinyModel({ seed: 7 });
    expect(buildTinyModel({ seed: 7 }).equals(a)).toBe(true);
    expect(buildTinyModel({ seed: 8 }).equals(a)).toBe(false);
  });

  it('writes a GGUF v3 of about 490 KB with a llama architecture and a chat template', () => {
    const b = buildTinyModel();
    expect(b.subarray(0, 4).toString('ascii')).toBe('GGUF');
    expect(b.readUInt32LE(4)).toBe(3);
    expect(Number(b.readBigUInt64LE(8))).toBe(21); // tensors
    expect(b.length).toBeGreaterThan(480_000);
    expect(b.length).toBeLessThan(500_000);
    expect(b.includes(Buffer.from('llama'))).toBe(true);
    expect(b.includes(Buffer.from(TINY_CHAT_TEMPLATE))).toBe(true);
  });
});
