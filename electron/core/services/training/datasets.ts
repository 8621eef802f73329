import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, extname } from 'node:path';
import { createInterface } from 'node:readline';
import { JinjaTemplateChatWrapper, readGgufFileInfo, type ChatHistoryItem } from 'node-llama-cpp';
import { invalidRequest, type ErrorDetail } from '../../base/errors.js';

/**
 * Training datasets: parsing, validation and rendering into the trainer's input.
 *
 * Accepted files (by extension):
 * - `.jsonl` / `.ndjson`: one JSON object per line (blank lines are skipped), each of one shape:
 *   `{"text": "..."}`, `{"prompt": "...", "completion": "..."}` or
 *   `{"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": "..."}]}` (OpenAI fine-tuning).
 * - `.json`: an array of such objects.
 * - anything else (`.txt`, `.md`, ...): UTF-8 text, one document.
 *
 * Validation lists every bad row (malformed JSON, unknown shape, wrong types, empty content); the
 * first {@link MAX_LISTED_ISSUES} are listed, all are counted. An empty dataset is an error.
 *
 * Rendering ({@link renderDataset}) writes the trainer's input: a `.jsonl` of `{"text"}` rows.
 * Chat rows use the base model's own Jinja chat template (GGUF `tokenizer.chat_template`) through
 * node-llama-cpp's `JinjaTemplateChatWrapper`; special tokens come out as their literal text
 * (e.g. `<|im_start|>`), so the trainer must tokenize with special-token parsing.
 */

export type DatasetFormat = 'jsonl' | 'json' | 'text';
export type DatasetShape = 'text' | 'promptCompletion' | 'chat';
export const CHAT_ROLES = ['system', 'user', 'assistant', 'tool'] as const;
export type ChatRole = (typeof CHAT_ROLES)[number];

/** At most this many bad rows are listed; `issueCount` counts them all. */
export const MAX_LISTED_ISSUES = 50;
const PREVIEW_ROWS = 5;
const PREVIEW_CHARS = 300;

export type DatasetRow =
  | { shape: 'text'; text: string }
  | { shape: 'promptCompletion'; prompt: string; completion: string }
  | { shape: 'chat'; messages: Array<{ role: ChatRole; content: string }> };

export interface DatasetIssue {
  /** 1-based line number (`.jsonl`) or array item number (`.json`); 0 for the file as a whole. */
  at: number;
  unit: 'line' | 'item' | 'file';
  problem: string;
}

export interface DatasetPreviewRow {
  at: number;
  shape: DatasetShape;
  /** The row in the fallback text format ("role: content" lines for chat), truncated. */
  text: string;
}

export interface DatasetInspection {
  path: string;
  format: DatasetFormat;
  /** Valid rows. */
  rows: number;
  shapes: Record<DatasetShape, number>;
  bytes: number;
  sha256: string;
  preview: DatasetPreviewRow[];
  /** The first {@link MAX_LISTED_ISSUES} problems, in file order. */
  issues: DatasetIssue[];
  /** All problems (may exceed `issues.length`). */
  issueCount: number;
  /** No issues and at least one row. */
  ok: boolean;
}

/**
 * Why the llama trainer cannot train on assistant turns only: llama.cpp's optimizer API
 * (`llama_opt_epoch`) takes every next token as a label, with no per-token mask, so prompts,
 * system and user turns count in the loss too. The job log can show this for chat and
 * prompt/completion datasets.
 */
export const ASSISTANT_ONLY_LOSS_WARNING =
  'assistant-only loss is not possible with the llama trainer: llama.cpp\'s optimizer API treats every token as a label (no loss mask), so prompts, system and user turns are trained on as well';

export function datasetFormat(path: string): DatasetFormat {
  const ext = extname(path).toLowerCase();
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  if (ext === '.json') return 'json';
  return 'text';
}

type RowCheck = { ok: true; row: DatasetRow } | { ok: false; problem: string };

function describeType(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

/** OpenAI also allows content as an array of `{type: "text", text}` parts. */
function messageContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.every((p) => typeof p === 'object' && p !== null && (p as { type?: unknown }).type === 'text' && typeof (p as { text?: unknown }).text === 'string')) {
    return v.map((p) => (p as { text: string }).text).join('');
  }
  return undefined;
}

/** Validates one parsed row and returns it in normal form. */
export function checkRow(value: unknown): RowCheck {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, problem: `expected a JSON object, got ${describeType(value)}` };
  const o = value as Record<string, unknown>;
  if ('messages' in o) {
    const messages = o.messages;
    if (!Array.isArray(messages)) return { ok: false, problem: `"messages" must be an array, got ${describeType(messages)}` };
    if (messages.length === 0) return { ok: false, problem: '"messages" is empty' };
    const out: Array<{ role: ChatRole; content: string }> = [];
    for (let i = 0; i < messages.length; i++) {
      const m: unknown = messages[i];
      if (typeof m !== 'object' || m === null || Array.isArray(m)) return { ok: false, problem: `messages[${i}] must be an object, got ${describeType(m)}` };
      const { role, content } = m as Record<string, unknown>;
      if (typeof role !== 'string' || !(CHAT_ROLES as readonly string[]).includes(role)) {
        return { ok: false, problem: `messages[${i}].role must be one of ${CHAT_ROLES.join(', ')}, got ${typeof role === 'string' ? JSON.stringify(role.slice(0, 40)) : describeType(role)}` };
      }
      const text = messageContent(content);
      if (text === undefined) return { ok: false, problem: `messages[${i}].content must be a string, got ${describeType(content)}` };
      if (text.trim() === '') return { ok: false, problem: `messages[${i}].content is empty` };
      out.push({ role: role as ChatRole, content: text });
    }
    return { ok: true, row: { shape: 'chat', messages: out } };
  }
  if ('prompt' in o || 'completion' in o) {
    if (typeof o.prompt !== 'string') return { ok: false, problem: `"prompt" must be a string, got ${describeType(o.prompt)}` };
    if (typeof o.completion !== 'string') return { ok: false, problem: `"completion" must be a string, got ${describeType(o.completion)}` };
    if (o.completion.trim() === '') return { ok: false, problem: '"completion" is empty' };
    return { ok: true, row: { shape: 'promptCompletion', prompt: o.prompt, completion: o.completion } };
  }
  if ('text' in o) {
    if (typeof o.text !== 'string') return { ok: false, problem: `"text" must be a string, got ${describeType(o.text)}` };
    if (o.text.trim() === '') return { ok: false, problem: '"text" is empty' };
    return { ok: true, row: { shape: 'text', text: o.text } };
  }
  const keys = Object.keys(o).slice(0, 5);
  return { ok: false, problem: `no known row shape (expected "text", "prompt" + "completion", or "messages"); keys: ${keys.length > 0 ? keys.join(', ') : '(none)'}` };
}

/** The fallback text of a row: `text` as is, prompt + completion, chat as "role: content" lines. */
export function plainText(row: DatasetRow): string {
  switch (row.shape) {
    case 'text':
      return row.text;
    case 'promptCompletion':
      return row.prompt + row.completion;
    case 'chat':
      return row.messages.map((m) => `${m.role}: ${m.content}`).join('\n');
  }
}

type RowEvent = { at: number; check: RowCheck };

/**
 * Reads the dataset's rows in file order. `onBytes` sees every chunk (for the hash); the
 * returned rows are produced lazily, so large `.jsonl` files are never held in memory.
 */
async function* readRows(path: string, format: DatasetFormat, onBytes: (chunk: Buffer) => void): AsyncGenerator<RowEvent> {
  if (format === 'jsonl') {
    const stream = createReadStream(path);
    stream.on('data', (chunk) => onBytes(chunk as Buffer));
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    let n = 0;
    for await (const line of lines) {
      n += 1;
      const trimmed = n === 1 ? line.replace(/^\uFEFF/, '') : line;
      if (trimmed.trim() === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(trimmed);
      } catch (err) {
        yield { at: n, check: { ok: false, problem: `malformed JSON (${(err as Error).message})` } };
        continue;
      }
      yield { at: n, check: checkRow(value) };
    }
    return;
  }
  const raw = await readFile(path);
  onBytes(raw);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(raw).replace(/^\uFEFF/, '');
  } catch {
    yield { at: 0, check: { ok: false, problem: 'the file is not valid UTF-8 text' } };
    return;
  }
  if (format === 'text') {
    if (text.trim() !== '') yield { at: 1, check: { ok: true, row: { shape: 'text', text } } };
    return;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    yield { at: 0, check: { ok: false, problem: `malformed JSON (${(err as Error).message})` } };
    return;
  }
  if (!Array.isArray(value)) {
    yield { at: 0, check: { ok: false, problem: `a .json dataset must be an array of rows, got ${describeType(value)}` } };
    return;
  }
  for (let i = 0; i < value.length; i++) yield { at: i + 1, check: checkRow(value[i]) };
}

function unitOf(format: DatasetFormat, at: number): DatasetIssue['unit'] {
  return at === 0 ? 'file' : format === 'json' ? 'item' : 'line';
}

/**
 * Parses and validates a dataset file without loading a model: row counts per shape, size,
 * sha256, a short preview and every bad row. Content problems are reported in the result (never
 * thrown); a missing or unreadable file rejects with the fs error.
 */
export async function inspectDataset(path: string): Promise<DatasetInspection> {
  const format = datasetFormat(path);
  const hash = createHash('sha256');
  let bytes = 0;
  const shapes: Record<DatasetShape, number> = { text: 0, promptCompletion: 0, chat: 0 };
  const preview: DatasetPreviewRow[] = [];
  const issues: DatasetIssue[] = [];
  let issueCount = 0;
  let rows = 0;
  for await (const { at, check } of readRows(path, format, (chunk) => {
    hash.update(chunk);
    bytes += chunk.length;
  })) {
    if (!check.ok) {
      issueCount += 1;
      if (issues.length < MAX_LISTED_ISSUES) issues.push({ at, unit: unitOf(format, at), problem: check.problem });
      continue;
    }
    rows += 1;
    shapes[check.row.shape] += 1;
    if (preview.length < PREVIEW_ROWS) {
      const text = plainText(check.row);
      preview.push({ at, shape: check.row.shape, text: text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS)}…` : text });
    }
  }
  if (rows === 0 && issueCount === 0) {
    issueCount = 1;
    issues.push({ at: 0, unit: 'file', problem: 'the dataset is empty (no rows)' });
  }
  return { path, format, rows, shapes, bytes, sha256: hash.digest('hex'), preview, issues, issueCount, ok: issueCount === 0 && rows > 0 };
}

/** The inspection's problems as error details (contract §1.3), with a closing "N more" line when capped. */
export function datasetIssueDetails(inspection: DatasetInspection, field = 'datasetPath'): ErrorDetail[] {
  const details: ErrorDetail[] = inspection.issues.map((i) => ({
    type: 'invalid_dataset',
    field,
    description: i.unit === 'file' ? i.problem : `${i.unit} ${i.at}: ${i.problem}`,
  }));
  const more = inspection.issueCount - inspection.issues.length;
  if (more > 0) details.push({ type: 'invalid_dataset', field, description: `${more} more bad rows not listed (${inspection.issueCount} in all)` });
  return details;
}

/**
 * The training service's request check: inspects the dataset and throws 400 INVALID_REQUEST
 * listing the bad rows when it is malformed or empty; returns the inspection otherwise.
 */
export async function requireValidDataset(path: string, field = 'datasetPath'): Promise<DatasetInspection> {
  const inspection = await inspectDataset(path);
  if (!inspection.ok) {
    throw invalidRequest(`Invalid dataset ${path}: ${inspection.issueCount} bad ${inspection.issueCount === 1 ? 'row' : 'rows'}`, datasetIssueDetails(inspection, field));
  }
  return inspection;
}

/**
 * The training request's dataset check (`TrainingService.plan`): the problems of the dataset at
 * `path` as error details, none when it is valid. Only the `llama` backend's datasets are checked:
 * the `command` backend's external trainer reads the file itself, in formats of its own.
 */
export async function datasetRequestProblems(path: string, backend: 'llama' | 'command', field = 'datasetPath'): Promise<ErrorDetail[]> {
  if (backend !== 'llama') return [];
  const inspection = await inspectDataset(path);
  return inspection.ok ? [] : datasetIssueDetails(inspection, field);
}

// --- rendering ---

export interface RenderDatasetOptions {
  /** The validated dataset (see {@link inspectDataset}). */
  datasetPath: string;
  /** The base model's GGUF; its `tokenizer.chat_template` renders chat rows. Optional: without it chat rows use the fallback format. */
  modelPath?: string;
  /** Where to write the prepared `.jsonl` (e.g. next to the job's outputs); written atomically, parent created. */
  outputPath: string;
}

export interface RenderedDataset {
  path: string;
  rows: number;
  shapes: Record<DatasetShape, number>;
  /** How chat rows were rendered: the model's Jinja template, the fallback "role: content" lines, or no chat rows. */
  chatFormat: 'template' | 'fallback' | 'none';
  /** Special tokens in the output are literal text: the trainer must tokenize with special-token parsing. */
  containsSpecialTokens: boolean;
  /** Lines for the job log (fallback format used, tool turns, assistant-only loss). */
  warnings: string[];
}

interface ChatTemplate {
  wrapper: JinjaTemplateChatWrapper;
  specialTokens: Record<string, string>;
}

/** The model's chat template and its special tokens' texts, or undefined when it has none. */
async function loadChatTemplate(modelPath: string): Promise<{ template: ChatTemplate | undefined; problem?: string }> {
  const info = await readGgufFileInfo(modelPath, { readTensorInfo: false, logWarnings: false, sourceType: 'filesystem' });
  const tokenizer = info.metadata.tokenizer;
  const source = tokenizer?.chat_template;
  if (typeof source !== 'string' || source.trim() === '') return { template: undefined };
  const tokens = tokenizer?.ggml?.tokens ?? [];
  const text = (id: number | undefined, fallback: string) => (id !== undefined && tokens[id] !== undefined ? tokens[id] : fallback);
  const specialTokens = {
    BOS: text(tokenizer?.ggml?.bos_token_id, ''),
    EOS: text(tokenizer?.ggml?.eos_token_id, ''),
    EOT: text(tokenizer?.ggml?.eot_token_id ?? tokenizer?.ggml?.eos_token_id, ''),
    SEP: '',
    NL: '\n',
  };
  try {
    return { template: { wrapper: new JinjaTemplateChatWrapper({ template: source }), specialTokens } };
  } catch (err) {
    return { template: undefined, problem: (err as Error).message };
  }
}

type LlamaTextItem = string | { type: 'specialTokensText'; value: string } | { type: 'specialToken'; value: string };

function itemText(item: LlamaTextItem, special: Record<string, string>): string {
  if (typeof item === 'string') return item;
  if (item.type === 'specialTokensText') return item.value;
  return special[item.value] ?? '';
}

const SENTINEL = '\u0000end-of-conversation\u0000';
/** The end-of-turn marker at the start of the text that follows an assistant turn: `<|im_end|>\n`, `<|eot_id|>`, `<end_of_turn>\n`. */
const END_MARKER = /^(<[^<>\s]{1,64}>|\[[^[\]\s]{1,64}\])[ \t]*\n?/;

/**
 * Renders one conversation with the model's template. node-llama-cpp's wrapper leaves the last
 * assistant turn open (it is made for generation), so a sentinel user turn is appended and the
 * assistant's end-of-turn marker is taken from the text between the two. The leading BOS is
 * dropped: the trainer adds it when it tokenizes.
 */
function renderChat(template: ChatTemplate, messages: Array<{ role: ChatRole; content: string }>): string {
  const history: ChatHistoryItem[] = messages.map((m) => {
    if (m.role === 'system') return { type: 'system', text: m.content };
    if (m.role === 'assistant') return { type: 'model', response: [m.content] };
    if (m.role === 'tool') return { type: 'user', text: `Tool result: ${m.content}` };
    return { type: 'user', text: m.content };
  });
  const endsWithAssistant = messages[messages.length - 1]?.role === 'assistant';
  if (endsWithAssistant) history.push({ type: 'user', text: SENTINEL });
  const items = template.wrapper.generateContextState({ chatHistory: history }).contextText.toJSON() as LlamaTextItem[];
  const start = typeof items[0] === 'object' && items[0].type === 'specialToken' && items[0].value === 'BOS' ? 1 : 0;
  let out = '';
  for (let i = start; i < items.length; i++) {
    const item = items[i]!;
    if (endsWithAssistant && typeof item === 'string' && item.includes(SENTINEL)) {
      // items between the last answer and the sentinel: the end-of-turn marker, then the user prefix
      const tail = items.slice(0, i).findLastIndex((x) => typeof x === 'string');
      const between = items.slice(tail + 1, i);
      const first = between[0];
      const betweenText = between.map((x) => itemText(x, template.specialTokens)).join('');
      const marker =
        first !== undefined && typeof first === 'object' && first.type === 'specialToken'
          ? itemText(first, template.specialTokens)
          : (END_MARKER.exec(betweenText)?.[0] ?? template.specialTokens.EOT ?? '');
      return out.slice(0, out.length - betweenText.length) + marker;
    }
    out += itemText(item, template.specialTokens);
  }
  // The template changed the sentinel (e.g. filtered the content): the turn's end is unknown.
  if (endsWithAssistant) throw new Error('cannot find the end of the last assistant turn');
  return out;
}

/**
 * Writes the trainer's input for a validated dataset: a `.jsonl` of `{"text"}` rows. `text` rows
 * as is, prompt/completion rows concatenated, chat rows with the model's chat template (or the
 * fallback "role: content" lines, with a warning, when the model has none). Rejects with
 * 400 INVALID_REQUEST when the dataset is not valid.
 */
export async function renderDataset(options: RenderDatasetOptions): Promise<RenderedDataset> {
  const { datasetPath, outputPath } = options;
  const format = datasetFormat(datasetPath);
  const warnings: string[] = [];
  const shapes: Record<DatasetShape, number> = { text: 0, promptCompletion: 0, chat: 0 };
  let template: ChatTemplate | undefined;
  let templateChecked = false;
  let templateFailures = 0;
  let toolTurns = 0;
  let rows = 0;
  const bad: DatasetIssue[] = [];
  await mkdir(dirname(outputPath), { recursive: true });
  const tmp = `${outputPath}.${process.pid}.tmp`;
  const out = await open(tmp, 'w');
  try {
    let buffer = '';
    for await (const { at, check } of readRows(datasetPath, format, () => undefined)) {
      if (!check.ok) {
        bad.push({ at, unit: unitOf(format, at), problem: check.problem });
        continue;
      }
      const row = check.row;
      let text: string;
      if (row.shape === 'chat') {
        if (!templateChecked) {
          templateChecked = true;
          if (options.modelPath) {
            const loaded = await loadChatTemplate(options.modelPath);
            template = loaded.template;
            if (loaded.problem) warnings.push(`the model's chat template could not be parsed (${loaded.problem})`);
          }
          if (!template) {
            warnings.push(
              `${options.modelPath ? 'the base model has no chat template (tokenizer.chat_template)' : 'no base model given'}: chat rows are rendered as "role: content" lines`,
            );
          }
        }
        toolTurns += row.messages.filter((m) => m.role === 'tool').length;
        text = plainText(row);
        if (template) {
          try {
            text = renderChat(template, row.messages);
          } catch {
            templateFailures += 1;
          }
        }
      } else {
        text = plainText(row);
      }
      rows += 1;
      shapes[row.shape] += 1;
      buffer += `${JSON.stringify({ text })}\n`;
      if (buffer.length > 1 << 20) {
        await out.write(buffer);
        buffer = '';
      }
    }
    if (buffer !== '') await out.write(buffer);
  } finally {
    await out.close();
  }
  if (bad.length > 0 || rows === 0) {
    await rm(tmp, { force: true });
    const inspection = await inspectDataset(datasetPath);
    throw invalidRequest(`Invalid dataset ${datasetPath}`, datasetIssueDetails(inspection));
  }
  await rename(tmp, outputPath);
  if (templateFailures > 0) warnings.push(`the chat template failed on ${templateFailures} conversation(s); they are rendered as "role: content" lines`);
  if (toolTurns > 0 && template) warnings.push(`${toolTurns} tool turn(s) are rendered as user turns ("Tool result: ...")`);
  if (shapes.chat > 0 || shapes.promptCompletion > 0) warnings.push(ASSISTANT_ONLY_LOSS_WARNING);
  const chatFormat = shapes.chat === 0 ? 'none' : template ? 'template' : 'fallback';
  return { path: outputPath, rows, shapes, chatFormat, containsSpecialTokens: chatFormat === 'template', warnings };
}

/** Size and modification time of a dataset file (for listings). */
export async function datasetFileInfo(path: string): Promise<{ bytes: number; modifiedAt: number }> {
  const s = await stat(path);
  return { bytes: s.size, modifiedAt: s.mtimeMs };
}
