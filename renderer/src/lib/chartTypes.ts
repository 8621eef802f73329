/** One line of a chart: the row key it plots, its legend name and colour (a CSS variable). */
export interface ChartLine {
  key: string;
  name: string;
  color: string;
}

/** Chart windows the pages offer (the series keep 8 h). */
export const WINDOWS = [
  { label: '5 min', ms: 5 * 60_000 },
  { label: '1 h', ms: 3_600_000 },
  { label: '8 h', ms: 8 * 3_600_000 },
] as const;
