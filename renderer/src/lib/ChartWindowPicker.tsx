import { WINDOWS } from './chartTypes.js';

/** The "Chart window" buttons the pages with live charts share (5 min, 1 h, 8 h). */
export function ChartWindowPicker({ windowMs, onChange }: { windowMs: number; onChange: (ms: number) => void }) {
  return (
    <div className="row" role="group" aria-label="Chart window">
      {WINDOWS.map((w) => (
        <button key={w.label} type="button" aria-pressed={windowMs === w.ms} className={windowMs === w.ms ? 'primary' : ''} onClick={() => onChange(w.ms)}>
          {w.label}
        </button>
      ))}
    </div>
  );
}
