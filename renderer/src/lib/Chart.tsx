import { CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import { clockTime } from './format.js';

export interface ChartLine {
  key: string;
  name: string;
  color: string;
}

/**
 * A time-series line chart over pre-downsampled rows (`{t, <key>: value}`), animation off so
 * 1 Hz updates stay cheap.
 */
export function TimeChart({ rows, lines, label, unit, domain }: { rows: Array<Record<string, number>>; lines: ChartLine[]; label: string; unit?: string; domain?: [number | 'auto', number | 'auto'] }) {
  return (
    <figure className="chart" role="img" aria-label={`${label} chart`} style={{ margin: 0 }}>
      <ResponsiveContainer width="100%" height="100%">
        <LineChart data={rows} margin={{ top: 6, right: 12, bottom: 0, left: 0 }}>
          <CartesianGrid stroke="var(--border)" strokeDasharray="3 3" />
          <XAxis dataKey="t" type="number" domain={['dataMin', 'dataMax']} tickFormatter={(t: number) => clockTime(t)} stroke="var(--muted)" fontSize={11} />
          <YAxis stroke="var(--muted)" fontSize={11} width={44} domain={domain ?? [0, 'auto']} unit={unit} />
          <Tooltip labelFormatter={(t) => clockTime(Number(t))} contentStyle={{ background: 'var(--panel)', border: '1px solid var(--border)' }} />
          {lines.length > 1 ? <Legend /> : null}
          {lines.map((l) => (
            <Line key={l.key} dataKey={l.key} name={l.name} stroke={l.color} dot={false} isAnimationActive={false} strokeWidth={1.5} connectNulls />
          ))}
        </LineChart>
      </ResponsiveContainer>
    </figure>
  );
}

/** A loss-vs-step chart. */
export function StepChart({ rows, lines, label }: { rows: Array<Record<string, number | null | undefined>>; lines: ChartLine[]; label: string }) {
  return (
    <figure className="chart" role="img" aria-label={`${label} chart`} style={{ margin: 0 }}>
      <ResponsiveContainer width="100%" height="100%">
        <LineChart data={rows} margin={{ top: 6, right: 12, bottom: 0, left: 0 }}>
          <CartesianGrid stroke="var(--border)" strokeDasharray="3 3" />
          <XAxis dataKey="step" type="number" domain={['dataMin', 'dataMax']} stroke="var(--muted)" fontSize={11} />
          <YAxis stroke="var(--muted)" fontSize={11} width={44} domain={['auto', 'auto']} />
          <Tooltip contentStyle={{ background: 'var(--panel)', border: '1px solid var(--border)' }} />
          <Legend />
          {lines.map((l) => (
            <Line key={l.key} dataKey={l.key} name={l.name} stroke={l.color} dot={false} isAnimationActive={false} strokeWidth={1.5} connectNulls />
          ))}
        </LineChart>
      </ResponsiveContainer>
    </figure>
  );
}

export const WINDOWS = [
  { label: '5 min', ms: 5 * 60_000 },
  { label: '1 h', ms: 3_600_000 },
  { label: '8 h', ms: 8 * 3_600_000 },
] as const;
