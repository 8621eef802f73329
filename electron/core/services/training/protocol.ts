/**
 * The JSON-lines protocol every trainer speaks on stdout (the native `llama` trainer and any
 * `command` trainer): one JSON object per line, `type` first. Unknown types are ignored (so
 * trainers can add their own), malformed lines are reported, never thrown.
 *
 *   {"type":"start","totalSteps":38,"stepsPerEpoch":19,...}
 *   {"type":"progress","epoch":1,"step":3,"totalSteps":38,"loss":5.1,"accuracy":0.2,"learningRate":2e-4,"valLoss"?:..}
 *   {"type":"eval","epoch":1,"step":19,"valLoss":3.5,"valAccuracy":0.66}
 *   {"type":"epoch","epoch":1,"step":19,"loss":4.5,"valLoss":3.5,"seconds":2.1,"tokensPerSecond":2683,...}
 *   {"type":"checkpoint","step":100,"path":"/.../checkpoint-step-100.gguf"}
 *   {"type":"log","level":"info","message":"..."}
 *   {"type":"done","output":"/.../model.gguf"}
 *   {"type":"error","message":"dataset too small"}
 *   {"type":"cancelled"}
 */

export interface StartMessage {
  type: 'start';
  totalSteps: number;
  stepsPerEpoch?: number;
  epochs?: number;
}
export interface ProgressMessage {
  type: 'progress';
  epoch: number;
  step: number;
  totalSteps: number;
  loss?: number;
  accuracy?: number;
  learningRate?: number;
  valLoss?: number;
}
export interface EvalMessage {
  type: 'eval';
  epoch: number;
  step: number;
  valLoss: number;
  valAccuracy?: number;
}
export interface EpochMessage {
  type: 'epoch';
  epoch: number;
  step: number;
  loss?: number;
  accuracy?: number;
  valLoss?: number;
  valAccuracy?: number;
  seconds?: number;
  tokensPerSecond?: number;
}
export interface CheckpointMessage {
  type: 'checkpoint';
  step: number;
  path: string;
}
export interface LogMessage {
  type: 'log';
  level: 'info' | 'warn' | 'error';
  message: string;
}
export interface DoneMessage {
  type: 'done';
  output: string;
}
export interface ErrorMessage {
  type: 'error';
  message: string;
}
export interface CancelledMessage {
  type: 'cancelled';
}

export type TrainerMessage =
  | StartMessage
  | ProgressMessage
  | EvalMessage
  | EpochMessage
  | CheckpointMessage
  | LogMessage
  | DoneMessage
  | ErrorMessage
  | CancelledMessage;

export type ParsedLine = { ok: true; message: TrainerMessage } | { ok: false; reason: string } | { ok: 'ignored' };

type Obj = Record<string, unknown>;

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
/** A finite number, or undefined for absent/null (trainers send null for NaN). */
function optNumber(o: Obj, key: string): number | undefined | 'bad' {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  return finite(v) ? v : 'bad';
}
function intField(o: Obj, key: string): number | 'bad' {
  const v = o[key];
  return finite(v) && Number.isInteger(v) && v >= 0 ? v : 'bad';
}

/** Parses one stdout line of a trainer. Blank lines are ignored. */
export function parseTrainerLine(line: string): ParsedLine {
  const text = line.trim();
  if (text === '') return { ok: 'ignored' };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: `not JSON: ${text.slice(0, 200)}` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, reason: 'not a JSON object' };
  const o = value as Obj;
  const bad = (what: string): ParsedLine => ({ ok: false, reason: `${String(o.type)} line: ${what}` });
  switch (o.type) {
    case 'start': {
      const totalSteps = intField(o, 'totalSteps');
      if (totalSteps === 'bad') return bad('totalSteps must be a non-negative integer');
      const stepsPerEpoch = optNumber(o, 'stepsPerEpoch');
      const epochs = optNumber(o, 'epochs');
      return {
        ok: true,
        message: {
          type: 'start',
          totalSteps,
          ...(stepsPerEpoch !== undefined && stepsPerEpoch !== 'bad' ? { stepsPerEpoch } : {}),
          ...(epochs !== undefined && epochs !== 'bad' ? { epochs } : {}),
        },
      };
    }
    case 'progress': {
      const epoch = intField(o, 'epoch');
      const step = intField(o, 'step');
      const totalSteps = intField(o, 'totalSteps');
      const loss = optNumber(o, 'loss');
      const accuracy = optNumber(o, 'accuracy');
      const learningRate = optNumber(o, 'learningRate');
      const valLoss = optNumber(o, 'valLoss');
      if (epoch === 'bad' || step === 'bad' || totalSteps === 'bad') return bad('epoch, step and totalSteps must be non-negative integers');
      if (loss === 'bad' || accuracy === 'bad' || learningRate === 'bad' || valLoss === 'bad') return bad('loss, accuracy, learningRate and valLoss must be numbers');
      return {
        ok: true,
        message: {
          type: 'progress',
          epoch,
          step,
          totalSteps,
          ...(loss !== undefined ? { loss } : {}),
          ...(accuracy !== undefined ? { accuracy } : {}),
          ...(learningRate !== undefined ? { learningRate } : {}),
          ...(valLoss !== undefined ? { valLoss } : {}),
        },
      };
    }
    case 'eval': {
      const epoch = intField(o, 'epoch');
      const step = intField(o, 'step');
      const valLoss = optNumber(o, 'valLoss');
      const valAccuracy = optNumber(o, 'valAccuracy');
      if (epoch === 'bad' || step === 'bad') return bad('epoch and step must be non-negative integers');
      if (valLoss === undefined || valLoss === 'bad' || valAccuracy === 'bad') return bad('valLoss must be a number');
      return { ok: true, message: { type: 'eval', epoch, step, valLoss, ...(valAccuracy !== undefined ? { valAccuracy } : {}) } };
    }
    case 'epoch': {
      const epoch = intField(o, 'epoch');
      const step = intField(o, 'step');
      if (epoch === 'bad' || step === 'bad') return bad('epoch and step must be non-negative integers');
      const out: EpochMessage = { type: 'epoch', epoch, step };
      for (const key of ['loss', 'accuracy', 'valLoss', 'valAccuracy', 'seconds', 'tokensPerSecond'] as const) {
        const v = optNumber(o, key);
        if (v === 'bad') return bad(`${key} must be a number`);
        if (v !== undefined) out[key] = v;
      }
      return { ok: true, message: out };
    }
    case 'checkpoint': {
      const step = intField(o, 'step');
      if (step === 'bad' || typeof o.path !== 'string') return bad('step and path are required');
      return { ok: true, message: { type: 'checkpoint', step, path: o.path } };
    }
    case 'log': {
      const level = o.level === 'warn' || o.level === 'error' ? o.level : 'info';
      if (typeof o.message !== 'string') return bad('message must be a string');
      return { ok: true, message: { type: 'log', level, message: o.message } };
    }
    case 'done':
      if (typeof o.output !== 'string' || o.output === '') return bad('output must name the trained model file');
      return { ok: true, message: { type: 'done', output: o.output } };
    case 'error':
      return { ok: true, message: { type: 'error', message: typeof o.message === 'string' ? o.message : 'trainer reported an error' } };
    case 'cancelled':
      return { ok: true, message: { type: 'cancelled' } };
    default:
      return typeof o.type === 'string' ? { ok: 'ignored' } : { ok: false, reason: 'missing "type"' };
  }
}
