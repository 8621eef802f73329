import { useState, type FormEvent } from 'react';
import { useStore } from 'zustand';
import { useApp } from './context.js';

/** Admin sign-in for browsers: paste the token once (kept in localStorage), or forget it. */
export function TokenPanel() {
  const { session } = useApp();
  const admin = useStore(session, (s) => s.admin);
  const fromPreload = useStore(session, (s) => s.fromPreload);
  const error = useStore(session, (s) => s.error);
  const [text, setText] = useState('');
  if (fromPreload) return null;
  if (admin) {
    return (
      <div className="conn">
        <span className="ok">Admin signed in</span>{' '}
        <button type="button" onClick={() => session.getState().forget()}>
          Forget token
        </button>
      </div>
    );
  }
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (await session.getState().useToken(text)) setText('');
  };
  return (
    <form className="conn" onSubmit={submit} aria-label="Admin sign-in">
      <label>
        Admin token
        <input type="password" value={text} onChange={(e) => setText(e.target.value)} autoComplete="off" placeholder="paste from DATA_DIR/admin-token" />
      </label>
      {error ? (
        <span className="field-error" role="alert">
          {error}
        </span>
      ) : null}
      <button type="submit" style={{ marginTop: 6 }}>
        Sign in
      </button>
    </form>
  );
}
