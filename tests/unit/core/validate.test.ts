import { Type } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import { coerce, parseWithDefaults, validate } from '../../../shared/contracts/validate.js';
import { StartTrainingRequest } from '../../../shared/contracts/training.js';

const Body = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 8 }),
    ttl: Type.Optional(Type.Integer({ minimum: 1, maximum: 7200 })),
    mode: Type.Optional(Type.Union([Type.Literal('live'), Type.Literal('backtest')])),
    format: Type.Optional(Type.Union([Type.Object({ type: Type.Literal('text') }), Type.Object({ type: Type.Literal('json_schema'), schema: Type.Object({}) })])),
    tags: Type.Optional(Type.Array(Type.String())),
    on: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

describe('validate()', () => {
  it('a valid value has no details', () => {
    expect(validate(Body, { name: 'a', ttl: 5 })).toEqual([]);
  });

  it('lists every bad field once, in one wording', () => {
    const details = validate(Body, { ttl: 9000, extra: 1, mode: 'paper', format: { type: 'xml' } });
    expect([...details].sort((a, b) => (a.field ?? '').localeCompare(b.field ?? ''))).toEqual([
      { type: 'validation', field: 'extra', description: 'is not a known field' },
      { type: 'validation', field: 'format.type', description: 'must be one of "text", "json_schema", got "xml"' },
      { type: 'validation', field: 'mode', description: 'must be one of "live", "backtest", got "paper"' },
      { type: 'validation', field: 'name', description: 'is required' },
      { type: 'validation', field: 'ttl', description: 'expected integer to be less or equal to 7200, got 9000' },
    ]);
  });

  it('an empty required string reads as required; a whole-value problem names the root', () => {
    expect(validate(Body, { name: '' })).toEqual([{ type: 'validation', field: 'name', description: 'is required' }]);
    expect(validate(Body, null)).toEqual([{ type: 'validation', field: 'body', description: 'expected object, got null' }]);
    expect(validate(Body, 'x', { prefix: 'query.' })[0]?.field).toBe('query');
  });

  it('prefixes and renames fields for the query string and gRPC names', () => {
    expect(validate(Body, { name: 'a', ttl: 0 }, { prefix: 'query.' })).toEqual([{ type: 'validation', field: 'query.ttl', description: 'expected integer to be greater or equal to 1, got 0' }]);
    expect(validate(Body, { ttl: 1 }, { rename: { name: 'task_name' } })[0]?.field).toBe('task_name');
  });

  it('says Infinity and NaN as such (a JSON 1e999 parses to Infinity)', () => {
    expect(validate(Body, { name: 'a', ttl: Infinity })[0]?.description).toBe('expected integer, got Infinity');
  });

  it('parseWithDefaults fills defaults on a copy and returns details on failure', () => {
    const input = { baseModel: 'tiny', outputDir: 'out', datasetPath: 'd.jsonl' };
    const ok = parseWithDefaults(StartTrainingRequest, input);
    expect(ok.ok && ok.value.hyperParams.epochs).toBe(3);
    expect(input).not.toHaveProperty('hyperParams');
    const bad = parseWithDefaults(StartTrainingRequest, { ...input, baseModel: '', hyperParams: { epochs: 0 } });
    expect(bad.ok ? [] : bad.details.map((d) => d.field)).toEqual(['baseModel', 'hyperParams.epochs']);
  });
});

describe('coerce()', () => {
  it('turns text inputs into the schema types (as a query string needs)', () => {
    expect(coerce(Body, { name: 5, ttl: '30', tags: 'a', on: 'true' })).toEqual({ name: '5', ttl: 30, tags: ['a'], on: true });
  });

  it('leaves what does not convert for validate() to report; 1e999 becomes Infinity and fails', () => {
    const v = coerce(Body, { name: 'a', ttl: 'abc', on: 'perhaps' });
    expect(validate(Body, v).map((d) => d.field)).toEqual(['ttl', 'on']);
    expect(validate(Body, coerce(Body, { name: 'a', ttl: '1e999' }))[0]?.description).toBe('expected integer, got Infinity');
  });
});
