import { createStore } from 'zustand/vanilla';
import type { ConsoleConfigView } from '../../../../shared/client/apiTypes.js';
import { ApiError, type ConsoleClient } from '../../../../shared/client/consoleClient.js';
import { errorText } from '../../lib/format.js';

/** What the schema says about a field (`GET /api/console/config/schema`): shown next to its input. */
export interface ConfigFieldDoc {
  description?: string;
  /** The default as text (`8080`, `[]`, `""`); absent when the field has none. */
  default?: string;
  /** Environment variables that pin the field (`x-env`). */
  env: string[];
  /** The command-line flag that pins it (`x-flag`). */
  flag?: string;
}

/** One editable leaf of the config (`server.httpPort`), with its kind for parsing the input. */
export interface ConfigField {
  path: string;
  /** `list`: an array of scalars, edited row by row (the draft holds the rows as a JSON array of strings). */
  kind: 'string' | 'number' | 'boolean' | 'json' | 'list';
  /** Type of a `list`'s items. */
  itemKind?: 'string' | 'number';
  /** The current value as the input shows it. */
  original: string;
  secret: boolean;
  overridden: boolean;
  /** What pins it when overridden (`env CONSOLE_HTTP_PORT`, `flag --port`). */
  pinnedBy?: string;
  doc: ConfigFieldDoc;
}

type SchemaNode = Record<string, unknown>;

/** The schema node at a dotted path (object properties only). */
function schemaNodeAt(schema: SchemaNode | null | undefined, path: string): SchemaNode | undefined {
  let node: SchemaNode | undefined = schema ?? undefined;
  for (const part of path.split('.')) {
    const props = node?.properties as Record<string, SchemaNode> | undefined;
    node = props?.[part];
    if (!node) return undefined;
  }
  return node;
}

function docOf(node: SchemaNode | undefined): ConfigFieldDoc {
  if (!node) return { env: [] };
  const d = node.default;
  return {
    ...(typeof node.description === 'string' ? { description: node.description } : {}),
    ...('default' in node ? { default: typeof d === 'string' && d !== '' ? d : JSON.stringify(d) } : {}),
    env: Array.isArray(node['x-env']) ? (node['x-env'] as unknown[]).filter((e): e is string => typeof e === 'string') : [],
    ...(typeof node['x-flag'] === 'string' ? { flag: node['x-flag'] } : {}),
  };
}

/** `number` or `string` when `value` is an array of scalars the list editor can handle, else undefined. */
function listItemKind(value: unknown[], node: SchemaNode | undefined): 'string' | 'number' | undefined {
  const itemType = (node?.items as SchemaNode | undefined)?.type;
  if (itemType === 'integer' || itemType === 'number') return 'number';
  if (itemType === 'string') return 'string';
  if (node) return undefined; // objects or unions: JSON text
  if (value.every((v) => typeof v === 'number') && value.length > 0) return 'number';
  return value.every((v) => typeof v === 'string') ? 'string' : undefined;
}

export interface ConfigChange {
  path: string;
  from: string;
  to: string;
}

export interface ConfigState {
  loading: boolean;
  view: ConsoleConfigView | null;
  /** The served JSON schema (descriptions, defaults, `x-env`); null until loaded or when it cannot be. */
  schema: Record<string, unknown> | null;
  fields: ConfigField[];
  draft: Record<string, string>;
  fieldErrors: Record<string, string>;
  error: string | null;
  message: string | null;
  saving: boolean;
  load(): Promise<void>;
  setField(path: string, value: string): void;
  changes(): ConfigChange[];
  discard(): void;
  /** Sends the changed fields as one PATCH; on a 400 every bad field gets its message and nothing is saved. */
  apply(): Promise<boolean>;
  reload(): Promise<void>;
}

const MASK = /\*\*\*\*$/;

/**
 * Flattens the config into editable leaves (objects recurse; arrays of scalars edit as lists, other
 * arrays as JSON), each with what the schema says about it and what pins it.
 */
export function flattenConfig(
  config: Record<string, unknown>,
  overridden: readonly string[] = [],
  schema: SchemaNode | null = null,
  pinnedBy: Readonly<Record<string, string>> = {},
): ConfigField[] {
  const out: ConfigField[] = [];
  const walk = (value: unknown, prefix: string) => {
    if (value && typeof value === 'object' && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (k === '$schema') continue;
        walk(v, prefix ? `${prefix}.${k}` : k);
      }
      return;
    }
    const node = schemaNodeAt(schema, prefix);
    const masked = Array.isArray(value) && /\*\*\*\*/.test(JSON.stringify(value));
    const itemKind = Array.isArray(value) && !masked ? listItemKind(value, node) : undefined;
    const kind: ConfigField['kind'] = itemKind
      ? 'list'
      : typeof value === 'number'
        ? 'number'
        : typeof value === 'boolean'
          ? 'boolean'
          : typeof value === 'string'
            ? 'string'
            : 'json';
    const original = kind === 'list' ? JSON.stringify((value as unknown[]).map(String)) : kind === 'json' ? JSON.stringify(value ?? null) : String(value);
    const secret = kind === 'string' ? MASK.test(original) : kind === 'json' ? masked : false;
    const pin = overridden.find((p) => prefix === p || prefix.startsWith(`${p}.`));
    out.push({
      path: prefix,
      kind,
      ...(itemKind ? { itemKind } : {}),
      original,
      secret,
      overridden: pin !== undefined,
      ...(pin !== undefined && pinnedBy[pin] ? { pinnedBy: pinnedBy[pin] } : {}),
      doc: docOf(node),
    });
  };
  walk(config, '');
  return out;
}

/** Converts an input's text to the value sent; a parse problem is returned as an error text. */
export function parseField(field: ConfigField, text: string): { value: unknown } | { error: string } {
  switch (field.kind) {
    case 'number': {
      const n = Number(text);
      return text.trim() === '' || !Number.isFinite(n) ? { error: 'must be a number' } : { value: n };
    }
    case 'boolean':
      return text === 'true' || text === 'false' ? { value: text === 'true' } : { error: 'must be true or false' };
    case 'list': {
      let rows: unknown;
      try {
        rows = JSON.parse(text);
      } catch {
        rows = null;
      }
      if (!Array.isArray(rows) || !rows.every((r) => typeof r === 'string')) return { error: 'must be a list' };
      if (field.itemKind !== 'number') return { value: rows };
      const bad = rows.findIndex((r) => r.trim() === '' || !Number.isFinite(Number(r)));
      return bad >= 0 ? { error: `item ${bad + 1} must be a number` } : { value: rows.map(Number) };
    }
    case 'json':
      try {
        return { value: JSON.parse(text) };
      } catch {
        return { error: 'must be valid JSON (e.g. ["a", "b"])' };
      }
    default:
      return { value: text };
  }
}

/** Builds the nested PATCH body from dotted paths. */
export function buildPatch(values: Record<string, unknown>): Record<string, unknown> {
  const patch: Record<string, unknown> = {};
  for (const [path, value] of Object.entries(values)) {
    const parts = path.split('.');
    let cur = patch;
    for (const part of parts.slice(0, -1)) cur = (cur[part] ??= {}) as Record<string, unknown>;
    cur[parts[parts.length - 1] as string] = value;
  }
  return patch;
}

export function createConfigStore(client: ConsoleClient) {
  return createStore<ConfigState>()((set, get) => ({
    loading: false,
    view: null,
    schema: null,
    fields: [],
    draft: {},
    fieldErrors: {},
    error: null,
    message: null,
    saving: false,
    async load() {
      set({ loading: true, error: null });
      try {
        const [view, schema] = await Promise.all([client.config(), get().schema ? Promise.resolve(get().schema) : client.configSchema().catch(() => null)]);
        set({ schema });
        const fields = flattenConfig(view.config, view.overridden, schema, view.pinnedBy);
        set({ view, fields, draft: Object.fromEntries(fields.map((f) => [f.path, f.secret ? '' : f.original])), fieldErrors: {} });
      } catch (err) {
        set({ error: errorText(err) });
      } finally {
        set({ loading: false });
      }
    },
    setField(path, value) {
      const fieldErrors = { ...get().fieldErrors };
      delete fieldErrors[path];
      set({ draft: { ...get().draft, [path]: value }, fieldErrors, message: null });
    },
    changes() {
      const { fields, draft } = get();
      return fields
        .filter((f) => {
          const d = draft[f.path] ?? '';
          return f.secret ? d !== '' : d !== f.original;
        })
        .map((f) => ({ path: f.path, from: f.original, to: f.secret ? '****' : (draft[f.path] ?? '') }));
    },
    discard() {
      const fields = get().fields;
      set({ draft: Object.fromEntries(fields.map((f) => [f.path, f.secret ? '' : f.original])), fieldErrors: {}, message: null, error: null });
    },
    async apply() {
      const changes = get().changes();
      if (changes.length === 0) {
        set({ message: 'Nothing to apply.' });
        return false;
      }
      const values: Record<string, unknown> = {};
      const local: Record<string, string> = {};
      for (const c of changes) {
        const field = get().fields.find((f) => f.path === c.path) as ConfigField;
        const parsed = parseField(field, get().draft[c.path] ?? '');
        if ('error' in parsed) local[c.path] = parsed.error;
        else values[c.path] = parsed.value;
      }
      if (Object.keys(local).length > 0) {
        set({ fieldErrors: local, error: 'Fix the highlighted fields; nothing was saved.' });
        return false;
      }
      set({ saving: true, error: null, message: null });
      try {
        const view = await client.patchConfig(buildPatch(values));
        const fields = flattenConfig(view.config, view.overridden, get().schema, view.pinnedBy);
        set({ view, fields, draft: Object.fromEntries(fields.map((f) => [f.path, f.secret ? '' : f.original])), fieldErrors: {}, message: `Applied ${changes.length} change(s); the console reloaded them.` });
        return true;
      } catch (err) {
        if (err instanceof ApiError && err.fields.length > 0) {
          set({ fieldErrors: Object.fromEntries(err.fields.map((f) => [f.field, f.message])), error: `${err.message}` });
        } else set({ error: errorText(err) });
        return false;
      } finally {
        set({ saving: false });
      }
    },
    async reload() {
      try {
        await client.reloadConfig();
        await get().load();
        set({ message: 'Reloaded config.json from disk.' });
      } catch (err) {
        set({ error: errorText(err) });
      }
    },
  }));
}
export type ConfigStore = ReturnType<typeof createConfigStore>;
