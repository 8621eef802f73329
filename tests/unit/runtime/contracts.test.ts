import { describe, expect, it } from 'vitest';
import { validateStartRequest } from '../../../shared/contracts/runtime.js';
import { ConfigError, loadSettings } from '../../../electron/core/base/config.js';
import { LineSplitter } from '../../../electron/core/base/managedProcess.js';
import { maskLogText } from '../../../electron/core/services/runtime/logText.js';
import { formatLocalTimestamp, formatRunId } from '../../../electron/core/services/runtime/runtimeService.js';

describe('runtime start request validation (§8.5)', () => {
  it('accepts a live request and normalises the legacy schedule mode', () => {
    const r = validateStartRequest({ mode: 'live', tickers: ['AAPL'], schedule_mode: 'intraday' });
    expect(r).toEqual({ ok: true, value: { mode: 'live', tickers: ['AAPL'], schedule_mode: 'interval' } });
    const d = validateStartRequest({ mode: 'live', tickers: ['AAPL'] });
    expect(d.ok && d.value.schedule_mode).toBe('daily');
  });

  it('lists every problem at once, in the seed wording', () => {
    const r = validateStartRequest({
      mode: 'backtest',
      tickers: [],
      initial_cash: -5,
      margin_requirement: 1.5,
      start_date: '2025-13-01',
      end_date: '2025/02/01',
      schedule_mode: 'weekly',
      extra: 1,
    });
    expect(r.ok).toBe(false);
    const issues = r.ok ? [] : r.issues;
    expect(issues).toEqual(
      expect.arrayContaining([
        'tickers must be a non-empty list of ticker symbols',
        'initial_cash must be greater than 0',
        'margin_requirement must be between 0 and 1',
        'end_date must be in YYYY-MM-DD format',
        "schedule_mode must be 'daily' or 'interval'",
        "unknown field 'extra'",
        'start_date is not a valid date: 2025-13-01',
      ]),
    );
  });

  it('needs backtest dates in order, and a mode', () => {
    const r = validateStartRequest({ mode: 'backtest', tickers: ['A'], start_date: '2025-03-01', end_date: '2025-02-01' });
    expect(r.ok ? [] : r.issues).toEqual(['start_date must be earlier than end_date']);
    const m = validateStartRequest({ tickers: ['A'] });
    expect(m.ok ? [] : m.issues).toEqual(["mode must be 'live' or 'backtest'"]);
    const missing = validateStartRequest({ mode: 'backtest', tickers: ['A'] });
    expect(missing.ok ? [] : missing.issues).toEqual(['start_date is required for backtest mode', 'end_date is required for backtest mode']);
    expect(validateStartRequest([1]).ok).toBe(false);
  });
});

describe('log text helpers', () => {
  it('masks secret assignments and secret env values', () => {
    const text = 'OPENAI_API_KEY=sk-abcdef123456 token: "zzzz9999yyyy" plain=visible; value hunter22secret';
    const masked = maskLogText(text, { DB_PASSWORD: 'hunter22secret' });
    expect(masked).toContain('OPENAI_API_KEY=sk-a****');
    expect(masked).toContain('token: "zzzz****');
    expect(masked).toContain('plain=visible');
    expect(masked).not.toContain('hunter22secret');
    expect(masked).not.toContain('abcdef123456');
  });

  it('splits chunks into lines and flushes the rest', () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l), 10);
    s.push('ab');
    s.push('c\r\nde\nfgh');
    s.push('ijklmnopqrstu');
    s.flush();
    expect(lines).toEqual(['abc', 'de', 'fghijklmno', 'pqrstu']);
  });

  it('formats run ids and contract timestamps', () => {
    const ms = new Date(2025, 3, 1, 12, 0, 5, 7).getTime();
    expect(formatRunId(ms)).toBe('20250401_120005');
    expect(formatLocalTimestamp(ms)).toBe('2025-04-01T12:00:05.007000');
  });
});

describe('runtime config section', () => {
  it('fills process defaults and lists every bad field of a process entry', () => {
    const ok = loadSettings({ dataDir: '/nonexistent-runtime-test', env: { CONSOLE_RUNTIME_ORPHAN_POLICY: 'kill' }, overrides: { runtime: { processes: [{ name: 'gw', command: 'x' }] } } });
    expect(ok.config.runtime.orphanPolicy).toBe('kill');
    expect(ok.config.runtime.processes[0]).toMatchObject({ args: [], env: {}, stopGraceSeconds: 10, startupWatchSeconds: 5, restart: { policy: 'never', initialDelaySeconds: 1, multiplier: 2 } });
    let err: unknown;
    try {
      loadSettings({ dataDir: '/nonexistent-runtime-test', env: {}, overrides: { runtime: { processes: [{ name: '../x', command: '', stopGraceSeconds: -1, restart: { policy: 'sometimes' }, bogus: 1 }] } } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues.map((i) => i.path).sort()).toEqual([
      'runtime.processes.0.bogus',
      'runtime.processes.0.command',
      'runtime.processes.0.name',
      'runtime.processes.0.restart.policy',
      'runtime.processes.0.stopGraceSeconds',
    ]);
  });
});
