import { Type } from '@sinclair/typebox';
import { createStore } from 'zustand/vanilla';
import type { ChatMessage } from '../../../../shared/client/apiTypes.js';
import type { ConsoleClient } from '../../../../shared/client/consoleClient.js';
import { ChatCompletionRequest } from '../../../../shared/contracts/engine.js';
import { validate } from '../../../../shared/contracts/validate.js';
import { errorText, fieldMessage } from '../../lib/format.js';

export interface ChatParamsState {
  temperature: number;
  max_tokens: number;
  top_p: number;
}

export interface ChatState {
  models: string[];
  model: string;
  system: string;
  params: ChatParamsState;
  messages: ChatMessage[];
  streaming: boolean;
  error: string | null;
  /** Time to first token (ms) and generation speed of the last reply. */
  stats: { ttftMs: number | null; tokensPerSecond: number | null; tokens: number } | null;
  loadModels(): Promise<void>;
  setModel(model: string): void;
  setSystem(text: string): void;
  setParam<K extends keyof ChatParamsState>(key: K, value: ChatParamsState[K]): void;
  send(text: string): Promise<void>;
  stop(): void;
  clear(): void;
}

/** The sampling fields of the OpenAI request the chat form edits (contract §3.4). */
const ChatParamsSchema = Type.Pick(ChatCompletionRequest, ['temperature', 'max_tokens', 'top_p']);

/** The server's own checks (the one `validate()`), shown before sending; every bad field, one per line. */
export function validateParams(p: ChatParamsState): string | null {
  const details = validate(ChatParamsSchema, p);
  return details.length === 0 ? null : details.map((d) => fieldMessage(d)).join('\n');
}

export function createChatStore(client: ConsoleClient, options: { now?: () => number } = {}) {
  const now = options.now ?? (() => performance.now());
  let controller: AbortController | null = null;
  return createStore<ChatState>()((set, get) => ({
    models: [],
    model: '',
    system: 'You are a helpful assistant.',
    params: { temperature: 0.7, max_tokens: 256, top_p: 0.9 },
    messages: [],
    streaming: false,
    error: null,
    stats: null,
    async loadModels() {
      try {
        const list = await client.openAiModels();
        const models = list.data.map((m) => m.id);
        set({ models, model: get().model && models.includes(get().model) ? get().model : (models[0] ?? '') });
      } catch (err) {
        set({ models: [], error: `Cannot list models: ${errorText(err)}` });
      }
    },
    setModel: (model) => set({ model }),
    setSystem: (system) => set({ system }),
    setParam: (key, value) => set({ params: { ...get().params, [key]: value } }),
    async send(text) {
      const s = get();
      if (s.streaming || !text.trim()) return;
      if (!s.model) {
        set({ error: 'Pick a model first (Models page: download or import one).' });
        return;
      }
      const invalid = validateParams(s.params);
      if (invalid) {
        set({ error: invalid });
        return;
      }
      const history: ChatMessage[] = [...s.messages, { role: 'user', content: text.trim() }];
      set({ messages: [...history, { role: 'assistant', content: '' }], streaming: true, error: null, stats: null });
      controller = new AbortController();
      const started = now();
      let first: number | null = null;
      let chunks = 0;
      let usageTokens: number | null = null;
      const append = (delta: string) => {
        const msgs = get().messages.slice();
        const last = msgs[msgs.length - 1];
        if (last) msgs[msgs.length - 1] = { ...last, content: last.content + delta };
        set({ messages: msgs });
      };
      const finish = () => {
        const end = now();
        const tokens = usageTokens ?? chunks;
        const genMs = first === null ? 0 : end - first;
        set({ stats: { ttftMs: first === null ? null : first - started, tokensPerSecond: genMs > 0 && tokens > 1 ? ((tokens - 1) / genMs) * 1000 : null, tokens } });
      };
      try {
        const messages = s.system.trim() ? [{ role: 'system' as const, content: s.system.trim() }, ...history] : history;
        await client.chatStream(
          { model: s.model, messages, ...s.params },
          {
            onDelta(delta) {
              if (first === null) first = now();
              chunks += 1;
              append(delta);
            },
            onUsage(u) {
              usageTokens = u.completion_tokens;
            },
          },
          controller.signal,
        );
      } catch (err) {
        if ((err as Error).name !== 'AbortError') set({ error: errorText(err) });
      } finally {
        controller = null;
        finish();
        set({ streaming: false });
      }
    },
    stop() {
      controller?.abort();
    },
    clear: () => set({ messages: [], stats: null, error: null }),
  }));
}
export type ChatStore = ReturnType<typeof createChatStore>;
