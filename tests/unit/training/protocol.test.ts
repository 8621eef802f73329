import { describe, expect, it } from 'vitest';
import { LineSplitter } from '../../../electron/core/base/managedProcess.js';
import { parseTrainerLine } from '../../../electron/core/services/training/protocol.js';

describe('trainer JSON-lines protocol', () => {
  it('parses every message type the trainers send', () => {
    expect(parseTrainerLine('{"type":"start","totalSteps":38,"stepsPerEpoch":19,"epochs":2}')).toEqual({
      ok: true,
      message: { type: 'start', totalSteps: 38, stepsPerEpoch: 19, epochs: 2 },
    });
    expect(parseTrainerLine('{"type":"progress","epoch":1,"step":3,"totalSteps":38,"loss":5.1,"accuracy":0.2,"learningRate":0.001}')).toEqual({
      ok: true,
      message: { type: 'progress', epoch: 1, step: 3, totalSteps: 38, loss: 5.1, accuracy: 0.2, learningRate: 0.001 },
    });
    expect(parseTrainerLine('{"type":"eval","epoch":1,"step":19,"valLoss":3.5,"valAccuracy":0.66}')).toEqual({
      ok: true,
      message: { type: 'eval', epoch: 1, step: 19, valLoss: 3.5, valAccuracy: 0.66 },
    });
    expect(parseTrainerLine('{"type":"epoch","epoch":1,"step":19,"loss":4.5,"valLoss":null,"seconds":2.1,"tokensPerSecond":2683}')).toEqual({
      ok: true,
      message: { type: 'epoch', epoch: 1, step: 19, loss: 4.5, seconds: 2.1, tokensPerSecond: 2683 },
    });
    expect(parseTrainerLine('{"type":"checkpoint","step":100,"path":"/o/c.gguf"}')).toEqual({ ok: true, message: { type: 'checkpoint', step: 100, path: '/o/c.gguf' } });
    expect(parseTrainerLine('{"type":"log","level":"warn","message":"hm"}')).toEqual({ ok: true, message: { type: 'log', level: 'warn', message: 'hm' } });
    expect(parseTrainerLine('{"type":"done","output":"/o/model.gguf"}')).toEqual({ ok: true, message: { type: 'done', output: '/o/model.gguf' } });
    expect(parseTrainerLine('{"type":"error","message":"dataset too small"}')).toEqual({ ok: true, message: { type: 'error', message: 'dataset too small' } });
    expect(parseTrainerLine('{"type":"cancelled"}')).toEqual({ ok: true, message: { type: 'cancelled' } });
  });

  it('treats null numbers (NaN in the trainer) as absent', () => {
    expect(parseTrainerLine('{"type":"progress","epoch":1,"step":1,"totalSteps":2,"loss":null}')).toEqual({
      ok: true,
      message: { type: 'progress', epoch: 1, step: 1, totalSteps: 2 },
    });
  });

  it('reports malformed lines without throwing, and ignores blank lines and unknown types', () => {
    expect(parseTrainerLine('')).toEqual({ ok: 'ignored' });
    expect(parseTrainerLine('{"type":"custom-metric","x":1}')).toEqual({ ok: 'ignored' });
    expect(parseTrainerLine('loading model...')).toMatchObject({ ok: false, reason: expect.stringMatching(/^not JSON/) });
    expect(parseTrainerLine('[1,2]')).toMatchObject({ ok: false });
    expect(parseTrainerLine('{"no":"type"}')).toMatchObject({ ok: false, reason: 'missing "type"' });
    expect(parseTrainerLine('{"type":"progress","epoch":1,"step":-1,"totalSteps":2}')).toMatchObject({ ok: false });
    expect(parseTrainerLine('{"type":"progress","epoch":1,"step":1.5,"totalSteps":2}')).toMatchObject({ ok: false });
    expect(parseTrainerLine('{"type":"progress","epoch":1,"step":1,"totalSteps":2,"loss":"low"}')).toMatchObject({ ok: false });
    expect(parseTrainerLine('{"type":"eval","epoch":1,"step":1}')).toMatchObject({ ok: false });
    expect(parseTrainerLine('{"type":"done"}')).toMatchObject({ ok: false });
    expect(parseTrainerLine('{"type":"start"}')).toMatchObject({ ok: false });
  });

  it('splits a chunked stream into lines, including \\r\\n and a last line without newline', () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l));
    s.push('{"a":');
    s.push('1}\r\n{"b"');
    s.push(':2}\nlast');
    expect(lines).toEqual(['{"a":1}', '{"b":2}']);
    s.flush();
    expect(lines).toEqual(['{"a":1}', '{"b":2}', 'last']);
  });

  it('cuts an endless line instead of buffering it forever', () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l), 10);
    s.push('x'.repeat(25));
    expect(lines).toEqual(['x'.repeat(10), 'x'.repeat(10)]);
  });
});
