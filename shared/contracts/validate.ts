import type { TSchema, Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/** One problem with one field: where, what was expected, what was given. */
export interface FieldIssue {
  /** Dotted path, e.g. `server.httpPort` (empty for the root). */
  path: string;
  expected: string;
  got: string;
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
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
    const unexpected = /unexpected property/i.test(err.message);
    issues.push({
      path,
      expected: unexpected ? 'no such field (unknown key)' : err.message.replace(/^Expected /, ''),
      got: describeValue(err.value),
    });
  }
  return issues;
}

export function formatIssues(issues: readonly FieldIssue[]): string {
  return issues.map((i) => `  - ${i.path || '(root)'}: expected ${i.expected}, got ${i.got}`).join('\n');
}

/** Fills defaults, then validates; returns the typed value or the list of issues. */
export function parseWithDefaults<S extends TSchema>(
  schema: S,
  value: unknown,
): { ok: true; value: Static<S> } | { ok: false; issues: FieldIssue[] } {
  const withDefaults = Value.Default(schema, structuredClone(value ?? {}));
  const issues = checkValue(schema, withDefaults);
  if (issues.length > 0) return { ok: false, issues };
  return { ok: true, value: withDefaults as Static<S> };
}
