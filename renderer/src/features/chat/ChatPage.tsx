import { useEffect, useRef, useState, type FormEvent, type KeyboardEvent } from 'react';
import { useStore } from 'zustand';
import { useApp } from '../../app/context.js';
import { Empty, ErrorText } from '../../app/components.js';
import { num } from '../../lib/format.js';

export default function ChatPage() {
  const { chat, router } = useApp();
  const st = useStore(chat);
  const [text, setText] = useState('');
  const list = useRef<HTMLDivElement>(null);
  useEffect(() => {
    void chat.getState().loadModels();
  }, [chat]);
  useEffect(() => {
    list.current?.scrollTo({ top: list.current.scrollHeight });
  }, [st.messages]);

  const send = (e?: FormEvent) => {
    e?.preventDefault();
    const t = text;
    setText('');
    void chat.getState().send(t);
  };
  const onKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && !e.shiftKey) send(e);
  };
  return (
    <>
      <h2>Chat</h2>
      {st.models.length === 0 ? (
        <Empty title="No model to chat with">
          <p>
            Load or download a local model on the{' '}
            <a href="/models" onClick={(e) => { e.preventDefault(); router.getState().navigate('/models'); }}>Models</a> page, or configure a provider (e.g. NVIDIA) in Config → limiter.
          </p>
        </Empty>
      ) : null}
      <div className="card">
        <div className="form-grid">
          <label>
            Model
            <select value={st.model} onChange={(e) => chat.getState().setModel(e.target.value)}>
              {st.models.map((m) => <option key={m} value={m}>{m}</option>)}
            </select>
          </label>
          <label>
            Temperature
            <input type="number" step="0.1" min="0" max="2" value={st.params.temperature} onChange={(e) => chat.getState().setParam('temperature', Number(e.target.value))} />
          </label>
          <label>
            Max tokens
            <input type="number" min="1" step="1" value={st.params.max_tokens} onChange={(e) => chat.getState().setParam('max_tokens', Number(e.target.value))} />
          </label>
          <label>
            Top p
            <input type="number" step="0.05" min="0" max="1" value={st.params.top_p} onChange={(e) => chat.getState().setParam('top_p', Number(e.target.value))} />
          </label>
        </div>
        <label style={{ marginTop: 8 }}>
          System prompt
          <textarea rows={2} value={st.system} onChange={(e) => chat.getState().setSystem(e.target.value)} />
        </label>
      </div>
      <div className="card">
        <div className="messages" ref={list} aria-live="polite" data-testid="messages" tabIndex={0} aria-label="Conversation">
          {st.messages.length === 0 ? <p className="muted">Say something to the model.</p> : null}
          {st.messages.map((m, i) => (
            <div key={i} className={`msg ${m.role}`} data-testid={`msg-${m.role}`}>
              <span className="visually-hidden">{m.role}: </span>
              {m.content || (st.streaming && i === st.messages.length - 1 ? '…' : '')}
            </div>
          ))}
        </div>
        <ErrorText error={st.error} />
        <form onSubmit={send} className="row" style={{ marginTop: 8, alignItems: 'flex-end' }}>
          <label style={{ flex: 1 }}>
            Message
            <textarea rows={2} value={text} onChange={(e) => setText(e.target.value)} onKeyDown={onKey} placeholder="Enter to send, Shift+Enter for a new line" />
          </label>
          {st.streaming ? (
            <button type="button" className="danger" onClick={() => chat.getState().stop()}>Stop</button>
          ) : (
            <button type="submit" className="primary" disabled={!text.trim()}>Send</button>
          )}
          <button type="button" onClick={() => chat.getState().clear()} disabled={st.streaming}>Clear</button>
        </form>
        <p className="muted" data-testid="chat-stats">
          {st.stats ? `TTFT ${st.stats.ttftMs === null ? '—' : `${num(st.stats.ttftMs, 0)} ms`} · ${st.stats.tokensPerSecond === null ? '—' : num(st.stats.tokensPerSecond)} tokens/s · ${st.stats.tokens} tokens` : st.streaming ? 'Generating…' : ''}
        </p>
      </div>
    </>
  );
}
