import { ApiError } from '../../../shared/client/consoleClient.js';
import { errorText } from './format.js';

/** How a page's service answered its last request. */
export type Availability = 'unknown' | 'ok' | 'missing' | 'error';

/** Sorts a failed request into "service not in this build" (404 on its route) or an error text. */
export function classify(err: unknown): { availability: Availability; error: string | null } {
  if (err instanceof ApiError && err.isMissing) return { availability: 'missing', error: null };
  return { availability: 'error', error: errorText(err) };
}
