import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AppError } from '../../../electron/core/base/errors.js';
import { writeTinyModel } from '../../../electron/core/services/engine/tinyGguf.js';
import {
  ASSISTANT_ONLY_LOSS_WARNING,
  MAX_LISTED_ISSUES,
  inspectDataset,
  renderDataset,
  requireValidDataset,
} from '../../../electron/core/services/training/datasets.js';
import { tinyModelPath } from '../../helpers/tinyModel.js';

const dir = mkdtempSync(join(tmpdir(), 'datasets-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function file(name: string, content: string | Buffer): string {
  const path = join(dir, `${++n}-${name}`);
  writeFileSync(path, content);
  return path;
}
const jsonl = (rows: unknown[]) => rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n';

const chat = { messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello!' }] };

describe('inspectDataset', () => {
  it('counts rows per shape, hashes the file and previews the first rows', async () => {
    const content = jsonl([{ text: 'plain document' }, { prompt: 'Q: 2+2? A:', completion: ' 4' }, chat, '', { text: 'x'.repeat(1000) }]);
    const path = file('mixed.jsonl', content);
    const r = await inspectDataset(path);
    expect(r.ok).toBe(true);
    expect(r.format).toBe('jsonl');
    expect(r.rows).toBe(4);
    expect(r.shapes).toEqual({ text: 2, promptCompletion: 1, chat: 1 });
    expect(r.bytes).toBe(Buffer.byteLength(content));
    expect(r.sha256).toBe(createHash('sha256').update(content).digest('hex'));
    expect(r.preview.map((p) => [p.at, p.shape])).toEqual([
      [1, 'text'],
      [2, 'promptCompletion'],
      [3, 'chat'],
      [5, 'text'],
    ]);
    expect(r.preview[2]!.text).toBe('system: Be brief.\nuser: Hi\nassistant: Hello!');
    expect(r.preview[3]!.text.length).toBeLessThan(400);
  });

  it('lists every bad line: malformed JSON, unknown shape, wrong types, empty content', async () => {
    const path = file(
      'bad.jsonl',
      jsonl([
        { text: 'ok' },
        '{"text": "unterminated',
        { foo: 1 },
        { text: 42 },
        { text: '   ' },
        { prompt: 'p' },
        { messages: [] },
        { messages: [{ role: 'robot', content: 'x' }] },
        { messages: [{ role: 'user', content: '' }] },
        [1, 2],
        { messages: [{ role: 'user', content: [{ type: 'text', text: 'parts are fine' }] }] },
      ]),
    );
    const r = await inspectDataset(path);
    expect(r.ok).toBe(false);
    expect(r.rows).toBe(2);
    expect(r.issueCount).toBe(9);
    expect(r.issues.map((i) => i.at)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(r.issues[0]!.problem).toMatch(/malformed JSON/);
    expect(r.issues[1]!.problem).toMatch(/no known row shape.*foo/);
    expect(r.issues[2]!.problem).toMatch(/"text" must be a string, got number/);
    expect(r.issues[3]!.problem).toMatch(/"text" is empty/);
    expect(r.issues[4]!.problem).toMatch(/"completion" must be a string/);
    expect(r.issues[6]!.problem).toMatch(/role must be one of system, user, assistant, tool/);
    expect(r.issues[7]!.problem).toMatch(/content is empty/);
    expect(r.issues[8]!.problem).toMatch(/expected a JSON object, got an array/);
  });

  it('caps the listed issues and counts them all; the 400 says how many more', async () => {
    const path = file('many.jsonl', jsonl(Array.from({ length: 120 }, () => '{bad')));
    const r = await inspectDataset(path);
    expect(r.issues).toHaveLength(MAX_LISTED_ISSUES);
    expect(r.issueCount).toBe(120);
    const err = await requireValidDataset(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    const details = (err as AppError).details!;
    expect((err as AppError).status).toBe(400);
    expect(details).toHaveLength(MAX_LISTED_ISSUES + 1);
    expect(details[0]).toEqual({ type: 'invalid_dataset', field: 'datasetPath', description: expect.stringMatching(/^line 1: malformed JSON/) });
    expect(details.at(-1)!.description).toBe('70 more bad rows not listed (120 in all)');
  });

  it('an empty dataset is an error (empty file, blank lines, whitespace text, empty array)', async () => {
    for (const [name, content] of [
      ['empty.jsonl', ''],
      ['blank.jsonl', '\n\n  \n'],
      ['space.txt', '  \n\t'],
      ['empty.json', '[]'],
    ] as const) {
      const r = await inspectDataset(file(name, content));
      expect(r.ok, name).toBe(false);
      expect(r.issues[0]!.problem, name).toMatch(/empty/);
    }
  });

  it('reads .json arrays (items numbered) and plain text (one document)', async () => {
    const json = await inspectDataset(file('rows.json', JSON.stringify([{ text: 'a' }, chat, { nope: true }])));
    expect(json.format).toBe('json');
    expect(json.rows).toBe(2);
    expect(json.issues).toEqual([{ at: 3, unit: 'item', problem: expect.stringMatching(/no known row shape/) }]);
    const notArray = await inspectDataset(file('obj.json', '{"text": "a"}'));
    expect(notArray.issues[0]).toMatchObject({ unit: 'file', problem: expect.stringMatching(/must be an array/) });
    const txt = await inspectDataset(file('doc.txt', 'Once upon a time.\n\nThe end.\n'));
    expect(txt).toMatchObject({ ok: true, format: 'text', rows: 1, shapes: { text: 1, promptCompletion: 0, chat: 0 } });
    const binary = await inspectDataset(file('bin.txt', Buffer.from([0xff, 0xfe, 0x00, 0xc3])));
    expect(binary.issues[0]!.problem).toMatch(/not valid UTF-8/);
  });

  it('a missing file rejects', async () => {
    await expect(inspectDataset(join(dir, 'nope.jsonl'))).rejects.toThrow(/ENOENT/);
  });
});

describe('renderDataset', () => {
  const readRows = (path: string) =>
    readFileSync(path, 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { text: string }).text);

  it("renders chat rows with the model's chat template, special tokens as literal text", async () => {
    const path = file('chat.jsonl', jsonl([{ text: 'plain' }, { prompt: 'Q: ', completion: 'A' }, chat, { messages: [{ role: 'user', content: 'only a question' }] }]));
    const out = join(dir, 'out', 'prepared.jsonl');
    const r = await renderDataset({ datasetPath: path, modelPath: tinyModelPath(), outputPath: out });
    expect(r).toMatchObject({ path: out, rows: 4, chatFormat: 'template', containsSpecialTokens: true, shapes: { text: 1, promptCompletion: 1, chat: 2 } });
    expect(r.warnings).toContain(ASSISTANT_ONLY_LOSS_WARNING);
    const rows = readRows(out);
    expect(rows[0]).toBe('plain');
    expect(rows[1]).toBe('Q: A');
    // the tiny model's ChatML template; the assistant turn is closed like every other turn
    expect(rows[2]).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n');
    expect(rows[3]).toBe('<|im_start|>user\nonly a question<|im_end|>\n');
  });

  it('closes the assistant turn with the EOS token for templates that end turns with eos_token, and drops the BOS', async () => {
    const template =
      "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]{% elif m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}";
    const model = writeTinyModel(join(dir, 'inst.gguf'), { chatTemplate: template });
    const path = file('inst.jsonl', jsonl([{ messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }, { role: 'user', content: 'Bye' }, { role: 'assistant', content: 'Ciao' }] }]));
    const r = await renderDataset({ datasetPath: path, modelPath: model, outputPath: join(dir, 'inst-out.jsonl') });
    expect(r.chatFormat).toBe('template');
    expect(readRows(r.path)).toEqual(['[INST] Hi [/INST]Hello</s>[INST] Bye [/INST]Ciao</s>']);
  });

  it.each([
    [
      'Llama 3',
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
      '<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>',
    ],
    [
      'Gemma',
      "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}",
      '<start_of_turn>system\nBe brief.<end_of_turn>\n<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n',
    ],
  ])('closes the last assistant turn of a %s-style template', async (name, template, expected) => {
    const model = writeTinyModel(join(dir, `${name}.gguf`), { chatTemplate: template });
    const r = await renderDataset({ datasetPath: file('t.jsonl', jsonl([chat])), modelPath: model, outputPath: join(dir, `${name}.jsonl`) });
    expect(r.chatFormat).toBe('template');
    expect(readRows(r.path)).toEqual([expected]);
  });

  it('falls back to "role: content" lines, with a warning, when the model has no chat template', async () => {
    const model = writeTinyModel(join(dir, 'no-template.gguf'), { chatTemplate: null });
    const path = file('chat2.jsonl', jsonl([chat, { messages: [{ role: 'user', content: 'q' }, { role: 'tool', content: '{"ok":true}' }, { role: 'assistant', content: 'a' }] }]));
    const r = await renderDataset({ datasetPath: path, modelPath: model, outputPath: join(dir, 'fallback.jsonl') });
    expect(r.chatFormat).toBe('fallback');
    expect(r.containsSpecialTokens).toBe(false);
    expect(r.warnings.join('\n')).toMatch(/no chat template.*"role: content" lines/);
    expect(readRows(r.path)).toEqual(['system: Be brief.\nuser: Hi\nassistant: Hello!', 'user: q\ntool: {"ok":true}\nassistant: a']);
  });

  it('text-only datasets need no model and carry no loss warning', async () => {
    const r = await renderDataset({ datasetPath: file('doc.txt', 'hello world'), outputPath: join(dir, 'doc.jsonl') });
    expect(r).toMatchObject({ rows: 1, chatFormat: 'none', warnings: [] });
    expect(readRows(r.path)).toEqual(['hello world']);
  });

  it('refuses an invalid dataset with a 400 listing the bad lines, and leaves no output', async () => {
    const out = join(dir, 'never.jsonl');
    const err = await renderDataset({ datasetPath: file('bad2.jsonl', jsonl([{ text: 'a' }, '{oops'])), outputPath: out }).catch((e: unknown) => e);
    expect((err as AppError).details?.[0]?.description).toMatch(/^line 2: malformed JSON/);
    expect(() => readFileSync(out)).toThrow();
  });
});
