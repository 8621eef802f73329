/** The project root. */
export const root: string;
/** True when the dashboard sources are newer than dist/renderer (or it was never built). */
export function dashboardStale(): boolean;
/** Builds the core and the dashboard when stale; returns the headless entry's path. */
export function ensureBuilt(): string;
