import { describe, expect, it } from 'vitest';
import { AppError } from '../../../electron/core/base/errors.js';
import { toChatHistory, toFunctions } from '../../../electron/core/services/engine/chatHistory.js';

describe('OpenAI messages → node-llama-cpp chat history', () => {
  it('maps roles, text parts and tool calls with their results, ending with an empty model turn', () => {
    const history = toChatHistory([
      { role: 'system', content: 'sys' },
      { role: 'user', content: [{ type: 'text', text: 'what is ' }, { type: 'text', text: 'the weather?' }] },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
    ]);
    expect(history).toEqual([
      { type: 'system', text: 'sys' },
      { type: 'user', text: 'what is the weather?' },
      { type: 'model', response: [{ type: 'functionCall', name: 'get_weather', params: { city: 'Paris' }, result: 'sunny' }] },
      { type: 'model', response: [] },
    ]);
  });

  it('lists every malformed message in one 400', () => {
    let error: unknown;
    try {
      toChatHistory([
        { role: 'user', content: [{ type: 'image_url' }] },
        { role: 'assistant', tool_calls: [{ function: { name: 'f', arguments: '{not json' } }] },
        { role: 'tool', tool_call_id: 'nope', content: 'x' },
        { role: 'tool', content: 'x' },
        { role: 'user' },
      ]);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).status).toBe(400);
    expect((error as AppError).details?.map((d) => d.field)).toEqual([
      'messages.0.content.0',
      'messages.1.tool_calls.0.function.arguments',
      'messages.2.tool_call_id',
      'messages.3.tool_call_id',
      'messages.4.content',
    ]);
  });

  it('turns tools into functions with their JSON-schema parameters', () => {
    const params = { type: 'object', properties: { city: { type: 'string' } } };
    expect(toFunctions([{ type: 'function', function: { name: 'get_weather', description: 'weather', parameters: params } }, { type: 'function', function: { name: 'now' } }])).toEqual({
      get_weather: { description: 'weather', params },
      now: {},
    });
  });
});
