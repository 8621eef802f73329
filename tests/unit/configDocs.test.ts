import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { annotatedConfigSchema, configSections, FLAG_FIELDS, type JsonSchemaNode } from '../../electron/core/base/config.js';
import { CONFIG_DOCS_PATH, renderConfigReference } from '../../scripts/gen-config-docs.js';

/** Every leaf and object of the schema with its dotted path (array items as `[]`). */
function walk(node: JsonSchemaNode, prefix: string, out: Array<[string, JsonSchemaNode]>): void {
  for (const [key, child] of Object.entries((node.properties as Record<string, JsonSchemaNode> | undefined) ?? {})) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (path === '$schema') continue;
    out.push([path, child]);
    walk(child, path, out);
    const items = child.items as JsonSchemaNode | undefined;
    if (items?.type === 'object') walk(items, `${path}[]`, out);
  }
}

describe('configuration reference', () => {
  it('docs/configuration.md is what `npm run docs:config` generates from the schemas (run it after changing a schema)', () => {
    expect(readFileSync(CONFIG_DOCS_PATH, 'utf8')).toBe(renderConfigReference());
  });

  it('every config field and section has a description', () => {
    const nodes: Array<[string, JsonSchemaNode]> = [];
    walk(annotatedConfigSchema(), '', nodes);
    expect(nodes.length).toBeGreaterThan(100);
    expect(nodes.filter(([, n]) => typeof n.description !== 'string' || n.description.length < 5).map(([p]) => p)).toEqual([]);
  });

  it('the served schema names the env var and flag of every pinnable field, from the one mapping', () => {
    const schema = annotatedConfigSchema();
    const nodes = new Map<string, JsonSchemaNode>();
    const list: Array<[string, JsonSchemaNode]> = [];
    walk(schema, '', list);
    for (const [p, n] of list) nodes.set(p, n);
    let count = 0;
    for (const [section, def] of Object.entries(configSections)) {
      for (const [env, field] of Object.entries(def.env)) {
        expect(nodes.get(`${section}.${field}`)?.['x-env'], env).toContain(env);
        count++;
      }
    }
    expect(count).toBeGreaterThan(40);
    for (const [flag, path] of Object.entries(FLAG_FIELDS)) expect(nodes.get(path)?.['x-flag']).toBe(`--${flag}`);
    expect(nodes.get('server.httpPort')).toMatchObject({ 'x-env': ['CONSOLE_HTTP_PORT'], 'x-flag': '--port', default: 8080 });
    // Fields without a variable carry no x-env.
    expect(nodes.get('server.bodyLimitBytes')?.['x-env']).toBeUndefined();
  });
});
