import { existsSync, readFileSync, renameSync, writeFileSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ConsoleConfig, configSections, type SectionName } from '../../../shared/contracts/config/index.js';
import { checkValue, formatIssues, type FieldIssue } from '../../../shared/contracts/validate.js';

export { ConsoleConfig, configSections };
export type { SectionName };

/** A config problem, with where the bad value came from (file, env var or flag). */
export interface ConfigIssue extends FieldIssue {
  source: string;
}

/** Invalid settings: start-up stops with exit code 2 and this message; nothing is written. */
export class ConfigError extends Error {
  readonly exitCode = 2;
  constructor(
    message: string,
    readonly issues: ConfigIssue[],
  ) {
    super(issues.length > 0 ? `${message}\n${formatIssuesWithSource(issues)}` : message);
    this.name = 'ConfigError';
  }
}

function formatIssuesWithSource(issues: readonly ConfigIssue[]): string {
  return issues.map((i) => `  - ${i.path || '(root)'}: expected ${i.expected}, got ${i.got} (from ${i.source})`).join('\n');
}

export type Layer = Record<string, unknown>;

/** The OS user-data directory, the same one Electron's `app.getPath('userData')` uses. */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env, platform = process.platform): string {
  const name = 'gpu-console';
  if (platform === 'win32') return join(env.APPDATA ?? join(homedir(), 'AppData', 'Roaming'), name);
  if (platform === 'darwin') return join(homedir(), 'Library', 'Application Support', name);
  return join(env.XDG_CONFIG_HOME ?? join(homedir(), '.config'), name);
}

/** Command-line flags and the config field each sets. */
export const FLAG_FIELDS: Readonly<Record<string, string>> = {
  host: 'server.host',
  port: 'server.httpPort',
  'grpc-port': 'server.grpcPort',
  'log-level': 'ops.logLevel',
  gpu: 'engine.gpu',
};

export interface ParsedFlags {
  dataDir: string | undefined;
  layer: Layer;
  sources: Map<string, string>;
  issues: ConfigIssue[];
  help: boolean;
  /** `--restore-last-backup`: replace a damaged console.db with the newest good backup. */
  restoreLastBackup: boolean;
}

export const FLAGS_HELP = `Usage: npm run serve -- [options]
  --data-dir DIR     data directory (env CONSOLE_DATA_DIR; default: the OS user-data dir)
  --host ADDR        bind address (env CONSOLE_HOST; default 127.0.0.1)
  --port N           HTTP port, 0 = ephemeral (env CONSOLE_HTTP_PORT; default 8080)
  --grpc-port N      gRPC port, 0 = ephemeral (env CONSOLE_GRPC_PORT; default 50051)
  --log-level LEVEL  trace|debug|info|warn|error|fatal (env CONSOLE_LOG_LEVEL; default info)
  --gpu MODE         auto|cuda|vulkan|metal|false (env CONSOLE_GPU; default auto)
  --restore-last-backup
                     if console.db is damaged, move it aside (kept) and start from the newest
                     backup that passes an integrity check (env CONSOLE_RESTORE_BACKUP=1)
  --help             this text`;

/** Parses command-line flags strictly: an unknown flag or a missing value is an issue, never ignored. */
export function parseFlags(argv: readonly string[]): ParsedFlags {
  const issues: ConfigIssue[] = [];
  const layer: Layer = {};
  const sources = new Map<string, string>();
  const options = Object.fromEntries(
    [...Object.keys(FLAG_FIELDS), 'data-dir'].map((k) => [k, { type: 'string' as const }]),
  );
  let values: Record<string, string | boolean | undefined> = {};
  try {
    const parsed = parseArgs({ args: [...argv], options: { ...options, help: { type: 'boolean' }, 'restore-last-backup': { type: 'boolean' } }, strict: true, allowPositionals: false });
    values = parsed.values as Record<string, string | boolean | undefined>;
  } catch (err) {
    issues.push({ path: '(command line)', expected: 'a known flag (see --help)', got: (err as Error).message, source: 'command line' });
  }
  for (const [flag, field] of Object.entries(FLAG_FIELDS)) {
    const raw = values[flag];
    if (typeof raw !== 'string') continue;
    setPath(layer, field, convertForSchema(schemaAt(ConsoleConfig, field), raw));
    sources.set(field, `flag --${flag}`);
  }
  const dataDir = typeof values['data-dir'] === 'string' ? values['data-dir'] : undefined;
  return { dataDir, layer, sources, issues, help: values.help === true, restoreLastBackup: values['restore-last-backup'] === true };
}

/** Reads every section's environment variables into a config layer. */
export function envLayer(env: NodeJS.ProcessEnv): { layer: Layer; sources: Map<string, string> } {
  const layer: Layer = {};
  const sources = new Map<string, string>();
  for (const [section, def] of Object.entries(configSections)) {
    for (const [name, field] of Object.entries(def.env)) {
      const raw = env[name];
      if (raw === undefined || raw === '') continue;
      const path = `${section}.${field}`;
      setPath(layer, path, convertForSchema(schemaAt(ConsoleConfig, path), raw));
      sources.set(path, `env ${name}`);
    }
  }
  return { layer, sources };
}

/** A JSON Schema node as plain data (what `/api/console/config/schema` serves). */
export type JsonSchemaNode = Record<string, unknown>;

/**
 * The config.json schema as plain JSON Schema, each field that an environment variable or a flag
 * can pin annotated from the same mappings `envLayer` and `parseFlags` read: `x-env` (the variable
 * names; for two names on one field the later one wins) and `x-flag` (`--port`). Served by
 * `GET /api/console/config/schema`, read by the dashboard's Config page and `npm run docs:config`.
 */
export function annotatedConfigSchema(): JsonSchemaNode {
  const doc = JSON.parse(JSON.stringify(ConsoleConfig)) as JsonSchemaNode;
  const at = (path: string): JsonSchemaNode | undefined => schemaAt(doc as unknown as TSchema, path) as JsonSchemaNode | undefined;
  for (const [section, def] of Object.entries(configSections)) {
    for (const [name, field] of Object.entries(def.env)) {
      const node = at(`${section}.${field}`);
      if (!node) throw new Error(`env ${name} names ${section}.${field}, which the schema does not have`);
      node['x-env'] = [...((node['x-env'] as string[] | undefined) ?? []), name];
    }
  }
  for (const [flag, path] of Object.entries(FLAG_FIELDS)) {
    const node = at(path);
    if (!node) throw new Error(`flag --${flag} names ${path}, which the schema does not have`);
    node['x-flag'] = `--${flag}`;
  }
  return doc;
}

/** Finds the sub-schema at a dotted path (objects and records). */
export function schemaAt(schema: TSchema, path: string): TSchema | undefined {
  let current: TSchema | undefined = schema;
  for (const part of path.split('.')) {
    if (!current) return undefined;
    const props: Record<string, TSchema> | undefined = (current as { properties?: Record<string, TSchema> }).properties;
    const patterns: Record<string, TSchema> | undefined = (current as { patternProperties?: Record<string, TSchema> }).patternProperties;
    current = props?.[part] ?? (patterns ? Object.values(patterns)[0] : undefined);
  }
  return current;
}

/** Converts a string from env or a flag to the type the schema expects (lists are comma-separated). */
export function convertForSchema(schema: TSchema | undefined, raw: string): unknown {
  if (!schema) return raw;
  const type = (schema as { type?: string }).type;
  if (type === 'array') {
    const items = (schema as { items?: TSchema }).items;
    return raw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '')
      .map((s) => convertForSchema(items, s));
  }
  if (type === 'integer' || type === 'number') {
    const n = Number(raw);
    return raw.trim() !== '' && Number.isFinite(n) ? n : raw;
  }
  if (type === 'boolean') {
    if (/^(true|1|yes|on)$/i.test(raw)) return true;
    if (/^(false|0|no|off)$/i.test(raw)) return false;
    return raw;
  }
  return raw;
}

function setPath(target: Layer, path: string, value: unknown): void {
  const parts = path.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) node[part] = {};
    node = node[part] as Layer;
  }
  node[parts[parts.length - 1]!] = value;
}

function isPlainObject(v: unknown): v is Layer {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Deep merge: objects merge key by key, everything else (arrays included) is replaced. */
export function mergeLayers(...layers: unknown[]): Layer {
  const out: Layer = {};
  for (const layer of layers) {
    if (!isPlainObject(layer)) continue;
    for (const [k, v] of Object.entries(layer)) {
      out[k] = isPlainObject(v) && isPlainObject(out[k]) ? mergeLayers(out[k], v) : structuredClone(v);
    }
  }
  return out;
}

function sourceOf(path: string, sources: Map<string, string>, fallback: string): string {
  let best = fallback;
  let bestLen = -1;
  for (const [p, label] of sources) {
    if ((path === p || path.startsWith(`${p}.`)) && p.length > bestLen) {
      best = label;
      bestLen = p.length;
    }
  }
  return best;
}

/** The layers that make up the effective config, kept so updates can be re-validated. */
export interface ConfigLayers {
  file: Layer;
  env: Layer;
  flags: Layer;
  sources: Map<string, string>;
}

/** Merges defaults < file < env < flags and validates the result; throws ConfigError listing every bad field. */
export function resolveConfig(layers: ConfigLayers, fileLabel: string): ConsoleConfig {
  const merged = mergeLayers(layers.file, layers.env, layers.flags);
  const withDefaults = Value.Default(ConsoleConfig, merged);
  const issues = checkValue(ConsoleConfig, withDefaults).map((i) => ({ ...i, source: sourceOf(i.path, layers.sources, fileLabel) }));
  if (issues.length > 0) throw new ConfigError('Invalid settings:', issues);
  return withDefaults as ConsoleConfig;
}

/** Reads config.json; a missing file is an empty layer, a corrupt one is a ConfigError (the file is never touched). */
export function readConfigFile(path: string): Layer {
  if (!existsSync(path)) return {};
  const text = readFileSync(path, 'utf8');
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`Invalid settings: ${path} is not valid JSON (${(err as Error).message}). The file was left untouched.`, []);
  }
  if (!isPlainObject(parsed)) {
    throw new ConfigError(`Invalid settings: ${path} must hold a JSON object.`, [
      { path: '', expected: 'object', got: Array.isArray(parsed) ? 'array' : typeof parsed, source: path },
    ]);
  }
  return parsed;
}

export interface LoadSettingsOptions {
  argv?: readonly string[];
  env?: NodeJS.ProcessEnv;
  /** Wins over flags and env (used by tests and Electron). */
  dataDir?: string;
  /** Extra layer above flags (used by tests and Electron, e.g. ports 0). */
  overrides?: Layer;
  /** Restore the newest good backup if console.db is damaged (else `--restore-last-backup` / CONSOLE_RESTORE_BACKUP). */
  restoreLastBackup?: boolean;
}

export interface Settings {
  dataDir: string;
  configPath: string;
  config: ConsoleConfig;
  layers: ConfigLayers;
  /** Restore the newest good backup if console.db is damaged (flag, env or option). */
  restoreLastBackup: boolean;
}

/** Resolves the data dir and the effective config. Throws ConfigError (exit code 2) on any bad field. */
export function loadSettings(options: LoadSettingsOptions = {}): Settings {
  const env = options.env ?? process.env;
  const flags = parseFlags(options.argv ?? []);
  if (flags.issues.length > 0) throw new ConfigError('Invalid command line:', flags.issues);
  const dataDir = resolve(options.dataDir ?? flags.dataDir ?? env.CONSOLE_DATA_DIR ?? defaultDataDir(env));
  const configPath = join(dataDir, 'config.json');
  const file = readConfigFile(configPath);
  const fromEnv = envLayer(env);
  const sources = new Map([...fromEnv.sources, ...flags.sources]);
  const overrides = options.overrides ?? {};
  const layers: ConfigLayers = { file, env: fromEnv.layer, flags: mergeLayers(flags.layer, overrides), sources };
  const config = resolveConfig(layers, configPath);
  const restoreLastBackup = options.restoreLastBackup ?? (flags.restoreLastBackup || /^(1|true|yes|on)$/i.test(env.CONSOLE_RESTORE_BACKUP ?? ''));
  return { dataDir, configPath, config, layers, restoreLastBackup };
}

export type ConfigListener = (next: ConsoleConfig, previous: ConsoleConfig) => void;

/** Result of a config update: the new config, or every bad field (and nothing changed). */
export type ConfigUpdateResult =
  | { ok: true; config: ConsoleConfig; overridden: string[] }
  | { ok: false; issues: ConfigIssue[] };

/**
 * Holds the effective config and hot-reloads it. An update is validated as a whole first; on any
 * error the old config stays and the file is not written. Writes are atomic (temp file + rename).
 */
export class ConfigStore {
  private current: ConsoleConfig;
  private listeners = new Set<ConfigListener>();

  constructor(private readonly settings: Settings) {
    this.current = settings.config;
  }

  get(): ConsoleConfig {
    return this.current;
  }
  get path(): string {
    return this.settings.configPath;
  }
  /** The file layer as written in config.json (no defaults, no env). */
  fileLayer(): Layer {
    return structuredClone(this.settings.layers.file);
  }
  /** Dotted paths whose effective value comes from env or a flag, so a file edit would not apply. */
  overriddenPaths(): string[] {
    return [...this.settings.layers.sources.keys()].sort();
  }
  /** What pins each overridden path (`env CONSOLE_HTTP_PORT`, `flag --port`). */
  pinnedBy(): Record<string, string> {
    return Object.fromEntries([...this.settings.layers.sources.entries()].sort(([a], [b]) => a.localeCompare(b)));
  }
  onChange(listener: ConfigListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Deep-merges `patch` into the file layer, validates, writes config.json, notifies listeners. */
  update(patch: Layer): ConfigUpdateResult {
    return this.replaceFileLayer(mergeLayers(this.settings.layers.file, patch));
  }

  /** Replaces the whole file layer (the dashboard's "apply" of an edited config). */
  replaceFileLayer(file: Layer): ConfigUpdateResult {
    let next: ConsoleConfig;
    try {
      next = resolveConfig({ ...this.settings.layers, file }, this.settings.configPath);
    } catch (err) {
      if (err instanceof ConfigError) return { ok: false, issues: err.issues };
      throw err;
    }
    this.writeFile(file);
    this.settings.layers.file = file;
    this.swap(next);
    return { ok: true, config: next, overridden: this.overriddenPaths() };
  }

  /** Re-reads config.json (e.g. on SIGHUP); keeps the old config on error. */
  reload(): ConfigUpdateResult {
    let file: Layer;
    try {
      file = readConfigFile(this.settings.configPath);
      const next = resolveConfig({ ...this.settings.layers, file }, this.settings.configPath);
      this.settings.layers.file = file;
      this.swap(next);
      return { ok: true, config: next, overridden: this.overriddenPaths() };
    } catch (err) {
      if (err instanceof ConfigError) {
        return { ok: false, issues: err.issues.length > 0 ? err.issues : [{ path: '', expected: 'valid JSON', got: err.message, source: this.settings.configPath }] };
      }
      throw err;
    }
  }

  private swap(next: ConsoleConfig): void {
    const previous = this.current;
    this.current = next;
    for (const listener of this.listeners) listener(next, previous);
  }

  private writeFile(file: Layer): void {
    mkdirSync(dirname(this.settings.configPath), { recursive: true });
    const tmp = `${this.settings.configPath}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
    renameSync(tmp, this.settings.configPath);
  }
}

export { formatIssues };
