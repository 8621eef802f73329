import { Type, type Static } from '@sinclair/typebox';

/**
 * Engine wire schemas (contract §3, §5): the seed's `/api/v1/inference*` and models API
 * (camelCase), and the OpenAI-compatible `/v1` requests (snake_case). One schema per request;
 * the HTTP and gRPC adapters validate with these and list every bad field.
 */

const Ttl = Type.Integer({ minimum: 0, maximum: 7 * 24 * 3600, description: 'Idle seconds before this model unloads (overrides engine.idleTtlSeconds for it); 0 = never' });

/** REST `generation` (§3.1). */
export const GenerationParameters = Type.Object(
  {
    maxNewTokens: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, default: 256 })),
    temperature: Type.Optional(Type.Number({ minimum: 0, maximum: 2, default: 0.7 })),
    topP: Type.Optional(Type.Number({ minimum: 0, maximum: 1, default: 0.95 })),
    repetitionPenalty: Type.Optional(Type.Number({ minimum: 0, maximum: 10, default: 1.0 })),
    /** Extension: sampling seed (deterministic output for a given model, prompt and seed). */
    seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 4_294_967_295 })),
    /** Extension: stop strings. */
    stop: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { maxItems: 16 })),
  },
  { additionalProperties: false },
);
export type GenerationParameters = Static<typeof GenerationParameters>;

/** `POST /api/v1/inference` and `/api/v1/inference/stream` (§3.1, §3.2). */
export const InferenceRequest = Type.Object(
  {
    modelId: Type.String({ minLength: 1, maxLength: 255 }),
    prompt: Type.String(),
    adapter: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    generation: Type.Optional(GenerationParameters),
    ttl: Type.Optional(Ttl),
  },
  { additionalProperties: false },
);
export type InferenceRequest = Static<typeof InferenceRequest>;

/** `metadata` of streamWithMetadata: camelCase canonical, snake_case accepted (§3.3). */
export const StreamMetadata = Type.Object(
  {
    traceId: Type.Optional(Type.String({ maxLength: 200 })),
    trace_id: Type.Optional(Type.String({ maxLength: 200 })),
    tenant: Type.Optional(Type.String({ maxLength: 200 })),
    playerId: Type.Optional(Type.String({ maxLength: 200 })),
    player_id: Type.Optional(Type.String({ maxLength: 200 })),
    locale: Type.Optional(Type.String({ maxLength: 50 })),
  },
  { additionalProperties: false },
);

/** `POST /api/v1/inference/streamWithMetadata` (§3.3). */
export const StreamWithMetadataRequest = Type.Object(
  {
    modelId: Type.String({ minLength: 1, maxLength: 255 }),
    prompt: Type.String(),
    adapter: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    generation: Type.Optional(GenerationParameters),
    metadata: Type.Optional(StreamMetadata),
    ttl: Type.Optional(Ttl),
  },
  { additionalProperties: false },
);
export type StreamWithMetadataRequest = Static<typeof StreamWithMetadataRequest>;

export const ModelIdParams = Type.Object({ modelId: Type.String({ minLength: 1, maxLength: 255 }) });
export type ModelIdParams = Static<typeof ModelIdParams>;

/** `POST /api/v1/models/{modelId}/load` (design decision: load ahead of the first request). */
export const ModelLoadRequest = Type.Object({ ttl: Type.Optional(Ttl) }, { additionalProperties: false });
export type ModelLoadRequest = Static<typeof ModelLoadRequest>;

export const ModelStatus = Type.Union([Type.Literal('ready'), Type.Literal('loading'), Type.Literal('error'), Type.Literal('unloaded')]);
export type ModelStatus = Static<typeof ModelStatus>;

/** One entry of `GET /api/v1/models` (§5.1). */
export const ModelSummary = Type.Object({
  id: Type.String(),
  name: Type.String(),
  engine: Type.String(),
  status: ModelStatus,
  capabilities: Type.Array(Type.String()),
  maxModelLen: Type.Optional(Type.Integer()),
  loraAdapters: Type.Optional(Type.Array(Type.String())),
  error: Type.Optional(Type.String()),
});
export type ModelSummary = Static<typeof ModelSummary>;

/** `GET /api/v1/models/{modelId}` (§5.2). */
export const ModelDetails = Type.Object({
  id: Type.String(),
  name: Type.String(),
  engine: Type.String(),
  modelPath: Type.String(),
  status: ModelStatus,
  capabilities: Type.Array(Type.String()),
  sizeBytes: Type.Integer(),
  architecture: Type.Optional(Type.String()),
  error: Type.Optional(Type.String()),
  config: Type.Object({
    maxModelLen: Type.Optional(Type.Integer()),
    contextSize: Type.Optional(Type.Integer()),
    parallel: Type.Integer(),
    gpuLayers: Type.Union([Type.Integer(), Type.Literal('auto')]),
    idleTtlSeconds: Type.Integer(),
  }),
  activeSequences: Type.Integer(),
  queued: Type.Integer(),
});
export type ModelDetails = Static<typeof ModelDetails>;

// ---------------------------------------------------------------- OpenAI-compatible (/v1)

const StopField = Type.Union([Type.String(), Type.Array(Type.String(), { maxItems: 16 }), Type.Null()]);

const ContentPart = Type.Object({ type: Type.String(), text: Type.Optional(Type.String()) });

export const ChatToolCall = Type.Object({
  id: Type.Optional(Type.String()),
  type: Type.Optional(Type.Literal('function')),
  function: Type.Object({ name: Type.String({ minLength: 1 }), arguments: Type.String() }),
});

export const ChatMessage = Type.Object({
  role: Type.Union([Type.Literal('system'), Type.Literal('developer'), Type.Literal('user'), Type.Literal('assistant'), Type.Literal('tool')]),
  content: Type.Optional(Type.Union([Type.String(), Type.Array(ContentPart), Type.Null()])),
  name: Type.Optional(Type.String()),
  tool_calls: Type.Optional(Type.Array(ChatToolCall)),
  tool_call_id: Type.Optional(Type.String()),
});
export type ChatMessage = Static<typeof ChatMessage>;

export const ChatTool = Type.Object({
  type: Type.Literal('function'),
  function: Type.Object({
    name: Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-zA-Z0-9_-]+$' }),
    description: Type.Optional(Type.String()),
    parameters: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  }),
});
export type ChatTool = Static<typeof ChatTool>;

export const ResponseFormat = Type.Union([
  Type.Object({ type: Type.Literal('text') }),
  Type.Object({ type: Type.Literal('json_object') }),
  Type.Object({
    type: Type.Literal('json_schema'),
    json_schema: Type.Object({ name: Type.Optional(Type.String()), schema: Type.Record(Type.String(), Type.Unknown()), strict: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])) }),
  }),
]);
export type ResponseFormat = Static<typeof ResponseFormat>;

/**
 * Fields shared by chat and legacy completions (OpenAI names; unknown extra fields are ignored like OpenAI's SDKs expect).
 * A `default` here is what an absent (or null) field means; the engine's request normalisation reads it.
 */
const SamplingFields = {
  model: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
  max_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 1, maximum: 1_000_000 }), Type.Null()], { default: 256 })),
  max_completion_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 1, maximum: 1_000_000 }), Type.Null()])),
  temperature: Type.Optional(Type.Union([Type.Number({ minimum: 0, maximum: 2 }), Type.Null()], { default: 0.7 })),
  top_p: Type.Optional(Type.Union([Type.Number({ minimum: 0, maximum: 1 }), Type.Null()], { default: 0.9 })),
  repetition_penalty: Type.Optional(Type.Number({ minimum: 0, maximum: 10, default: 1.0 })),
  frequency_penalty: Type.Optional(Type.Union([Type.Number({ minimum: -2, maximum: 2 }), Type.Null()])),
  presence_penalty: Type.Optional(Type.Union([Type.Number({ minimum: -2, maximum: 2 }), Type.Null()])),
  seed: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: 4_294_967_295 }), Type.Null()])),
  stop: Type.Optional(StopField),
  n: Type.Optional(Type.Union([Type.Literal(1), Type.Null()])),
  stream: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
  stream_options: Type.Optional(Type.Union([Type.Object({ include_usage: Type.Optional(Type.Boolean()) }), Type.Null()])),
  ttl: Type.Optional(Ttl),
  // Accepted only with the values that mean "off": the local engine does not compute them, and a
  // request that needs them gets a 400 naming the field rather than a silently different answer.
  logprobs: Type.Optional(Type.Union([Type.Literal(false), Type.Null()], { description: 'log probabilities are not supported by the local engine' })),
  top_logprobs: Type.Optional(Type.Union([Type.Literal(0), Type.Null()], { description: 'log probabilities are not supported by the local engine' })),
  best_of: Type.Optional(Type.Union([Type.Literal(1), Type.Null()])),
  logit_bias: Type.Optional(Type.Union([Type.Null(), Type.Record(Type.String(), Type.Number(), { maxProperties: 0 })])),
};

/** `POST /v1/chat/completions` (§3.4). */
export const ChatCompletionRequest = Type.Object({
  ...SamplingFields,
  messages: Type.Array(ChatMessage, { minItems: 1 }),
  response_format: Type.Optional(ResponseFormat),
  tools: Type.Optional(Type.Array(ChatTool, { maxItems: 128 })),
  tool_choice: Type.Optional(Type.Union([Type.Literal('none'), Type.Literal('auto'), Type.Literal('required'), Type.Object({ type: Type.Literal('function'), function: Type.Object({ name: Type.String() }) })])),
});
export type ChatCompletionRequest = Static<typeof ChatCompletionRequest>;

/** `POST /v1/completions` (§3.4). */
export const CompletionRequest = Type.Object({
  ...SamplingFields,
  prompt: Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1, maxItems: 1 })]),
  echo: Type.Optional(Type.Union([Type.Literal(false), Type.Null()])),
  suffix: Type.Optional(Type.Null()),
});
export type CompletionRequest = Static<typeof CompletionRequest>;

/** `POST /v1/embeddings`. */
export const EmbeddingRequest = Type.Object({
  model: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
  input: Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1, maxItems: 2048 })]),
  encoding_format: Type.Optional(Type.Union([Type.Literal('float'), Type.Literal('base64')])),
  dimensions: Type.Optional(Type.Integer({ minimum: 1 })),
  user: Type.Optional(Type.String()),
  ttl: Type.Optional(Ttl),
});
export type EmbeddingRequest = Static<typeof EmbeddingRequest>;

/** `GET /api/v1/models` (§5.1). */
export const ModelListResponse = Type.Object({ models: Type.Array(ModelSummary) });
export type ModelListResponse = Static<typeof ModelListResponse>;

/** One model of `GET /v1/models` (OpenAI list; a provider may add fields). */
export const OpenAiModel = Type.Object(
  { id: Type.String(), object: Type.Literal('model'), created: Type.Integer(), owned_by: Type.String() },
  { additionalProperties: true },
);
export type OpenAiModel = Static<typeof OpenAiModel>;

/** `GET /v1/models`: local and provider models together. */
export const OpenAiModelList = Type.Object({ object: Type.Literal('list'), data: Type.Array(OpenAiModel) });
export type OpenAiModelList = Static<typeof OpenAiModelList>;
