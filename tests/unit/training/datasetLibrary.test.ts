import { describe, expect, it } from 'vitest';
import { sanitizeDatasetName } from '../../../electron/core/services/training/datasetLibrary.js';

describe('sanitizeDatasetName', () => {
  it.each([
    ['chat.jsonl', 'chat.jsonl'],
    ['my chat set.JSONL', 'my-chat-set.jsonl'],
    ['../../etc/passwd.txt', 'passwd.txt'],
    ['C:\\Users\\me\\data.json', 'data.json'],
    ['.hidden.txt', 'hidden.txt'],
    ['...txt', 'dataset.txt'],
    ['ünïcødé näme.txt', 'n-c-d-n-me.txt'],
    ['a..b.jsonl', 'a.b.jsonl'],
    ['no-extension', 'no-extension'],
    ['', 'dataset'],
  ])('%j → %j', (input, expected) => {
    expect(sanitizeDatasetName(input)).toBe(expected);
  });

  it('keeps names at most 120 characters with the extension', () => {
    const name = sanitizeDatasetName(`${'x'.repeat(500)}.jsonl`);
    expect(name).toHaveLength(120);
    expect(name.endsWith('.jsonl')).toBe(true);
  });
});
