import { Kind, type Static, type TSchema } from '@sinclair/typebox';
import { ValueErrorType } from '@sinclair/typebox/errors';
import { Value } from '@sinclair/typebox/value';
import type { ErrorDetail } from './errors.js';

/**
 * The one validation of the project: `validate(schema, value)` lists every bad field of a value
 * against a contract schema as the contract's `details` (§1.3). Fastify (validator compiler and
 * error envelope), the gRPC services and the dashboard's forms all call it, so a bad field reads
 * the same everywhere:
 * - `is required` (a missing field, or an empty string where one is needed),
 * - `is not a known field`,
 * - `must be one of "a", "b", got "c"` (unions of literals and tagged unions),
 * - otherwise `expected <rule>, got <value>`.
 */

/** One problem with one field: where, what was expected, what was given. */
export interface FieldIssue {
  /** Dotted path, e.g. `server.httpPort` (empty for the root). */
  path: string;
  expected: string;
  got: string;
  /** `required`: missing (or an empty required string); `unknown`: a key the schema does not have; absent = a bad value. */
  kind?: 'required' | 'unknown' | 'value';
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  try {
    const text = JSON.stringify(value);
    return text.length > 80 ? `${text.slice(0, 77)}...` : text;
  } catch {
    return String(value);
  }
}

/** Converts a JSON pointer (`/server/httpPort`) into a dotted path (`server.httpPort`). */
export function pointerToPath(pointer: string): string {
  return pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .join('.');
}

/** Lists every problem of `value` against `schema` (one entry per path, first message wins). */
export function checkValue(schema: TSchema, value: unknown): FieldIssue[] {
  const seen = new Set<string>();
  const issues: FieldIssue[] = [];
  for (const err of Value.Errors(schema, value)) {
    const path = pointerToPath(err.path);
    if (seen.has(path)) continue;
    seen.add(path);
    const unknown = err.type === ValueErrorType.ObjectAdditionalProperties || /unexpected property/i.test(err.message);
    const required =
      err.type === ValueErrorType.ObjectRequiredProperty ||
      (err.type === ValueErrorType.StringMinLength && err.value === '' && (err.schema as { minLength?: number }).minLength === 1);
    issues.push({
      path,
      expected: unknown ? 'no such field (unknown key)' : err.message.replace(/^Expected /, ''),
      got: describeValue(err.value),
      kind: unknown ? 'unknown' : required ? 'required' : 'value',
    });
  }
  return issues;
}

/** CLI listing of issues (config errors). */
export function formatIssues(issues: readonly FieldIssue[]): string {
  return issues.map((i) => `  - ${i.path || '(root)'}: expected ${i.expected}, got ${i.got}`).join('\n');
}

// ---- unions: explain the member the value was meant for -------------------------------------

function kindOf(schema: TSchema): string {
  return String((schema as { [Kind]?: string })[Kind] ?? '');
}

/** Whether a union member is meant for a value of this JS type (to explain the right member's rule). */
function memberFits(member: TSchema, value: unknown): boolean {
  const kind = kindOf(member);
  if (value === null) return kind === 'Null';
  if (Array.isArray(value)) return kind === 'Array';
  if (kind === 'Literal') return typeof (member as { const?: unknown }).const === typeof value;
  switch (typeof value) {
    case 'number':
      return kind === 'Number' || kind === 'Integer';
    case 'string':
      return kind === 'String';
    case 'boolean':
      return kind === 'Boolean';
    case 'object':
      return kind === 'Object' || kind === 'Record';
    default:
      return false;
  }
}

/** `type` literals of object members (OpenAI's tagged unions such as `response_format`). */
function tags(members: TSchema[]): Map<unknown, TSchema> {
  const out = new Map<unknown, TSchema>();
  for (const m of members) {
    const tag = kindOf(m) === 'Object' ? (m as unknown as { properties: Record<string, TSchema> }).properties.type : undefined;
    if (tag && kindOf(tag) === 'Literal') out.set((tag as { const?: unknown }).const, m);
  }
  return out;
}

function pickMember(members: TSchema[], value: unknown): TSchema | undefined {
  const tagged = tags(members);
  if (tagged.size > 1 && value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const m = tagged.get((value as Record<string, unknown>).type);
    if (m) return m;
  }
  return members.find((m) => kindOf(m) !== 'Literal' && memberFits(m, value));
}

function resolveUnion(schema: TSchema, value: unknown): TSchema {
  if (kindOf(schema) !== 'Union') return schema;
  return pickMember((schema as unknown as { anyOf: TSchema[] }).anyOf, value) ?? schema;
}

/** The schema and value at a dotted path (unions resolved by the value's type). */
function at(schema: TSchema, value: unknown, path: string[]): { schema: TSchema | undefined; value: unknown } {
  let s: TSchema | undefined = schema;
  let v: unknown = value;
  for (const seg of path) {
    if (!s) break;
    s = resolveUnion(s, v);
    const kind = kindOf(s);
    if (kind === 'Object') s = (s as unknown as { properties: Record<string, TSchema> }).properties[seg];
    else if (kind === 'Array') s = (s as unknown as { items: TSchema }).items;
    else if (kind === 'Record') s = Object.values((s as unknown as { patternProperties: Record<string, TSchema> }).patternProperties)[0];
    else s = undefined;
    v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[seg] : undefined;
  }
  return { schema: s, value: v };
}

/** A readable rule for a union failure ("must be one of ..." or the matching member's own rule, at its own field). */
function explainUnion(schema: TSchema, value: unknown): { subpath: string; rule: string; got?: string } | undefined {
  if (kindOf(schema) !== 'Union') return undefined;
  const members = (schema as unknown as { anyOf: TSchema[] }).anyOf;
  const literals = members.filter((m) => kindOf(m) === 'Literal').map((m) => JSON.stringify((m as { const?: unknown }).const));
  const tagged = tags(members);
  if (tagged.size > 1 && value !== null && typeof value === 'object' && !Array.isArray(value) && !tagged.has((value as Record<string, unknown>).type)) {
    return { subpath: 'type', rule: `must be one of ${[...tagged.keys()].map((k) => JSON.stringify(k)).join(', ')}`, got: JSON.stringify((value as Record<string, unknown>).type) };
  }
  if (literals.length === members.length) return { subpath: '', rule: `must be one of ${literals.join(', ')}` };
  const fitting = pickMember(members, value);
  if (fitting) {
    const issue = checkValue(fitting, value)[0];
    if (issue) return { subpath: issue.path, rule: `expected ${issue.expected}${literals.length > 0 ? ` (or ${literals.join(', ')})` : ''}`, got: issue.got };
  }
  const kinds = members.filter((m) => kindOf(m) !== 'Literal').map((m) => kindOf(m).toLowerCase());
  return { subpath: '', rule: `must be ${[...literals, ...kinds].join(' or ')}` };
}

// ---- validate ---------------------------------------------------------------------------------

export interface ValidateOptions {
  /** Put before every field, e.g. `query.` for a query string or `params.` for path parameters. */
  prefix?: string;
  /** The field named for a problem with the whole value (default `body`, or the prefix without its dot). */
  root?: string;
  /** Contract path → the name the caller's wire uses (gRPC's `model_id` for `modelId`). */
  rename?: Readonly<Record<string, string>>;
}

/** The wording of one issue (see the module comment). */
export function describeIssue(issue: Pick<FieldIssue, 'expected' | 'got' | 'kind'>): string {
  if (issue.kind === 'required') return 'is required';
  if (issue.kind === 'unknown') return 'is not a known field';
  return `expected ${issue.expected}, got ${issue.got}`;
}

/** One detail per issue, with the same wording and field naming as `validate()`. */
export function issuesToDetails(issues: readonly FieldIssue[], options: ValidateOptions = {}): ErrorDetail[] {
  const prefix = options.prefix ?? '';
  const root = options.root ?? (prefix ? prefix.replace(/\.$/, '') : 'body');
  const name = (path: string) => (path === '' ? root : `${prefix}${options.rename?.[path] ?? path}`);
  return issues.map((i) => ({ type: 'validation', field: name(i.path), description: describeIssue(i) }));
}

/** Every bad field of `value` against `schema` as contract `details`; empty when the value is valid. */
export function validate(schema: TSchema, value: unknown, options: ValidateOptions = {}): ErrorDetail[] {
  const issues = checkValue(schema, value);
  if (issues.length === 0) return [];
  const prefix = options.prefix ?? '';
  const root = options.root ?? (prefix ? prefix.replace(/\.$/, '') : 'body');
  const name = (path: string) => (path === '' ? root : `${prefix}${options.rename?.[path] ?? path}`);
  const seen = new Set<string>();
  const out: ErrorDetail[] = [];
  for (const i of issues) {
    const here = (i.kind ?? 'value') === 'value' ? at(schema, value, i.path === '' ? [] : i.path.split('.')) : undefined;
    const union = here?.schema ? explainUnion(here.schema, here.value) : undefined;
    const detail: ErrorDetail = union
      ? { type: 'validation', field: name([i.path, union.subpath].filter((p) => p !== '').join('.')), description: `${union.rule}, got ${union.got ?? i.got}` }
      : { type: 'validation', field: name(i.path), description: describeIssue(i) };
    if (seen.has(detail.field ?? '')) continue;
    seen.add(detail.field ?? '');
    out.push(detail);
  }
  return out;
}

/** Fills defaults (on a copy), then validates; the typed value or every bad field. */
export function parseWithDefaults<S extends TSchema>(
  schema: S,
  value: unknown,
  options: ValidateOptions = {},
): { ok: true; value: Static<S> } | { ok: false; details: ErrorDetail[] } {
  const withDefaults: unknown = Value.Default(schema, structuredClone(value ?? {}));
  const details = validate(schema, withDefaults, options);
  if (details.length > 0) return { ok: false, details };
  return { ok: true, value: withDefaults as Static<S> };
}

// ---- coercion of text inputs (query strings, path parameters) --------------------------------

function coerceScalar(schema: TSchema, value: unknown): unknown {
  const kind = kindOf(schema);
  if (kind === 'Array') {
    const items = (schema as unknown as { items: TSchema }).items;
    return (Array.isArray(value) ? value : [value]).map((v) => coerceScalar(items, v));
  }
  if (Array.isArray(value)) return value;
  if ((kind === 'Number' || kind === 'Integer') && typeof value === 'string' && value.trim() !== '' && !Number.isNaN(Number(value))) return Number(value);
  if ((kind === 'Number' || kind === 'Integer') && typeof value === 'boolean') return value ? 1 : 0;
  if (kind === 'Boolean' && (value === 'true' || value === 'false')) return value === 'true';
  if (kind === 'String' && (typeof value === 'number' || typeof value === 'boolean')) return String(value);
  if (kind === 'Union') {
    for (const m of (schema as unknown as { anyOf: TSchema[] }).anyOf) {
      const c = coerceScalar(m, value);
      if (Value.Check(m, c)) return c;
    }
  }
  return value;
}

/**
 * Coerces the values of an object the way HTTP text inputs need (and as Fastify's ajv did with
 * `coerceTypes: 'array'`): numeric text to numbers (`1e999` becomes Infinity, which then fails
 * validation), `true`/`false` to booleans, numbers and booleans to text, one value to a list.
 * Nested objects are walked; anything else is left for `validate()` to report. Mutates `value`.
 */
export function coerce(schema: TSchema, value: unknown): unknown {
  if (kindOf(schema) === 'Object' && value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const props = (schema as unknown as { properties: Record<string, TSchema> }).properties;
    const obj = value as Record<string, unknown>;
    for (const [k, s] of Object.entries(props)) {
      if (obj[k] === undefined) continue;
      obj[k] = kindOf(s) === 'Object' ? coerce(s, obj[k]) : coerceScalar(s, obj[k]);
    }
    return obj;
  }
  return coerceScalar(schema, value);
}
