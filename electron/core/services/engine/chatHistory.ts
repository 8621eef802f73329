import type { ChatHistoryItem, ChatModelFunctionCall, ChatModelFunctions, GbnfJsonSchema } from 'node-llama-cpp';
import type { ChatMessage, ChatTool } from '../../../../shared/contracts/engine.js';
import { invalidRequest, type ErrorDetail } from '../../base/errors.js';

function textOf(content: ChatMessage['content']): string {
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  return content.map((p) => p.text ?? '').join('');
}

/**
 * OpenAI `messages` → node-llama-cpp chat history, ending with an empty model turn to generate.
 * Assistant `tool_calls` become function calls whose results are the following `tool` messages.
 * Throws 400 naming every malformed message.
 */
export function toChatHistory(messages: readonly ChatMessage[]): ChatHistoryItem[] {
  const details: ErrorDetail[] = [];
  const history: ChatHistoryItem[] = [];
  const pendingCalls = new Map<string, ChatModelFunctionCall>();
  messages.forEach((m, i) => {
    const field = `messages.${i}`;
    if (Array.isArray(m.content)) {
      m.content.forEach((part, j) => {
        if (part.type !== 'text' || typeof part.text !== 'string') {
          details.push({ type: 'unsupported', field: `${field}.content.${j}`, description: `content part of type '${part.type}' is not supported (text only)` });
        }
      });
    }
    switch (m.role) {
      case 'system':
      case 'developer':
        history.push({ type: 'system', text: textOf(m.content) });
        break;
      case 'user':
        if (m.content === undefined || m.content === null) details.push({ type: 'missing', field: `${field}.content`, description: 'a user message needs content' });
        history.push({ type: 'user', text: textOf(m.content) });
        break;
      case 'assistant': {
        const response: ChatHistoryItem & { type: 'model' } = { type: 'model', response: [] };
        const text = textOf(m.content);
        if (text !== '') response.response.push(text);
        for (const [j, call] of (m.tool_calls ?? []).entries()) {
          let params: unknown;
          try {
            params = call.function.arguments === '' ? undefined : JSON.parse(call.function.arguments);
          } catch {
            details.push({ type: 'invalid_json', field: `${field}.tool_calls.${j}.function.arguments`, description: 'is not valid JSON' });
          }
          const item: ChatModelFunctionCall = { type: 'functionCall', name: call.function.name, params, result: undefined };
          response.response.push(item);
          if (call.id) pendingCalls.set(call.id, item);
        }
        if (response.response.length === 0 && (m.content === undefined || m.content === null)) {
          details.push({ type: 'missing', field: `${field}.content`, description: 'an assistant message needs content or tool_calls' });
        }
        history.push(response);
        break;
      }
      case 'tool': {
        const call = m.tool_call_id ? pendingCalls.get(m.tool_call_id) : undefined;
        if (!m.tool_call_id) details.push({ type: 'missing', field: `${field}.tool_call_id`, description: 'a tool message needs tool_call_id' });
        else if (!call) details.push({ type: 'invalid', field: `${field}.tool_call_id`, description: `no earlier assistant tool call has id '${m.tool_call_id}'` });
        else call.result = textOf(m.content);
        break;
      }
    }
  });
  if (details.length > 0) throw invalidRequest('Invalid messages', details);
  history.push({ type: 'model', response: [] });
  return history;
}

/** OpenAI `tools` → node-llama-cpp functions (their JSON schemas become grammars). */
export function toFunctions(tools: readonly ChatTool[]): ChatModelFunctions {
  const out: Record<string, { description?: string; params?: GbnfJsonSchema }> = {};
  for (const t of tools) {
    out[t.function.name] = {
      ...(t.function.description ? { description: t.function.description } : {}),
      ...(t.function.parameters ? { params: t.function.parameters as GbnfJsonSchema } : {}),
    };
  }
  return out;
}
