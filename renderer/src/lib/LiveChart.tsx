import { memo, useEffect, useRef, useState } from 'react';
import type { ChartLine } from './chartTypes.js';
import { clockTime } from './format.js';

const HEIGHT = 200;
const PAD = { left: 44, right: 10, top: 8, bottom: 22 };

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  const m = v / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

function fmt(v: number): string {
  return Math.abs(v) >= 1000 ? `${Math.round(v / 100) / 10}k` : Math.abs(v) >= 10 ? String(Math.round(v)) : String(Math.round(v * 100) / 100);
}

/**
 * The 1 Hz live time-series chart: plain SVG polylines over pre-downsampled rows. A recharts
 * chart re-render cost ~100 ms per tick on the 2-core VM (a long task every second, see the
 * dashboard bench), this one well under a millisecond; recharts stays for the training loss chart.
 */
export const LiveChart = memo(function LiveChart({ rows, lines, label, unit = '', domain }: { rows: Array<Record<string, number>>; lines: ChartLine[]; label: string; unit?: string; domain?: [number, number] }) {
  const box = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(600);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(([entry]) => entry && setWidth(Math.max(200, Math.round(entry.contentRect.width))));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  const t0 = rows[0]?.t ?? 0;
  const t1 = rows[rows.length - 1]?.t ?? 1;
  let max = domain?.[1] ?? 0;
  if (!domain) for (const r of rows) for (const l of lines) if (typeof r[l.key] === 'number' && (r[l.key] as number) > max) max = r[l.key] as number;
  const yMax = domain ? domain[1] : niceMax(max);
  const yMin = domain ? domain[0] : 0;
  const w = width - PAD.left - PAD.right;
  const h = HEIGHT - PAD.top - PAD.bottom;
  const x = (t: number) => PAD.left + (t1 === t0 ? w : ((t - t0) / (t1 - t0)) * w);
  const y = (v: number) => PAD.top + h - ((Math.min(Math.max(v, yMin), yMax) - yMin) / (yMax - yMin || 1)) * h;
  const yTicks = [0, 0.25, 0.5, 0.75, 1].map((f) => yMin + f * (yMax - yMin));
  const xTicks = rows.length > 1 ? [0, 1 / 3, 2 / 3, 1].map((f) => t0 + f * (t1 - t0)) : [];
  const last = rows[rows.length - 1];
  const summary = lines.map((l) => `${l.name} ${last && typeof last[l.key] === 'number' ? `${fmt(last[l.key] as number)}${unit}` : 'no data'}`).join(', ');

  return (
    <figure className="chart" style={{ margin: 0, height: 'auto' }}>
      <div ref={box} style={{ width: '100%' }}>
        <svg width={width} height={HEIGHT} role="img" aria-label={`${label} chart: ${summary}`}>
          {yTicks.map((v) => (
            <g key={v}>
              <line x1={PAD.left} x2={width - PAD.right} y1={y(v)} y2={y(v)} stroke="var(--border)" strokeDasharray="3 3" />
              <text x={PAD.left - 4} y={y(v) + 4} textAnchor="end" fontSize={11} fill="var(--muted)">
                {fmt(v)}
                {unit}
              </text>
            </g>
          ))}
          {xTicks.map((t, i) => (
            <text key={i} x={x(t)} y={HEIGHT - 6} textAnchor={i === 0 ? 'start' : i === xTicks.length - 1 ? 'end' : 'middle'} fontSize={11} fill="var(--muted)">
              {clockTime(t)}
            </text>
          ))}
          {lines.map((l) => {
            const pts: string[] = [];
            for (const r of rows) if (typeof r[l.key] === 'number') pts.push(`${x(r.t as number).toFixed(1)},${y(r[l.key] as number).toFixed(1)}`);
            if (pts.length === 0) return null;
            if (pts.length === 1) {
              const [cx, cy] = (pts[0] as string).split(',');
              return <circle key={l.key} cx={cx} cy={cy} r={2.5} fill={l.color} />;
            }
            return <polyline key={l.key} points={pts.join(' ')} fill="none" stroke={l.color} strokeWidth={1.5} />;
          })}
        </svg>
      </div>
      {lines.length > 1 ? (
        <figcaption className="row muted" style={{ fontSize: 12, gap: 12 }}>
          {lines.map((l) => (
            <span key={l.key}>
              <span aria-hidden="true" style={{ display: 'inline-block', width: 10, height: 3, background: l.color, verticalAlign: 'middle', marginRight: 4 }} />
              {l.name}
            </span>
          ))}
        </figcaption>
      ) : null}
    </figure>
  );
});
