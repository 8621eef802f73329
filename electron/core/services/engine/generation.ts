import { randomUUID } from 'node:crypto';
import type { TObject, TSchema } from '@sinclair/typebox';
import { AppError, ErrorCode } from '../../base/errors.js';
import { ChatCompletionRequest, GenerationParameters, type CompletionRequest } from '../../../../shared/contracts/engine.js';
import type { ChatInput, CompletionInput, GenerationResult, RunOptions, SamplingParams } from './engineService.js';
import type { QueuePosition } from './waitQueue.js';

/** What `EngineService.generate` runs: a raw completion or a chat completion. */
export type GenerationRequest = { kind: 'completion'; input: CompletionInput } | { kind: 'chat'; input: ChatInput };

/** Who asks and how urgently (the run options without the callbacks: those become events). */
export type GenerateOptions = Omit<RunOptions, 'onQueued' | 'onStart' | 'onText'>;

/**
 * One generation as a stream, the one thing every surface encodes: `queued` (0..n, whenever its
 * place changes), `started` (it holds a sequence), `text` (0..n), then exactly one of `done` or
 * `error` (an error may come before or after `started`).
 */
export type GenerationEvent =
  | { type: 'queued'; position: QueuePosition }
  | { type: 'started' }
  | { type: 'text'; text: string; tokens: number }
  | { type: 'done'; result: GenerationResult }
  | { type: 'error'; error: unknown };

/** An unbounded single-consumer queue of events, read with `for await`. */
export class EventChannel<T> implements AsyncIterable<T> {
  private buffer: T[] = [];
  private wake: (() => void) | null = null;
  private closed = false;

  push(value: T): void {
    this.buffer.push(value);
    this.notify();
  }

  close(): void {
    this.closed = true;
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for (;;) {
      if (this.buffer.length > 0) {
        const batch = this.buffer;
        this.buffer = [];
        yield* batch;
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}

/**
 * Runs a generation to its end: resolves with the result of its `done` event, rejects with the
 * error of its `error` event. `onEvent` sees every event on the way (queue places, text).
 */
export async function collect(events: AsyncIterable<GenerationEvent>, onEvent?: (event: GenerationEvent) => void): Promise<GenerationResult> {
  for await (const event of events) {
    onEvent?.(event);
    if (event.type === 'done') return event.result;
    if (event.type === 'error') throw event.error;
  }
  throw new AppError(ErrorCode.INTERNAL_ERROR, 'the generation ended without a result');
}

// ------------------------------------------------------------------ ids

/** Every id a generation surface hands out: `<prefix>-<hex>` (`chatcmpl-…`, `cmpl-…`, `gen-…`, `grpc-…`). */
export function newId(prefix: string, hexChars = 32): string {
  return `${prefix}-${randomUUID().replace(/-/g, '').slice(0, hexChars)}`;
}

/** A generation's id on the seed API and gRPC (`gen-` and 16 hex digits). */
export const generationId = (): string => newId('gen', 16);

/** A trace id for a request that brought none. */
export const newTraceId = (): string => `trace-${randomUUID()}`;

// ------------------------------------------------------------------ request normalisation

/** The `default` of `schema.properties[key]` (the contract says what an absent field means). */
function defaultOf<T>(schema: TObject, key: string): T {
  const value = (schema.properties[key] as TSchema | undefined)?.default as T | undefined;
  if (value === undefined) throw new Error(`the contract gives no default for '${key}'`);
  return value;
}

const REST = {
  maxTokens: defaultOf<number>(GenerationParameters, 'maxNewTokens'),
  temperature: defaultOf<number>(GenerationParameters, 'temperature'),
  topP: defaultOf<number>(GenerationParameters, 'topP'),
  repeatPenalty: defaultOf<number>(GenerationParameters, 'repetitionPenalty'),
};

const OPENAI = {
  maxTokens: defaultOf<number>(ChatCompletionRequest, 'max_tokens'),
  temperature: defaultOf<number>(ChatCompletionRequest, 'temperature'),
  topP: defaultOf<number>(ChatCompletionRequest, 'top_p'),
  repeatPenalty: defaultOf<number>(ChatCompletionRequest, 'repetition_penalty'),
};

/** Sampling of a seed-API `generation` (REST and gRPC), defaults from `GenerationParameters`. */
export function restSampling(g: GenerationParameters | undefined): SamplingParams {
  return {
    maxTokens: g?.maxNewTokens ?? REST.maxTokens,
    temperature: g?.temperature ?? REST.temperature,
    topP: g?.topP ?? REST.topP,
    repeatPenalty: g?.repetitionPenalty ?? REST.repeatPenalty,
    ...(g?.seed !== undefined ? { seed: g.seed } : {}),
    ...(g?.stop ? { stop: g.stop } : {}),
  };
}

/** Sampling of an OpenAI chat or legacy completion request, defaults from the contract's sampling fields. */
export function openAiSampling(body: ChatCompletionRequest | CompletionRequest): SamplingParams {
  const stop = body.stop === undefined || body.stop === null ? undefined : Array.isArray(body.stop) ? body.stop : [body.stop];
  return {
    maxTokens: body.max_completion_tokens ?? body.max_tokens ?? OPENAI.maxTokens,
    temperature: body.temperature ?? OPENAI.temperature,
    topP: body.top_p ?? OPENAI.topP,
    repeatPenalty: body.repetition_penalty ?? OPENAI.repeatPenalty,
    ...(body.frequency_penalty ? { frequencyPenalty: body.frequency_penalty } : {}),
    ...(body.presence_penalty ? { presencePenalty: body.presence_penalty } : {}),
    ...(body.seed !== undefined && body.seed !== null ? { seed: body.seed } : {}),
    ...(stop ? { stop } : {}),
  };
}
